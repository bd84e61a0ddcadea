"""PriorityEventBus: priority order, FIFO within a priority, automatic mode, close."""

from __future__ import annotations

import asyncio
import random

import pytest

from agentbus import BusClosedError, EventBus, EventType, SystemEvent
from agentbus.testing import CapturingHandler, make_event
from middleware import Priority, PriorityEventBus


def tagged(publisher: int, n: int, priority: Priority) -> SystemEvent:
    return make_event(metadata={"publisher": publisher, "n": n, "priority": priority.value})


async def test_priority_order_under_concurrent_publishers() -> None:
    """Events from 6 concurrent publishers come out HIGH, MEDIUM, LOW; FIFO within each."""
    bus = PriorityEventBus()
    capture = CapturingHandler()
    await bus.subscribe(EventType.ANY, capture)
    rng = random.Random(3)
    published: list[SystemEvent] = []

    async def publisher(p: int) -> None:
        for n in range(30):
            prio = rng.choice(list(Priority))
            event = tagged(p, n, prio)
            published.append(event)  # the order publish() is called in
            await bus.publish(event, priority=prio)
            await asyncio.sleep(0)

    await asyncio.gather(*(publisher(p) for p in range(6)))
    assert await bus.dispatch_events() == 180
    await bus.drain()

    expected = sorted(published, key=lambda e: e.metadata["priority"])  # stable sort
    assert capture.events == expected
    priorities = [e.metadata["priority"] for e in capture.events]
    assert priorities == sorted(priorities) and len(set(priorities)) == 3
    await bus.close()


async def test_auto_dispatch_reorders_while_handler_is_busy() -> None:
    """In automatic mode, a HIGH event queued behind backpressure jumps the LOW ones."""
    gate = asyncio.Event()
    seen: list[str] = []

    async def slow(event: SystemEvent) -> None:
        await gate.wait()
        seen.append(event.metadata["name"])

    bus = PriorityEventBus(max_queue_size=1, auto_dispatch=True)
    await bus.subscribe(EventType.ANY, slow)
    for i in range(4):
        await bus.publish(make_event(metadata={"name": f"low{i}"}), priority=Priority.LOW)
    await asyncio.sleep(0.01)  # the dispatcher is now blocked on the full mailbox
    await bus.publish(make_event(metadata={"name": "high"}), priority=Priority.HIGH)
    gate.set()
    await bus.drain()
    assert seen.index("high") < seen.index("low3")
    assert sorted(seen) == ["high", "low0", "low1", "low2", "low3"]
    await bus.close()


async def test_close_dispatches_what_is_queued() -> None:
    """close() publishes every queued event before closing; later publishes raise."""
    bus = PriorityEventBus()
    capture = CapturingHandler()
    await bus.subscribe(EventType.ANY, capture)
    events = [make_event() for _ in range(3)]
    for e in events:
        await bus.publish(e, Priority.LOW)
    await bus.close()
    assert capture.events == events and bus.pending == 0
    with pytest.raises(BusClosedError):
        await bus.publish(make_event())


async def test_publish_sync_from_another_thread() -> None:
    """publish_sync from a worker thread queues with the given priority."""
    bus = PriorityEventBus(auto_dispatch=True)
    capture = CapturingHandler()
    await bus.subscribe(EventType.ANY, capture)
    event = make_event()
    await asyncio.to_thread(bus.publish_sync, event, Priority.HIGH, timeout=5)
    await capture.wait_for(1)
    assert capture.events == [event]
    await bus.close()


async def test_is_an_event_bus_and_validates_priority() -> None:
    """PriorityEventBus is an EventBus; a non-Priority priority is a TypeError."""
    bus = PriorityEventBus(max_queue_size=10, overflow="drop_newest")
    assert isinstance(bus, EventBus) and bus.overflow == "drop_newest"
    with pytest.raises(TypeError, match="Priority"):
        await bus.publish(make_event(), priority=1)  # type: ignore[arg-type]
    await bus.close()
