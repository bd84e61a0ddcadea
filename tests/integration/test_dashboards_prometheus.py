"""Every dashboard query and alert expression, evaluated by a real Prometheus scraping a real
``agentbus demo`` (issue 5, "what must show").

One module-scoped setup: Prometheus (scrape interval 1s, exemplar storage, the shipped
``alerts.yml`` loaded) starts first, then the demo (with its default share of failing runs),
so the scrapes cover the runs as they happen. Template variables are substituted the way
Grafana does: ``$job`` / ``$instance`` / ``$agent`` / ``$handler`` with every value the
variable's own ``label_values`` query lists (a regex alternation, values regex-escaped), and
again with the variables' All value ``.*``; ``$__range`` with ``1h`` (the dashboards' default
range); ``$__rate_interval`` with the value Grafana computes for the shipped datasource and that
range (:data:`GRAFANA_RATE_INTERVAL`, the shortest window the dashboards ever get) and with
``1m``. Alert expressions are evaluated the same way, split into the series they compare
(``alert_signals``: threshold comparisons removed), each of which must return data.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.grafana._files import (
    ALERTS,
    GRAFANA,
    TEMPLATE_VARIABLE,
    alert_rules,
    alert_signals,
    load_dashboards,
    panels,
)
from tests.integration.conftest import DemoProcess, PrometheusServer

pytestmark = pytest.mark.integration

JOB = "agentbus"
RUNS = 120
"""Runs of the demo; with ``--concurrency 2`` they span several 1s scrapes."""
RANGE = "1h"
RANGE_S = 3600
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "agentbus.yml"
PANEL_WIDTH_PX = 300
"""A narrow panel (a stat, 4 of 24 columns): Grafana's max data points for its queries."""


def _seconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)(s|m|h)", duration)
    assert m, f"unsupported duration {duration!r}"
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]


