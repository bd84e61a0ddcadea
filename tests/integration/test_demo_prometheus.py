"""A real Prometheus scrapes a running ``agentbus demo``; its view must match the demo's own
summary (issue 2, "what must show")."""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import (
    DEMO_RUNS,
    DemoProcess,
    PrometheusServer,
    ScrapedDemo,
    promtool_binary,
)

pytestmark = pytest.mark.integration


def _by_label(result: list[dict[str, object]], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample in result:
        metric = sample["metric"]
        value = sample["value"]
        assert isinstance(metric, dict) and isinstance(value, list)
        out[str(metric.get(label, ""))] = float(value[1])
    return out


def test_runs_total_equals_requested_runs(scraped_demo: ScrapedDemo) -> None:
    """sum(agentbus_agent_runs_total) in Prometheus equals --runs and the summary's runs."""
    total = scraped_demo.prometheus.value("sum(agentbus_agent_runs_total)")
    assert total == DEMO_RUNS
    assert scraped_demo.summary["runs"] == DEMO_RUNS


def test_errors_agree_with_summary(scraped_demo: ScrapedDemo) -> None:
    """Error runs and errors by type in Prometheus equal the demo's summary."""
    prom, summary = scraped_demo.prometheus, scraped_demo.summary
    assert summary["errors"] > 0, "the seeded plan should contain failing runs"
    errors = prom.query('sum(agentbus_agent_runs_total{status="error"})')
    assert float(errors[0]["value"][1]) == summary["errors"]
    successes = prom.value('sum(agentbus_agent_runs_total{status="success"})')
    assert successes == summary["successes"]
    by_type = _by_label(
        prom.query("sum by (error_type) (agentbus_agent_errors_total)"), "error_type"
    )
    assert by_type == {k: float(v) for k, v in summary["errors_by_type"].items()}


def test_duration_histogram_agrees_with_summary(scraped_demo: ScrapedDemo) -> None:
    """The run-duration histogram counts every run and sums to the summary's total latency."""
    prom, summary = scraped_demo.prometheus, scraped_demo.summary
    count = prom.value("sum(agentbus_agent_run_duration_seconds_count)")
    assert count == DEMO_RUNS
    total_s = prom.value("sum(agentbus_agent_run_duration_seconds_sum)")
    assert math.isclose(total_s, summary["latency_total_ms"] / 1000.0, rel_tol=1e-6,
                        abs_tol=1e-6)


def test_p95_from_histogram_is_plausible(scraped_demo: ScrapedDemo) -> None:
    """histogram_quantile(0.95) lies within the bucket (or a neighbour) holding the
    summary's p95."""
    prom, summary = scraped_demo.prometheus, scraped_demo.summary
    p95_s = summary["latency_p95_ms"] / 1000.0
    est = prom.value(
        "histogram_quantile(0.95, sum by (le) (agentbus_agent_run_duration_seconds_bucket))"
    )
    bounds = sorted(
        float(le) for le in _by_label(
            prom.query("sum by (le) (agentbus_agent_run_duration_seconds_bucket)"), "le"
        ) if le != "+Inf"
    )
    edges = [0.0, *bounds, math.inf]
    i = next(k for k in range(1, len(edges)) if p95_s <= edges[k])
    lo, hi = edges[max(i - 2, 0)], edges[min(i + 1, len(edges) - 1)]
    assert lo <= est <= hi, f"p95 estimate {est}s vs summary {p95_s}s, buckets {bounds}"


def test_tokens_tools_cost_and_delegations_agree(scraped_demo: ScrapedDemo) -> None:
    """Token, tool-call, cost and sub-agent delegation counters equal the summary's
    numbers."""
    prom, summary = scraped_demo.prometheus, scraped_demo.summary
    tokens = _by_label(prom.query("sum by (type) (agentbus_agent_tokens_total)"), "type")
    assert tokens == {"input": summary["input_tokens"], "output": summary["output_tokens"]}
    assert prom.value("sum(agentbus_tool_calls_total)") == summary["tool_calls"]
    assert summary["cost_usd"] > 0
    assert math.isclose(prom.value("sum(agentbus_agent_cost_usd_total)"),
                        summary["cost_usd"], rel_tol=1e-9)
    assert summary["delegations"] > 0
    spawned = prom.value('sum(agentbus_subagent_delegations_total{status="spawned"})')
    assert spawned == summary["delegations"]
    finished = prom.query(
        'sum by (status) (agentbus_subagent_delegations_total{status!="spawned"})'
    )
    by_status = _by_label(finished, "status")
    assert by_status.get("completed", 0.0) == summary["delegations_completed"]
    assert by_status.get("failed", 0.0) == summary["delegations_failed"]


def test_middleware_sessions_and_checkpoints_are_scraped(scraped_demo: ScrapedDemo) -> None:
    """Middleware, session and checkpoint metrics from the demo reach Prometheus."""
    prom = scraped_demo.prometheus
    middlewares = _by_label(
        prom.query("sum by (middleware) (agentbus_middleware_duration_seconds_count)"),
        "middleware",
    )
    assert set(middlewares) == {"session", "guard", "pricing"}
    assert prom.value("sum(agentbus_sessions_created_total)") > 0
    ops = _by_label(prom.query("sum by (operation) (agentbus_checkpoints_total)"), "operation")
    assert ops["saved"] >= ops["restored"] > 0


def test_exemplars_link_durations_to_traces(scraped_demo: ScrapedDemo) -> None:
    """Prometheus stored trace_id exemplars for the run-duration histogram (OpenMetrics)."""
    prom = scraped_demo.prometheus
    now = time.time()
    data = prom.api("query_exemplars", query="agentbus_agent_run_duration_seconds_bucket",
                    start=f"{now - 600:.3f}", end=f"{now + 60:.3f}")
    trace_ids = {ex["labels"].get("trace_id") for series in data for ex in series["exemplars"]}
    assert trace_ids
    assert all(re.fullmatch(r"[0-9a-f]{32}", str(t)) for t in trace_ids)


def test_promtool_check_metrics_is_clean(scraped_demo: ScrapedDemo) -> None:
    """``promtool check metrics`` finds no problem in a scrape of the running demo."""
    text = scraped_demo.demo.scrape()
    assert "agentbus_agent_runs_total" in text
    proc = subprocess.run([promtool_binary(), "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60, check=False)
    report = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, report
    assert report.strip() == "", report


def test_demo_stops_cleanly_on_ctrl_c(start_demo: Callable[..., DemoProcess],
                                      start_prometheus: Callable[..., PrometheusServer]
                                      ) -> None:
    """While serving, SIGINT makes the demo stop serving and exit with status 0."""
    demo = start_demo(runs=6, serve_for=600)
    prom = start_prometheus({"agentbus": [demo.target]})
    summary = demo.wait_for_summary()
    prom.wait_for_fresh_scrape("agentbus", after=time.time())
    assert prom.value("sum(agentbus_agent_runs_total)") == summary["runs"] == 6
    assert demo.stop() == 0, demo.output
    assert "serving" in demo.output
