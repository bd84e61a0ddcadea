"""Paths and loaders of the committed monitoring files (shared by the grafana tests)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS_DIR = GRAFANA / "dashboards"
PROMETHEUS_DIR = GRAFANA / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"

TEMPLATE_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def promtool() -> str:
    """Path of promtool; fails the test with a clear message when it is missing."""
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists()
                                         else None)
    if found is None:
        pytest.fail("promtool not found: install the Debian package 'prometheus'", pytrace=False)
    return found


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON in ``directory`` by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every non-row panel of a dashboard (including panels nested in collapsed rows)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every alerting rule of a rule file."""
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
