"""EventAggregator: thresholds, sliding windows, keys, close."""

from __future__ import annotations

import threading

import pytest

from agentbus import EventType, SystemEvent
from agentbus.testing import FakeClock, make_event
from middleware import EventAggregator


class Calls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[SystemEvent]]] = []

    async def __call__(self, key: str, events: list[SystemEvent]) -> None:
        self.calls.append((key, events))


def error(agent: str = "a") -> SystemEvent:
    return make_event(EventType.ERROR_OCCURRED, agent)


async def test_threshold_reports_once_then_starts_over() -> None:
    """Reaching the threshold calls back with those events and resets the key."""
    calls = Calls()
    agg = EventAggregator(window_seconds=60, threshold=3, on_aggregate=calls, clock=FakeClock())
    events = [error() for _ in range(7)]
    for e in events:
        await agg(e)
    assert calls.calls == [
        ("error_occurred_a", events[0:3]),
        ("error_occurred_a", events[3:6]),
    ]
    assert agg.events == {"error_occurred_a": events[6:]}
    assert agg.aggregations == 2


async def test_window_expires_old_events() -> None:
    """Events older than window_seconds no longer count towards the threshold."""
    clock = FakeClock()
    calls = Calls()
    agg = EventAggregator(window_seconds=60, threshold=3, on_aggregate=calls, clock=clock)
    await agg(error())
    await agg(error())
    await clock.advance(60)
    await agg(error())
    assert calls.calls == [] and agg.expired == 2
    await clock.advance(30)
    await agg(error())
    await clock.advance(29)
    await agg(error())
    assert len(calls.calls) == 1 and len(calls.calls[0][1]) == 3


async def test_expire_cleans_idle_keys() -> None:
    """expire() drops aged-out events of keys that saw no new event."""
    clock = FakeClock()
    agg = EventAggregator(window_seconds=10, threshold=5, clock=clock)
    await agg(error("a"))
    await agg(error("b"))
    await clock.advance(11)
    assert agg.expire() == 2
    assert agg.events == {}


async def test_keys_are_counted_separately() -> None:
    """Events of different agents or types never aggregate together."""
    calls = Calls()
    agg = EventAggregator(threshold=2, on_aggregate=calls, clock=FakeClock())
    await agg(error("a"))
    await agg(error("b"))
    await agg(make_event(EventType.AGENT_COMPLETED, "a"))
    assert calls.calls == []
    await agg(error("b"))
    assert [k for k, _ in calls.calls] == ["error_occurred_b"]


async def test_custom_key_and_sync_callback() -> None:
    """A key function groups across agents; a sync callback is accepted."""
    seen: list[str] = []
    agg = EventAggregator(
        threshold=2, key=lambda e: e.type_name, on_aggregate=lambda k, ev: seen.append(k),
        clock=FakeClock(),
    )
    await agg(error("a"))
    await agg(error("b"))
    assert seen == ["error_occurred"]


async def test_aclose_counts_pending_events() -> None:
    """Events below the threshold at close are counted as discarded, never silently lost."""
    agg = EventAggregator(threshold=5, clock=FakeClock())
    for _ in range(3):
        await agg(error())
    await agg.aclose()
    await agg.aclose()
    assert agg.discarded == 3
    with pytest.raises(RuntimeError, match="closed"):
        await agg(error())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"window_seconds": 0}, "window_seconds"),
        ({"threshold": 0}, "threshold"),
        ({"max_keys": 0}, "max_keys"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, float], name: str) -> None:
    """Bad window or threshold raise ValueError naming it."""
    with pytest.raises(ValueError, match=name):
        EventAggregator(**kwargs)  # type: ignore[arg-type]


async def test_sync_callback_runs_in_a_worker_thread() -> None:
    """A sync on_aggregate callback is called off the event-loop thread."""
    threads: list[int] = []
    agg = EventAggregator(
        threshold=2, on_aggregate=lambda k, ev: threads.append(threading.get_ident()),
        clock=FakeClock(),
    )
    await agg(error())
    await agg(error())
    assert len(threads) == 1 and threads[0] != threading.get_ident()


async def test_idle_keys_are_swept_by_other_keys_arrivals() -> None:
    """Windows of many distinct keys expire when time passes, without events of their own."""
    clock = FakeClock()
    agg = EventAggregator(window_seconds=10, threshold=5, key=lambda e: e.session_id or "",
                          clock=clock)
    for i in range(500):
        await agg(make_event(session_id=f"s{i}"))
        if i % 100 == 99:
            await clock.advance(1)
    assert agg.key_count == 500
    await clock.advance(5.5)  # t=10.5: keys s0..s99 (last event at t=0) left the window
    await agg(make_event(session_id="new"))
    assert agg.key_count == 401 and agg.expired == 100
    await clock.advance(9.9)  # t=20.4: everything but "new" (t=10.5) left the window
    await agg(make_event(session_id="newer"))
    assert set(agg.events) == {"new", "newer"}
    assert agg.expired == 500 and agg.evictions == 0


async def test_max_keys_bounds_memory_and_counts_evictions() -> None:
    """Beyond max_keys a new key evicts the least recently active one, counted."""
    agg = EventAggregator(threshold=3, key=lambda e: e.session_id or "", max_keys=100,
                          clock=FakeClock())
    await agg(make_event(session_id="s0"))
    for i in range(1, 1000):
        await agg(make_event(session_id=f"s{i}"))
        if i % 50 == 0:
            await agg(make_event(session_id="s0"))  # keeps s0 recently active
    assert agg.key_count == 100
    assert agg.evictions == 900 and agg.evicted_events == 900
    assert "s0" in agg.events and len(agg.events["s0"]) == 2  # 20 events, aggregated by 3s
    assert "s999" in agg.events and "s1" not in agg.events
