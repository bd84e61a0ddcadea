"""The cardinality guard: LabelGuard alone and inside PrometheusMetricsHandler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum

import pytest
from prometheus_client import CollectorRegistry

from agentbus import EventBus, EventType, SystemEvent
from middleware.prometheus import OTHER, LabelGuard, PrometheusMetricsHandler


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus(max_queue_size=20_000)
    yield b
    await b.close()


def label_values(registry: CollectorRegistry, family: str, label: str) -> set[str]:
    """Distinct values of ``label`` among the samples of ``family``."""
    return {
        s.labels[label]
        for m in registry.collect()
        if m.name == family
        for s in m.samples
        if label in s.labels
    }


async def test_ten_thousand_agent_names_produce_at_most_cap_plus_other(
    bus: EventBus,
) -> None:
    """10,000 distinct agent names give at most label_limit + _OTHER series; overflow counted."""
    registry = CollectorRegistry()
    cap = 50
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry, label_limit=cap))
    n = 10_000
    for i in range(n):
        await bus.publish(SystemEvent(event_type=EventType.AGENT_COMPLETED,
                                      agent_id=f"runaway-agent-{i}", execution_time_ms=5.0))
    await bus.drain()
    for family in ("agentbus_agent_runs", "agentbus_agent_run_duration_seconds"):
        agents = label_values(registry, family, "agent")
        assert len(agents) <= cap + 1
        assert OTHER in agents
    total = sum(
        s.value for m in registry.collect() if m.name == "agentbus_agent_runs"
        for s in m.samples if s.name == "agentbus_agent_runs_total"
    )
    assert total == n  # folded, never lost
    assert registry.get_sample_value(
        "agentbus_agent_runs_total", {"agent": OTHER, "model": "unknown", "status": "success"}
    ) == n - cap
    assert registry.get_sample_value(
        "agentbus_label_overflow_total",
        {"metric": "agentbus_agent_runs_total", "label": "agent"},
    ) == n - cap


async def test_runaway_error_messages_as_error_types_are_capped(bus: EventBus) -> None:
    """Distinct error types beyond the cap fold into _OTHER on the errors metric."""
    registry = CollectorRegistry()
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry, label_limit=3))
    for i in range(10):
        await bus.publish(SystemEvent(event_type=EventType.ERROR_OCCURRED, agent_id="a",
                                      error_type=f"failed for order {i}"))
    await bus.drain()
    assert len(label_values(registry, "agentbus_agent_errors", "error_type")) == 4
    assert registry.get_sample_value(
        "agentbus_label_overflow_total",
        {"metric": "agentbus_agent_errors_total", "label": "error_type"},
    ) == 7


async def test_event_type_label_is_guarded(bus: EventBus) -> None:
    """Custom event types beyond the cap are folded into _OTHER in agentbus_events_total."""
    Many = Enum("Many", {f"T{i}": f"type_{i}" for i in range(5)})  # type: ignore[misc]
    registry = CollectorRegistry()
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry, label_limit=2))
    for member in Many:
        await bus.publish(SystemEvent(event_type=member, agent_id="a"))
    await bus.drain()
    assert label_values(registry, "agentbus_events", "event_type") == {
        "type_0", "type_1", OTHER
    }
    assert registry.get_sample_value("agentbus_events_total", {"event_type": OTHER}) == 3


def test_guard_passes_first_values_then_folds_and_calls_back() -> None:
    """LabelGuard admits `limit` values, keeps them, and folds new ones."""
    folded: list[int] = []
    guard = LabelGuard(2, on_overflow=lambda: folded.append(1))
    assert [guard(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER,
                                                                  "b"]
    assert len(folded) == 2
    assert guard.admitted == frozenset({"a", "b"})


def test_guard_sanitises_long_non_string_and_unencodable_values() -> None:
    """Values are stringified, truncated and made UTF-8 safe."""
    guard = LabelGuard(10, max_length=8)
    assert guard("x" * 100) == "x" * 8
    assert guard(42) == "42"
    bad = guard("bad\udc80value")
    bad.encode("utf-8")  # would raise if a lone surrogate were left in
    assert bad.startswith("bad")


def test_guard_rejects_bad_limits() -> None:
    """A limit below 1 raises ValueError naming the argument."""
    with pytest.raises(ValueError, match="limit"):
        LabelGuard(0)
    with pytest.raises(ValueError, match="max_length"):
        LabelGuard(5, max_length=0)
