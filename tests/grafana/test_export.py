"""exporters.dashboards.export_all: files for a user's setup, prefix and job substituted."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from exporters.dashboards import DASHBOARD_FILES, PROMETHEUS_FILES, export_all, rewrite
from tests.grafana._files import DASHBOARDS_DIR, PROMETHEUS_DIR, alert_rules, panels, promtool


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_default_export_equals_the_committed_files(tmp_path: Path) -> None:
    """With the defaults, the exported files are the tested files of grafana/."""
    paths = export_all(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        *(f"dashboards/{n}" for n in DASHBOARD_FILES),
        *(f"prometheus/{n}" for n in PROMETHEUS_FILES),
    ]
    for name in DASHBOARD_FILES:
        assert (tmp_path / "dashboards" / name).read_text() == (DASHBOARDS_DIR / name).read_text()
    for name in PROMETHEUS_FILES:
        assert (tmp_path / "prometheus" / name).read_text() == (
            PROMETHEUS_DIR / name
        ).read_text()


def test_prefix_and_job_are_substituted_everywhere(tmp_path: Path) -> None:
    """--prefix myco --job prod leaves no agentbus_ metric and no agentbus job behind."""
    export_all(tmp_path, metric_prefix="myco", job="prod")
    for path in tmp_path.rglob("*.*"):
        text = path.read_text()
        assert not re.search(r"(?<![\w:])agentbus_\w", text), path
        assert 'job="agentbus"' not in text, path
    boards = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "dashboards").glob("*")}
    exprs = [t["expr"] for b in boards.values() for p in panels(b) for t in p["targets"]]
    assert any("myco_agent_runs_total{" in e for e in exprs)
    assert any("myco_bus_events_dropped_total{" in e for e in exprs)
    assert any("gen_ai_client_operation_duration_seconds_bucket{" in e for e in exprs)
    config = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
    assert [c["job_name"] for c in config["scrape_configs"]] == ["prod"]
    rules = alert_rules(tmp_path / "prometheus" / "alerts.yml")
    assert all('job="prod"' in r["expr"] for r in rules)
    assert {r["alert"] for r in rules} == {r["alert"] for r in alert_rules()}


def test_exported_rules_and_config_pass_promtool(tmp_path: Path) -> None:
    """The rewritten rules pass check rules, their rewritten unit tests pass, config is valid."""
    export_all(tmp_path, metric_prefix="myco", job="prod")
    prom = tmp_path / "prometheus"
    for args in (("check", "rules", prom / "alerts.yml"),
                 ("test", "rules", prom / "alerts_test.yml"),
                 ("check", "config", prom / "prometheus.yml")):
        result = _promtool(*args)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"


def test_rewrite_touches_only_metric_tokens_and_job() -> None:
    """Titles, uids and tags ('agentbus', 'agentbus-agents') and other jobs stay as they are."""
    text = ('{"uid": "agentbus-agents", "title": "agentbus / x", '
            '"expr": "rate(agentbus_agent_runs_total{job=\\"agentbus\\"}[5m]) '
            '+ my_agentbus_thing + up{job=\\"agentbus-2\\"}"}')
    out = rewrite(text, metric_prefix="team:ab", job="prod-1")
    assert json.loads(out) == {
        "uid": "agentbus-agents",
        "title": "agentbus / x",
        "expr": 'rate(team:ab_agent_runs_total{job="prod-1"}[5m]) + my_agentbus_thing '
                '+ up{job="agentbus-2"}',
    }


@pytest.mark.parametrize(
    ("prefix", "job", "message"),
    [("1abc", "prod", "metric_prefix"), ("my-co", "prod", "metric_prefix"),
     ("myco_", "prod", "metric_prefix"), ("", "prod", "metric_prefix"),
     ("myco", 'pr"od', "job"), ("myco", "", "job"), ("myco", "a b", "job")],
)
def test_bad_prefix_or_job_is_a_clear_error(
    tmp_path: Path, prefix: str, job: str, message: str
) -> None:
    """An invalid prefix or job raises ValueError naming it, and nothing is written."""
    with pytest.raises(ValueError, match=message):
        export_all(tmp_path / "out", metric_prefix=prefix, job=job)
    assert not (tmp_path / "out").exists()


def test_export_works_from_the_installed_package_outside_the_repo(tmp_path: Path) -> None:
    """`agentbus dashboards export` run from another directory finds the package data."""
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "agentbus.cli", "dashboards", "export", str(tmp_path / "out"),
         "--prefix", "myco", "--job", "agents"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.*"))
    assert written == sorted([*(f"dashboards/{n}" for n in DASHBOARD_FILES),
                              *(f"prometheus/{n}" for n in PROMETHEUS_FILES)])
    assert 'job="agents"' in (tmp_path / "out" / "prometheus" / "alerts.yml").read_text()
