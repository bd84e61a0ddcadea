"""Alert rules and the Prometheus config: promtool check/test, one firing test per alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.grafana._files import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_YML,
    alert_rules,
    alert_signals,
    promtool,
)

EXPECTED_ALERTS = {
    "AgentbusAgentHighErrorRatio",
    "AgentbusAgentHighLatency",
    "AgentbusAgentStuck",
    "AgentbusHandlerErrors",
    "AgentbusEventsDropped",
    "AgentbusPublishRejected",
    "AgentbusQueueSaturated",
    "AgentbusDispatchLagHigh",
    "AgentbusLabelCardinalityOverflow",
    "AgentbusTargetDown",
}


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def _test_cases() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    return [case for test in doc["tests"] for case in test["alert_rule_test"]]


def test_promtool_check_rules_passes() -> None:
    """`promtool check rules alerts.yml` succeeds and finds every rule."""
    result = _run("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules_passes() -> None:
    """`promtool test rules alerts_test.yml` succeeds (every expected alert, nothing else)."""
    result = _run("test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_fails_on_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests catch a wrong threshold (they are not vacuous)."""
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    broken = ALERTS.read_text().replace("> 0.8", "> 0.95")
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    result = _run("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    assert "AgentbusQueueSaturated" in result.stdout + result.stderr


def test_promtool_check_config_passes() -> None:
    """`promtool check config` accepts the shipped prometheus.yml (and its rule file)."""
    result = _run("check", "config", PROMETHEUS_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid prometheus config file syntax" in result.stdout + result.stderr


def test_the_issue_alert_set_is_shipped() -> None:
    """Error ratio, latency, stuck, handler errors, drops, saturation, overflow (and more)."""
    assert {rule["alert"] for rule in alert_rules()} == EXPECTED_ALERTS


def test_every_alert_has_summary_runbook_and_severity() -> None:
    """Each rule carries a summary, a runbook line and a severity label."""
    for rule in alert_rules():
        assert rule["annotations"].get("summary"), rule["alert"]
        assert rule["annotations"].get("runbook"), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]


def test_every_alert_has_a_firing_and_a_silent_test_case() -> None:
    """Each alert name appears in a test case expecting it to fire and in one expecting none."""
    firing = {c["alertname"] for c in _test_cases() if c.get("exp_alerts")}
    silent = {c["alertname"] for c in _test_cases() if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in alert_rules()}
    assert names <= firing, sorted(names - firing)
    assert names <= silent, sorted(names - silent)


def test_every_alert_test_input_has_a_healthy_series() -> None:
    """Each firing case's input also holds a series the alert must stay silent on."""
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    for test in doc["tests"]:
        fired = [a for case in test["alert_rule_test"] for a in case.get("exp_alerts") or []]
        if not fired:
            continue
        # Healthy series: input series whose identifying label value is in no fired alert.
        fired_values = {v for a in fired for v in a["exp_labels"].values()}
        healthy = [s for s in test["input_series"]
                   if not any(f'"{v}"' in s["series"] for v in fired_values
                              if v not in {"agentbus", "app:9464"})
                   and "capacity" not in s["series"]]
        assert healthy, test["alert_rule_test"][0]["alertname"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_selects_the_agentbus_job(rule: dict[str, str]) -> None:
    """Each expression filters on job="agentbus" (rewritten by export for the user's job)."""
    assert 'job="agentbus"' in rule["expr"]


@pytest.mark.parametrize(("expr", "signals"), [
    ('sum(rate(a{s="error"}[5m])) / sum(rate(a[5m])) > 0.05',
     ['sum(rate(a{s="error"}[5m])) / sum(rate(a[5m]))']),
    ("0.5 < bool histogram_quantile(0.95, x)", ["histogram_quantile(0.95, x)"]),
    ("max(x) > 0 unless on (job, agent) sum(increase(y[15m])) > 0",
     ["max(x)", "sum(increase(y[15m]))"]),
    ('a{l!="p>q", m=~"or|and"} > on (job) group_left (b) c or up == 0',
     ['a{l!="p>q", m=~"or|and"}', "c", "up"]),
    ('x{l="a\\"<b"} <= 3', ['x{l="a\\"<b"}']),
])
def test_alert_signals_strip_the_threshold_comparisons(expr: str, signals: list[str]) -> None:
    """alert_signals keeps the compared series of each set-operator operand, ignoring
    operators inside brackets, label matchers and strings."""
    assert alert_signals(expr) == signals


def test_alert_signals_reject_an_expression_without_series() -> None:
    """An operand comparing two literals has nothing to evaluate: a clear ValueError."""
    with pytest.raises(ValueError, match="no series"):
        alert_signals("x > 0 or 1 > 0")


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_signals_taken_from_its_expression(rule: dict[str, str]) -> None:
    """Each shipped alert splits into series that occur verbatim in its expression and hold
    no top-level comparison (the integration test evaluates them on the demo's data)."""
    signals = alert_signals(rule["expr"])
    assert signals
    for signal in signals:
        assert signal in rule["expr"]
        assert alert_signals(signal) == [signal]
