"""grafana.render draws what Grafana would show: threshold colours and stacked series."""

from __future__ import annotations

import math
from typing import Any

import pytest

from grafana.render import NAMED_COLORS, field_color, stack
from tests.grafana._files import load_dashboards, panels

BOARDS = load_dashboards()


def _panel(uid: str, title: str) -> dict[str, Any]:
    (found,) = [p for p in panels(BOARDS[uid]) if p["title"] == title]
    return found


@pytest.mark.parametrize(("value", "color"), [
    (0.0, "green"), (0.049, "green"), (0.05, "orange"), (0.099, "orange"), (0.12, "red"),
    (math.nan, "green"),
])
def test_error_ratio_stat_takes_its_threshold_colour(value: float, color: str) -> None:
    """The shipped Error ratio stat (5% / 10% steps) is drawn in the step's colour."""
    assert field_color(_panel("agentbus-agents", "Error ratio"), value) == NAMED_COLORS[color]


def test_dropped_stat_turns_orange_on_any_drop() -> None:
    """The Dropped stat is green at 0 and orange above 0."""
    panel = _panel("agentbus-bus", "Dropped")
    assert field_color(panel, 0.0) == NAMED_COLORS["green"]
    assert field_color(panel, 0.01) == NAMED_COLORS["orange"]


def test_bar_gauges_use_their_fixed_colour_not_default_thresholds() -> None:
    """Token bars stay the fixed blue above 80 (Grafana's default red threshold)."""
    panel = _panel("agentbus-agents", "Tokens in range by agent and model")
    assert field_color(panel, 5000.0) == field_color(panel, 1.0) == NAMED_COLORS["blue"]


def test_panel_without_thresholds_gets_grafanas_default_steps() -> None:
    """No thresholds and no colour config: green, red from 80 (Grafana's defaults)."""
    panel = {"title": "x", "fieldConfig": {"defaults": {}}}
    assert field_color(panel, 79.0) == NAMED_COLORS["green"]
    assert field_color(panel, 80.0) == NAMED_COLORS["red"]


def test_stack_normal_accumulates_in_series_order_with_gaps_as_zero() -> None:
    """Each band's top is the sum of the series up to it; missing points and NaN add 0."""
    times, tops = stack([{1.0: 1.0, 2.0: 2.0}, {2.0: 3.0, 3.0: math.nan}], "normal")
    assert times == [1.0, 2.0, 3.0]
    assert tops == [[1.0, 2.0, 0.0], [1.0, 5.0, 0.0]]


def test_stack_percent_ends_at_one_where_there_is_data() -> None:
    """Percent stacking gives cumulative shares: the last band's top is 1 (or 0 if empty)."""
    _, tops = stack([{1.0: 1.0, 2.0: 0.0}, {1.0: 3.0, 2.0: 0.0}], "percent")
    assert tops == [[0.25, 0.0], [1.0, 0.0]]


def test_stack_rejects_unknown_mode() -> None:
    """A stacking mode Grafana doesn't have is an error naming it."""
    with pytest.raises(ValueError, match="'sideways'"):
        stack([{1.0: 1.0}], "sideways")


def test_stacked_panels_declare_normal_stacking() -> None:
    """The panels drawn stacked are the ones whose JSON declares it (rates by status/type)."""
    stacked = {p["title"] for uid in BOARDS for p in panels(BOARDS[uid])
               if p["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {})
               .get("mode") == "normal"}
    assert "Runs by agent and status" in stacked
    assert "Error ratio by agent" not in stacked
