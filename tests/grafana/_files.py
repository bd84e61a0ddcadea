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


_SET_OPERATOR = re.compile(r"(?<![\w:])(?:or|and|unless)(?![\w:])")
_COMPARISON = re.compile(r"==|!=|>=|<=|>|<")
_MODIFIERS = re.compile(
    r"^\s*(?:bool(?![\w:])\s*)?(?:(?:on|ignoring)\s*\([^)]*\)\s*)?"
    r"(?:(?:group_left|group_right)(?![\w:])\s*(?:\([^)]*\))?\s*)?"
)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _top_level_split(expr: str, operator: re.Pattern[str]) -> list[str]:
    """Split ``expr`` at matches of ``operator`` outside brackets, braces and strings."""
    outside = []
    depth, quote, escaped = 0, "", False
    for ch in expr:
        outside.append(depth == 0 and not quote)
        if escaped:
            escaped = False
        elif quote:
            escaped = ch == "\\"
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    parts, start = [], 0
    for m in operator.finditer(expr):
        if outside[m.start()] and m.start() >= start:
            parts.append(expr[start:m.start()])
            start = m.end()
    parts.append(expr[start:])
    return parts


def alert_signals(expr: str) -> list[str]:
    """The series an alert expression judges: each operand of its top-level set operators
    (``or`` / ``and`` / ``unless``, PromQL's loosest), with the threshold comparison removed.

    ``a / b > 0.05`` gives ``["a / b"]``; ``x > 0 unless on (l) y > 0`` gives ``["x", "y"]``;
    ``up == 0`` gives ``["up"]``; a comparison of two vectors gives both sides. On a system
    with data each signal must return series, whether or not the alert fires (a label typo
    or a wrong selector returns nothing).

    Raises:
        ValueError: an operand compares two number literals, or chains comparisons.
    """
    signals = []
    for operand in _top_level_split(expr, _SET_OPERATOR):
        sides = [_MODIFIERS.sub("", side, count=1).strip()
                 for side in _top_level_split(operand, _COMPARISON)]
        if len(sides) > 2:
            raise ValueError(f"chained comparison in {operand!r}")
        vectors = [side for side in sides if not _NUMBER.fullmatch(side)]
        if not vectors or not all(vectors):
            raise ValueError(f"no series to evaluate in {operand!r} of {expr!r}")
        signals += vectors
    return signals
