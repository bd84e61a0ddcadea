"""MetricsCollector, EventStatistics, EventTracer, EventSourcingHandler beyond the seed."""

from __future__ import annotations

import pytest

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, SystemEvent
from agentbus.testing import make_event
from middleware import (
    EventSourcingHandler,
    EventStatistics,
    EventTracer,
    InMemoryEventStore,
    MetricsCollector,
)


async def test_metrics_percentiles_interpolate() -> None:
    """p50/p95/p99 of durations 1..100 ms use linear interpolation."""
    collector = MetricsCollector()
    for ms in range(100, 0, -1):
        await collector(make_event(agent_id="a", execution_time_ms=ms))
    s = collector.get_agent_stats("a")
    assert s is not None
    assert (s["p50"], s["p95"], s["p99"]) == pytest.approx((50.5, 95.05, 99.01))
    assert collector.get_agent_stats("nobody") is None


async def test_metrics_count_is_exact_beyond_max_samples() -> None:
    """count/avg/min/max cover every run; percentiles only the recent max_samples."""
    collector = MetricsCollector(max_samples=10)
    for ms in range(1, 101):
        await collector.collect_metrics(make_event(agent_id="a", execution_time_ms=ms))
    s = collector.get_stats()["a_duration"]
    assert (s["count"], s["min"], s["max"], s["avg"]) == (100, 1, 100, 50.5)
    assert s["p50"] == 95.5
    assert collector.metrics == {"a_duration": [float(i) for i in range(91, 101)]}


async def test_metrics_ignore_other_events_and_missing_durations() -> None:
    """Only AGENT_COMPLETED events with a duration are collected."""
    collector = MetricsCollector()
    await collector(make_event(EventType.ERROR_OCCURRED, execution_time_ms=5))
    await collector(make_event(execution_time_ms=None))
    assert collector.get_stats() == {}


async def test_statistics_percentiles_and_empty_summary() -> None:
    """An empty summary has zero events; timing includes percentiles."""
    stats = EventStatistics()
    assert stats.get_summary() == {"total_events": 0, "by_type": {}, "timing": {}}
    for ms in (10, 20, 30):
        await stats(make_event(agent_id="a", execution_time_ms=ms))
    assert stats.get_summary()["timing"]["a"]["p50"] == 20


async def test_tracer_bounds_log_and_finds_run_by_trace() -> None:
    """max_entries evicts the oldest entries; a real run's events are found by trace id."""
    tracer = EventTracer(max_entries=3)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, tracer)

    async def agent(run: object) -> str:
        return "ok"

    executor = AgentExecutor(
        "a1", AgentConfig(name="a1", description="d", model="m"), agent, event_bus=bus
    )
    result = await executor.execute("hi")
    await bus.drain()
    run = tracer.get_events_for_trace(result.trace_id)
    assert [e["type"] for e in run][-1] == "agent_completed"
    assert all(e["trace_id"] == result.trace_id for e in run)
    for _ in range(3):
        await bus.publish(make_event())
    await bus.drain()
    assert len(tracer.get_trace_log()) == 3 and tracer.evicted >= 1
    await bus.close()


async def test_event_store_filters_and_rebuild_ignores_duplicates() -> None:
    """The store reads by agent/type; replaying stored events does not double the state."""
    store = InMemoryEventStore()
    sourcing: EventSourcingHandler[int] = EventSourcingHandler(
        store, reducer=lambda n, e: n + 1, initial_state=0
    )
    events = [make_event(agent_id=a) for a in ("a", "b", "a")]
    for e in events:
        await sourcing(e)
    for e in events:
        await sourcing(e)
    assert sourcing.state == 3 and sourcing.duplicates == 3
    assert await store.read(agent_id="a") == [events[0], events[2]]
    assert await store.read(event_type=EventType.ERROR_OCCURRED) == []
    assert await sourcing.rebuild() == 3


async def test_update_state_hook_can_be_overridden() -> None:
    """A subclass overriding update_state (the seed's hook) sees each new event once."""
    seen: list[SystemEvent] = []

    class Projection(EventSourcingHandler[None]):
        async def update_state(self, event: SystemEvent) -> None:
            seen.append(event)

    p = Projection()
    e = make_event()
    await p.handle(e)
    await p.handle(e)
    assert seen == [e]
