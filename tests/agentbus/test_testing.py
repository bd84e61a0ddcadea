"""agentbus.testing: FakeClock, CapturingHandler, capture_events, make_event."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from agentbus import EventBus, EventType, SessionManager
from agentbus.testing import CapturingHandler, FakeClock, capture_events, make_event


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    """advance() wakes due sleepers in deadline order, each at its own deadline time."""
    clock = FakeClock(start=100)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in (("c", 3), ("a", 1), ("b", 2))]
    await clock.wait_for_sleepers(3)
    await clock.advance(2.5)
    assert woke == [("a", 101), ("b", 102)] and clock() == 102.5
    await clock.advance(0.5)
    await asyncio.gather(*tasks)
    assert woke[-1] == ("c", 103)


async def test_fake_clock_periodic_timer_fires_once_per_period() -> None:
    """A loop sleeping 1 s ticks 5 times when time advances 5 s at once."""
    clock = FakeClock()
    ticks: list[float] = []

    async def timer() -> None:
        while True:
            await clock.sleep(1)
            ticks.append(clock.monotonic())

    task = asyncio.ensure_future(timer())
    await clock.advance(5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ticks == [1, 2, 3, 4, 5]


async def test_fake_clock_rejects_going_backwards_and_run_times_out() -> None:
    """Negative advances are ValueErrors; run() gives up after max_steps."""
    clock = FakeClock()
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    with pytest.raises(TimeoutError):
        await clock.run(asyncio.Event().wait(), max_steps=3)


def test_fake_clock_drives_session_manager() -> None:
    """The clock's call form fits SessionManager(clock=...)."""
    clock = FakeClock(start=5)
    manager = SessionManager(EventBus(), ttl_seconds=10, clock=clock)
    assert manager is not None and clock() == 5


async def test_capturing_handler_waits_and_times_out() -> None:
    """wait_for returns once enough events arrived and times out with a clear message."""
    capture = CapturingHandler(predicate=lambda e: e.agent_id != "skip")
    asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(
        capture(make_event(agent_id="x"))
    ))
    assert len(await capture.wait_for(1, timeout=5)) == 1
    await capture(make_event(agent_id="skip"))
    assert len(capture.events) == 1
    with pytest.raises(TimeoutError, match="captured 1 events, expected at least 2"):
        await capture.wait_for(2, timeout=0.01)


async def test_capture_events_collects_what_the_block_published() -> None:
    """capture_events subscribes for the block and drains on exit."""
    bus = EventBus()
    async with capture_events(bus, EventType.ERROR_OCCURRED) as cap:
        await bus.publish(make_event(EventType.ERROR_OCCURRED))
        await bus.publish(make_event(EventType.AGENT_STARTED))
    assert cap.event_types == [EventType.ERROR_OCCURRED]
    assert bus.subscription_count == 0
    await bus.close()


def test_make_event_validates_overrides() -> None:
    """make_event builds valid events and reports bad fields."""
    assert make_event(user_id="u").user_id == "u"
    with pytest.raises(ValidationError, match="execution_time_ms"):
        make_event(execution_time_ms=-1)
