"""The generated dashboards: up to date, well-formed, units everywhere, known metrics only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentbus import EventBus
from exporters.dashboards import DASHBOARD_FILES
from exporters.prometheus import register_bus_metrics
from grafana.generate import PACKAGE_MONITORING, main, stale_files
from middleware.prometheus import PrometheusMetricsHandler
from tests.grafana._files import (
    DASHBOARDS_DIR,
    TEMPLATE_VARIABLE,
    alert_rules,
    load_dashboards,
    panels,
)

BOARDS = load_dashboards()
ALLOWED_VARIABLES = {"datasource", "job", "instance", "agent", "handler", "__rate_interval",
                     "__range"}
METRIC_TOKEN = re.compile(r"\b((?:agentbus|gen_ai_client)_[a-z0-9_]+)\b")


def _targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels(board) for t in p["targets"]]


def _exported_metric_names() -> set[str]:
    """Sample names the real metrics handler and bus collector can export."""
    registry = CollectorRegistry()
    PrometheusMetricsHandler(registry)
    register_bus_metrics(EventBus(), registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_committed_json_is_up_to_date() -> None:
    """Every generated file (grafana/dashboards and the package copies) matches the generator."""
    assert stale_files() == []
    assert main(["--check"]) == 0


def test_check_mode_detects_a_stale_copy(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """--check exits 1 when a package copy differs from the generated dashboard."""
    import grafana.generate as gen

    copy_dir = tmp_path / "monitoring"
    monkeypatch.setattr(gen, "PACKAGE_MONITORING", copy_dir)
    assert gen.main([]) == 0  # writes the package copies into tmp
    assert gen.main(["--check"]) == 0
    victim = copy_dir / "dashboards" / DASHBOARD_FILES[0]
    victim.write_text(victim.read_text().replace("Run rate", "Run rat"))
    assert gen.main(["--check"]) == 1
    assert victim in gen.stale_files()


def test_package_copies_are_byte_identical() -> None:
    """The dashboards shipped as package data are the ones users browse in grafana/."""
    for name in DASHBOARD_FILES:
        assert (PACKAGE_MONITORING / "dashboards" / name).read_bytes() == (
            DASHBOARDS_DIR / name
        ).read_bytes()


def test_two_dashboards_with_unique_uids() -> None:
    """There are the agent overview and bus health dashboards, with distinct uids."""
    uids = {board["uid"] for board in BOARDS.values()}
    assert uids == {"agentbus-agents", "agentbus-bus"}
    assert set(BOARDS) == uids  # file name = uid


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_every_panel_has_a_unit_title_and_description(uid: str) -> None:
    """Each panel sets fieldConfig.defaults.unit, a title and a description."""
    for panel in panels(BOARDS[uid]):
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["title"] and panel.get("description"), panel["title"]


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_panel_ids_and_ref_ids_are_unique(uid: str) -> None:
    """Panel ids are unique in a dashboard; refIds are unique within a panel."""
    ids = [p["id"] for p in BOARDS[uid]["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for panel in panels(BOARDS[uid]):
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(refs), panel["title"]


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_queries_use_only_known_template_variables(uid: str) -> None:
    """Targets and variable queries use only the variables the integration test substitutes."""
    texts = [t["expr"] for _, t in _targets(BOARDS[uid])]
    texts += [v["query"] for v in BOARDS[uid]["templating"]["list"] if v["type"] == "query"]
    used = {a or b for text in texts for a, b in TEMPLATE_VARIABLE.findall(text)}
    assert used <= ALLOWED_VARIABLES
    defined = {v["name"] for v in BOARDS[uid]["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= defined
    assert used - {"__rate_interval", "__range"} <= defined


def test_template_variables_job_instance_agent_handler() -> None:
    """Agent overview filters by job/instance/agent; bus health by job/instance/handler."""
    names = {uid: [v["name"] for v in b["templating"]["list"]] for uid, b in BOARDS.items()}
    assert names["agentbus-agents"] == ["datasource", "job", "instance", "agent"]
    assert names["agentbus-bus"] == ["datasource", "job", "instance", "handler"]
    for board in BOARDS.values():
        for var in board["templating"]["list"][1:]:
            assert var["multi"] and var["includeAll"] and var["allValue"] == ".*"


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_every_metric_queried_is_exported_by_agentbus(uid: str) -> None:
    """Each metric name in a query exists in a real PrometheusMetricsHandler + bus registry."""
    exported = _exported_metric_names()
    texts = [t["expr"] for _, t in _targets(BOARDS[uid])]
    texts += [v["query"] for v in BOARDS[uid]["templating"]["list"] if v["type"] == "query"]
    queried = {m for text in texts for m in METRIC_TOKEN.findall(text)}
    assert queried, "no metric found in the queries"
    assert queried <= exported, sorted(queried - exported)


def test_alert_rules_query_only_exported_metrics() -> None:
    """Each metric name in an alert expression exists in the real registries."""
    exported = _exported_metric_names() | {"up"}
    queried = {m for rule in alert_rules() for m in METRIC_TOKEN.findall(rule["expr"])}
    assert queried <= exported, sorted(queried - exported)


EXEMPLAR_HISTOGRAMS = ("agentbus_agent_run_duration_seconds", "agentbus_tool_call_duration_seconds",
                      "agentbus_middleware_duration_seconds",
                      "gen_ai_client_operation_duration_seconds")
"""The duration histograms ``middleware.prometheus`` observes with a trace_id exemplar."""


@pytest.mark.parametrize("histogram", EXEMPLAR_HISTOGRAMS)
def test_latency_panels_link_to_traces_with_exemplars(histogram: str) -> None:
    """Each time series panel over a histogram with trace_id exemplars asks for exemplars on
    exactly one target, its p95 (stat panels draw no exemplars)."""
    over = [p for uid in BOARDS for p in panels(BOARDS[uid]) if p["type"] == "timeseries"
            and any(f"{histogram}_bucket" in t["expr"] for t in p["targets"])]
    assert over, f"no panel shows {histogram}"
    for panel in over:
        exemplar_targets = [t for t in panel["targets"] if t.get("exemplar")]
        assert len(exemplar_targets) == 1, panel["title"]
        assert exemplar_targets[0]["legendFormat"].startswith("p95"), panel["title"]
        assert exemplar_targets[0]["expr"].startswith("histogram_quantile(0.95,"), panel["title"]


def test_only_exemplar_histograms_ask_for_exemplars() -> None:
    """No target asks for exemplars of a series that never carries any."""
    for uid in BOARDS:
        for panel in panels(BOARDS[uid]):
            for target in panel["targets"]:
                if target.get("exemplar"):
                    assert any(f"{h}_bucket" in target["expr"] for h in EXEMPLAR_HISTOGRAMS), (
                        panel["title"])


def test_agent_overview_covers_the_issue_checklist() -> None:
    """RED, in-progress, tokens, cost, checkpoints, sessions, delegations and top errors."""
    exprs = " ".join(t["expr"] for _, t in _targets(BOARDS["agentbus-agents"]))
    for metric in ("agentbus_agent_runs_total", "agentbus_agent_errors_total",
                   "agentbus_agent_run_duration_seconds_bucket",
                   "agentbus_agent_runs_in_progress", "agentbus_agent_tokens_total",
                   "agentbus_agent_cost_usd_total", "agentbus_checkpoints_total",
                   "agentbus_sessions_created_total", "agentbus_subagent_delegations_total"):
        assert metric in exprs, metric
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (agent, le)" in exprs
    assert "topk(10" in exprs


def test_bus_health_covers_the_issue_checklist() -> None:
    """Published/delivered/dropped, queue depth and saturation, handler errors and latency,
    dispatch lag and cardinality overflow are all on the bus health dashboard."""
    exprs = " ".join(t["expr"] for _, t in _targets(BOARDS["agentbus-bus"]))
    for metric in ("agentbus_bus_events_published_total", "agentbus_bus_events_delivered_total",
                   "agentbus_bus_events_dropped_total", "agentbus_bus_queue_depth",
                   "agentbus_bus_queue_capacity", "agentbus_bus_handler_errors_total",
                   "agentbus_bus_handler_busy_seconds_total",
                   "agentbus_bus_dispatch_lag_seconds_bucket", "agentbus_label_overflow_total"):
        assert metric in exprs, metric
    assert "sum by (reason)" in exprs