def grafana_rate_interval() -> str:
    """``$__rate_interval`` as Grafana computes it for the shipped Prometheus datasource.

    Grafana: ``$__interval`` = range / max data points (panel width in pixels), at least the
    datasource's ``timeInterval`` (its scrape interval); ``$__rate_interval`` =
    max(``$__interval`` + scrape interval, 4 × scrape interval). For the default 1h range
    and any panel at least :data:`PANEL_WIDTH_PX` wide that is 4 × ``timeInterval``: the
    shortest window the dashboards get, so the one most likely to return nothing.
    """
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (prom,) = [s for s in sources if s["type"] == "prometheus"]
    scrape = _seconds(prom["jsonData"]["timeInterval"])
    interval = max(RANGE_S // PANEL_WIDTH_PX, scrape)
    return f"{max(interval + scrape, 4 * scrape)}s"


GRAFANA_RATE_INTERVAL = grafana_rate_interval()
RATE_INTERVALS = (GRAFANA_RATE_INTERVAL, "1m")
LABEL_VALUES = re.compile(r"^label_values\((?P<series>.+),\s*(?P<label>\w+)\)$")

BOARDS = load_dashboards()
TARGETS = [
    pytest.param(uid, panel["title"], target["refId"], target["expr"], rate,
                 id=f"{uid}/{panel['title']}/{target['refId']}/{rate}")
    for uid, board in BOARDS.items()
    for panel in panels(board)
    for target in panel["targets"]
    for rate in RATE_INTERVALS
]
VARIABLES = [
    pytest.param(uid, var["name"], var["query"], id=f"{uid}/{var['name']}")
    for uid, board in BOARDS.items()
    for var in board["templating"]["list"]
    if var["type"] == "query"
]
ALERT_RULES = alert_rules()
SILENT_ON_HEALTHY_DEMO = {
    "AgentbusAgentStuck",
    "AgentbusEventsDropped",
    "AgentbusPublishRejected",
    "AgentbusQueueSaturated",
    "AgentbusLabelCardinalityOverflow",
    "AgentbusTargetDown",
}
"""Alerts the demo gives no cause for (it drops, rejects and overflows nothing)."""


@dataclass(frozen=True)
class Monitored:
    """The demo, its summary, and a Prometheus that scraped it and evaluated the rules."""

    demo: DemoProcess
    summary: dict[str, Any]
    prometheus: PrometheusServer
    at: float
    """Evaluation time: a scrape taken after the demo finished, with rules evaluated."""


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    """Prometheus with alerts.yml, then ``agentbus demo --runs 120 --concurrency 2``."""
    demo = DemoProcess(tmp_path_factory.mktemp("demo"), runs=RUNS, serve_for=900,
                       extra_args=["--concurrency", "2"])
    prom = PrometheusServer(tmp_path_factory.mktemp("prometheus"), {JOB: [demo.target]},
                            rule_files=[ALERTS])
    try:
        prom.start()
        _wait_for_first_scrape_attempt(prom)  # Prometheus applies targets ~5s after start
        demo.start()
        summary = demo.wait_for_summary()
        at = prom.wait_for_fresh_scrape(JOB, after=time.time())
        # One scrape interval later: an evaluation started right at `at` may not see the
        # samples of that scrape yet (they are appended when the scrape ends).
        _wait_for_rule_evaluation(prom, after=at + 1.5)
        yield Monitored(demo=demo, summary=summary, prometheus=prom, at=at)
    finally:
        demo.stop()
        prom.stop()


def _wait_for_first_scrape_attempt(prom: PrometheusServer, timeout_s: float = 60.0) -> None:
    """Wait until Prometheus has tried to scrape the (not yet running) demo target, so the
    scrapes that follow cover the demo's runs from the start."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        targets = prom.targets(JOB)
        if targets and all(not t["lastScrape"].startswith("0001-") for t in targets):
            return
        time.sleep(0.2)
    raise TimeoutError(f"Prometheus never tried to scrape {JOB}: {prom.targets(JOB)}")


def _wait_for_rule_evaluation(prom: PrometheusServer, after: float,
                              timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        groups = prom.api("rules")["groups"]
        if groups and all(_rfc3339(g["lastEvaluation"]) > after for g in groups):
            return
        time.sleep(0.3)
    raise TimeoutError(f"rules not evaluated after {after}: {prom.api('rules')}")


def _rfc3339(text: str) -> float:
    from datetime import datetime

    text = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def _label_values(prom: PrometheusServer, series: str, label: str) -> list[str]:
    """What Grafana's ``label_values(series, label)`` lists (same API call)."""
    return list(prom.api(f"label/{label}/values", **{"match[]": series}))


def _regex_alternation(values: list[str]) -> str:
    """Grafana's multi-value regex format: ``(a|b)``, each value regex-escaped, then escaped
    for a PromQL double-quoted string."""
    escaped = [re.escape(v).replace("\\", "\\\\") for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _substitute(text: str, values: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown template variable ${name} in {text!r}"
        return values[name]

    return TEMPLATE_VARIABLE.sub(repl, text)


def _variable_values(prom: PrometheusServer, uid: str, rate_interval: str) -> dict[str, str]:
    """Concrete values of every variable of a dashboard, resolved in order like Grafana."""
    values = {"__rate_interval": rate_interval, "__range": RANGE}
    for var in BOARDS[uid]["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = LABEL_VALUES.match(var["query"])
        assert m, var["query"]
        listed = _label_values(prom, _substitute(m["series"], values), m["label"])
        assert listed, f"variable ${var['name']} lists no value"
        values[var["name"]] = _regex_alternation(listed)
    return values


def _all_values(rate_interval: str = GRAFANA_RATE_INTERVAL) -> dict[str, str]:
    return {"__rate_interval": rate_interval, "__range": RANGE, "job": ".*", "instance": ".*",
            "agent": ".*", "handler": ".*"}


@pytest.mark.parametrize(("uid", "variable", "query"), VARIABLES)
def test_variable_query_lists_the_demo_values(monitored: Monitored, uid: str, variable: str,
                                              query: str) -> None:
    """Each template variable's label_values query lists what the demo exports."""
    prom = monitored.prometheus
    m = LABEL_VALUES.match(query)
    assert m, query
    series = _substitute(m["series"], {"job": JOB, "instance": re.escape(
        monitored.demo.target).replace("\\", "\\\\")})
    listed = set(_label_values(prom, series, m["label"]))
    expected = {
        "job": {JOB},
        "instance": {monitored.demo.target},
        "agent": set(monitored.summary["runs_by_agent"]),
        "handler": {"prometheus"},
    }[variable]
    assert expected <= listed, f"{query}: {listed}"


def test_rate_interval_is_grafanas_for_the_shipped_scrape_interval() -> None:
    """The window tested is 4 × the datasource's timeInterval, which is the scrape interval
    of the shipped prometheus.yml (so Grafana's window holds 4 scrapes there)."""
    scrape_configs = yaml.safe_load((GRAFANA / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape_configs["scrape_configs"]
    assert _seconds(GRAFANA_RATE_INTERVAL) == 4 * _seconds(job["scrape_interval"])


@pytest.mark.parametrize(("uid", "title", "ref_id", "expr", "rate_interval"), TARGETS)
def test_panel_query_is_valid_and_returns_data(monitored: Monitored, uid: str, title: str,
                                               ref_id: str, expr: str,
                                               rate_interval: str) -> None:
    """The panel's PromQL evaluates, with concrete and with All variable values, to at least
    one sample, and at least one sample is a number (not NaN)."""
    prom = monitored.prometheus
    for values in (_variable_values(prom, uid, rate_interval), _all_values(rate_interval)):
        promql = _substitute(expr, values)
        result = prom.query(promql, at=monitored.at)
        assert result, f"{title} [{ref_id}] returned no data: {promql}"
        numbers = [float(s["value"][1]) for s in result]
        assert any(not math.isnan(v) for v in numbers), f"{title}: only NaN: {promql}"


def test_counting_panels_agree_with_the_demo_summary(monitored: Monitored) -> None:
    """A dashboard query over the whole run counts what the demo says it did: the token bar
    chart's expression with a range covering the demo equals the summary's tokens."""
    (expr,) = [t["expr"] for p in panels(BOARDS["agentbus-agents"])
               if p["title"] == "Tokens in range by agent and model" for t in p["targets"]]
    # increase() extrapolates; the exact total of the counters is what the panel estimates.
    exact = expr.replace("increase(", "max_over_time(").replace("sort_desc(", "(")
    result = monitored.prometheus.query(_substitute(exact, _all_values()), at=monitored.at)
    total = sum(float(s["value"][1]) for s in result)
    assert total == monitored.summary["input_tokens"] + monitored.summary["output_tokens"]


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_alert_expression_is_valid(monitored: Monitored, rule: dict[str, Any]) -> None:
    """Each alert expression evaluates without error against the demo's data."""
    monitored.prometheus.query(rule["expr"], at=monitored.at)


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_alert_signals_return_data(monitored: Monitored, rule: dict[str, Any]) -> None:
    """Every series an alert compares with its threshold returns data on the demo, with at
    least one number (a label typo or wrong selector returns nothing and fails here, while
    the alert itself would just stay silent)."""
    for signal in alert_signals(rule["expr"]):
        result = monitored.prometheus.query(signal, at=monitored.at)
        assert result, f"{rule['alert']}: no data for {signal}"
        numbers = [float(s["value"][1]) for s in result]
        assert any(not math.isnan(v) for v in numbers), f"{rule['alert']}: only NaN: {signal}"


def test_rules_loaded_and_evaluated_without_errors(monitored: Monitored) -> None:
    """Prometheus loaded every alert of alerts.yml and each evaluation is healthy."""
    groups = monitored.prometheus.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in ALERT_RULES}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"


def test_error_ratio_alert_goes_pending_on_the_failing_demo(monitored: Monitored) -> None:
    """The demo's failing runs (over 5% for some agent) make AgentbusAgentHighErrorRatio
    pending (it needs 10 minutes to fire) for exactly the agents its expression selects at
    the same evaluation time."""
    prom = monitored.prometheus
    by_agent = monitored.summary["runs_by_agent"]
    assert any(a["errors"] / a["runs"] > 0.1 for a in by_agent.values()), by_agent
    # One /rules answer holds the evaluation time and the alerts of that evaluation
    # (rate() extrapolation makes a ratio near 5% depend on the exact evaluation time).
    groups = prom.api("rules", type="alert")["groups"]
    (group,) = [g for g in groups if g["name"] == "agentbus-agents"]
    (rule,) = [r for r in group["rules"] if r["name"] == "AgentbusAgentHighErrorRatio"]
    data = prom.api("query", query=rule["query"], time=group["lastEvaluation"])
    over = {s["metric"]["agent"] for s in data["result"]}
    assert over, "no agent above the threshold in Prometheus"
    assert {a["labels"]["agent"] for a in rule["alerts"]} == over, rule["alerts"]
    assert {a["state"] for a in rule["alerts"]} == {"pending"}


def test_fault_alerts_stay_silent_on_the_healthy_bus(monitored: Monitored) -> None:
    """No drop, reject, saturation, overflow, stuck-run or target-down alert is active."""
    active = {a["labels"]["alertname"] for a in monitored.prometheus.api("alerts")["alerts"]}
    assert not active & SILENT_ON_HEALTHY_DEMO


EXEMPLAR_TARGETS = [
    pytest.param(panel["title"], target["expr"], id=f"{uid}/{panel['title']}")
    for uid, board in BOARDS.items()
    for panel in panels(board)
    for target in panel["targets"]
    if target.get("exemplar")
]


@pytest.mark.parametrize(("title", "expr"), EXEMPLAR_TARGETS)
def test_latency_exemplars_link_to_real_traces(monitored: Monitored, title: str,
                                               expr: str) -> None:
    """Each exemplar target returns exemplars whose trace_id is the trace of a run in the
    demo's own log (what Grafana links to)."""
    prom = monitored.prometheus
    promql = _substitute(expr, _all_values())
    data = prom.api("query_exemplars", query=promql, start=f"{monitored.at - 3600:.3f}",
                    end=f"{monitored.at + 1:.3f}")
    trace_ids = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}
    assert trace_ids, f"{title}: no exemplar stored"
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
    log = Path(monitored.demo.workdir / "demo.log.jsonl")
    logged = {json.loads(line).get("trace_id") for line in log.read_text().splitlines() if line}
    assert trace_ids <= logged
