"""Tests of :class:`agentbus.EventBus`: subscriptions, isolation, waiting, history, guards."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

import pytest

from agentbus import (
    BusClosedError,
    EventBus,
    EventTooLargeError,
    EventType,
    SystemEvent,
    WrongLoopError,
)


class Shop(Enum):
    """A user-defined event type."""

    ORDER_PLACED = "order_placed"
    ORDER_PAID = "order_paid"


def ev(event_type: Enum = EventType.CUSTOM, agent_id: str = "a", **kw: Any) -> SystemEvent:
    """A valid event."""
    return SystemEvent(event_type=event_type, agent_id=agent_id, **kw)


class Recorder:
    """An async handler recording every event it gets."""

    def __init__(self) -> None:
        self.events: list[SystemEvent] = []

    async def __call__(self, event: SystemEvent) -> None:
        self.events.append(event)

    async def handle(self, event: SystemEvent) -> None:
        """Bound-method form of the handler."""
        self.events.append(event)


async def test_subscribe_returns_distinct_ids_and_delivers() -> None:
    """subscribe returns an id per subscription; publish delivers to the matching type only."""
    bus = EventBus()
    started, completed = Recorder(), Recorder()
    id1 = await bus.subscribe(EventType.AGENT_STARTED, started)
    id2 = await bus.subscribe(EventType.AGENT_COMPLETED, completed)
    assert isinstance(id1, str) and id1 != id2
    e1 = ev(EventType.AGENT_STARTED)
    e2 = ev(EventType.AGENT_COMPLETED)
    assert await bus.publish(e1) == 1
    assert await bus.publish(e2) == 1
    assert await bus.publish(ev(EventType.CUSTOM)) == 0
    await bus.drain()
    assert started.events == [e1]
    assert completed.events == [e2]
    assert bus.stats().published == 3
    assert bus.stats().delivered == 2


async def test_any_receives_every_type() -> None:
    """An EventType.ANY subscription receives every event, custom Enum types included."""
    bus = EventBus()
    rec = Recorder()
    await bus.subscribe(EventType.ANY, rec)
    events = [ev(EventType.AGENT_STARTED), ev(Shop.ORDER_PLACED), ev(EventType.ERROR_OCCURRED)]
    for e in events:
        await bus.publish(e)
    await bus.drain()
    assert rec.events == events


async def test_custom_enum_routing() -> None:
    """Subscriptions to custom Enum members route by member, not by value or name."""
    bus = EventBus()
    placed, paid = Recorder(), Recorder()
    await bus.subscribe(Shop.ORDER_PLACED, placed)
    await bus.subscribe(Shop.ORDER_PAID, paid)
    e = ev(Shop.ORDER_PAID)
    await bus.publish(ev(Shop.ORDER_PLACED))
    await bus.publish(e)
    await bus.publish(ev(EventType.CUSTOM))
    await bus.drain()
    assert len(placed.events) == 1 and placed.events[0].event_type is Shop.ORDER_PLACED
    assert paid.events == [e]


async def test_subscribe_rejects_bad_arguments() -> None:
    """A non-Enum event type or a non-callable handler is a TypeError naming the problem."""
    bus = EventBus()
    with pytest.raises(TypeError, match="event_type"):
        await bus.subscribe("agent_started", Recorder())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        await bus.subscribe(EventType.CUSTOM, 42)  # type: ignore[arg-type]
    assert bus.subscription_count == 0


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"overflow": "spill"}, "overflow"),
        ({"max_event_bytes": 0}, "max_event_bytes"),
        ({"history_size": -1}, "history_size"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], word: str) -> None:
    """Bad constructor arguments are a ValueError naming the argument."""
    with pytest.raises(ValueError, match=word):
        EventBus(**kwargs)


async def test_publish_rejects_non_event() -> None:
    """Publishing something that is not a SystemEvent is a TypeError."""
    bus = EventBus()
    with pytest.raises(TypeError, match="SystemEvent"):
        await bus.publish({"event_type": "custom"})  # type: ignore[arg-type]


async def test_unsubscribe_by_id() -> None:
    """After unsubscribe(id) the handler gets no new events; unknown ids return False."""
    bus = EventBus()
    rec = Recorder()
    sub_id = await bus.subscribe(EventType.CUSTOM, rec)
    first = ev()
    await bus.publish(first)
    assert await bus.unsubscribe(sub_id) is True
    await bus.publish(ev())
    await bus.drain()
    assert rec.events == [first]
    assert await bus.unsubscribe(sub_id) is False
    assert bus.subscription_count == 0


async def test_unsubscribe_delivers_queued_events() -> None:
    """Events queued before unsubscribe are still delivered to that handler."""
    bus = EventBus()
    gate = asyncio.Event()
    got: list[SystemEvent] = []

    async def slow(event: SystemEvent) -> None:
        await gate.wait()
        got.append(event)

    sub_id = await bus.subscribe(EventType.CUSTOM, slow)
    events = [ev() for _ in range(3)]
    for e in events:
        await bus.publish(e)
    unsub = asyncio.create_task(bus.unsubscribe(sub_id))
    await asyncio.sleep(0)
    assert not unsub.done()
    gate.set()
    assert await unsub is True
    assert got == events


async def test_unsubscribe_handler_bound_method() -> None:
    """unsubscribe_handler removes every subscription of a bound method (fresh bound method)."""
    bus = EventBus()
    rec, other = Recorder(), Recorder()
    await bus.subscribe(EventType.AGENT_STARTED, rec.handle)
    await bus.subscribe(EventType.AGENT_COMPLETED, rec.handle)
    await bus.subscribe(EventType.AGENT_STARTED, other.handle)
    assert await bus.unsubscribe_handler(rec.handle) == 2
    assert await bus.unsubscribe_handler(rec.handle) == 0
    e = ev(EventType.AGENT_STARTED)
    await bus.publish(e)
    await bus.publish(ev(EventType.AGENT_COMPLETED))
    await bus.drain()
    assert rec.events == []
    assert other.events == [e]


async def test_unsubscribe_handler_function() -> None:
    """unsubscribe_handler works for a plain coroutine function subscribed to ANY."""
    bus = EventBus()
    got: list[SystemEvent] = []

    async def handler(event: SystemEvent) -> None:
        got.append(event)

    await bus.subscribe(EventType.ANY, handler)
    await bus.subscribe(EventType.CUSTOM, handler)
    await bus.publish(ev())
    await bus.drain()
    assert len(got) == 2
    assert await bus.unsubscribe_handler(handler) == 2
    await bus.publish(ev())
    await bus.drain()
    assert len(got) == 2


async def test_on_decorator() -> None:
    """@bus.on subscribes the function and returns it unchanged."""
    bus = EventBus()
    got: list[SystemEvent] = []

    @bus.on(EventType.AGENT_STARTED)
    async def handler(event: SystemEvent) -> None:
        got.append(event)

    e = ev(EventType.AGENT_STARTED)
    await bus.publish(e)
    await bus.drain()
    assert got == [e]
    assert bus.stats().subscriptions[0].name.endswith("handler")


async def test_raising_handler_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """A raising handler: others get every event, the publisher is unaffected, the error is
    counted in stats() and logged with the handler's name."""
    bus = EventBus()
    rec = Recorder()

    async def broken(event: SystemEvent) -> None:
        raise RuntimeError(f"boom on {event.event_id}")

    await bus.subscribe(EventType.ANY, broken, name="broken")
    await bus.subscribe(EventType.ANY, rec, name="recorder")
    events = [ev() for _ in range(5)]
    with caplog.at_level(logging.ERROR, logger="agentbus.bus"):
        for e in events:
            assert await bus.publish(e) == 2
        await bus.drain()
    assert rec.events == events
    stats = {s.name: s for s in bus.stats().subscriptions}
    assert stats["broken"].errors == 5
    assert stats["broken"].delivered == 5
    assert stats["recorder"].errors == 0
    assert bus.stats().handler_errors == 5
    failures = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(failures) == 5
    assert all(r.exc_info is not None for r in failures)
    assert events[0].event_id in failures[0].getMessage()


async def test_raising_sync_handler_is_isolated() -> None:
    """A raising sync handler (run in a thread) is counted and does not stop delivery."""
    bus = EventBus()
    seen: list[str] = []

    def flaky(event: SystemEvent) -> None:
        seen.append(event.event_id)
        if len(seen) == 1:
            raise ValueError("first one fails")

    await bus.subscribe(EventType.CUSTOM, flaky, name="flaky")
    events = [ev() for _ in range(3)]
    for e in events:
        await bus.publish(e)
    await bus.drain()
    assert seen == [e.event_id for e in events]
    assert bus.stats().subscriptions[0].errors == 1


async def test_sync_handler_runs_in_a_thread() -> None:
    """A sync handler runs off the loop thread: it can block until the loop itself acts."""
    bus = EventBus()
    loop_thread = threading.get_ident()
    entered = threading.Event()
    release = threading.Event()
    threads: list[int] = []

    def blocking(event: SystemEvent) -> None:
        threads.append(threading.get_ident())
        entered.set()
        # Only the event loop sets `release`; a handler run on the loop would deadlock here.
        if not release.wait(timeout=30):
            raise AssertionError("the loop never ran while the sync handler blocked")

    await bus.subscribe(EventType.CUSTOM, blocking)
    await bus.publish(ev())
    assert await asyncio.to_thread(entered.wait, 30)
    release.set()  # the loop is running while the handler is blocked
    await bus.drain()
    assert threads and threads[0] != loop_thread
    assert bus.stats().subscriptions[0].errors == 0
    assert bus.stats().subscriptions[0].delivered == 1


async def test_wait_for_returns_first_match() -> None:
    """wait_for returns the first event of the type published after the call."""
    bus = EventBus()
    await bus.publish(ev(EventType.AGENT_COMPLETED, agent_id="before"))
    waiter = asyncio.create_task(bus.wait_for(EventType.AGENT_COMPLETED, timeout=30))
    await asyncio.sleep(0)
    await bus.publish(ev(EventType.AGENT_STARTED, agent_id="x"))
    target = ev(EventType.AGENT_COMPLETED, agent_id="x")
    await bus.publish(target)
    await bus.publish(ev(EventType.AGENT_COMPLETED, agent_id="later"))
    assert await waiter is target


async def test_wait_for_predicate_and_any() -> None:
    """wait_for applies the predicate; EventType.ANY matches any type."""
    bus = EventBus()
    waiter = asyncio.create_task(
        bus.wait_for(EventType.ANY, lambda e: e.agent_id == "wanted", timeout=30)
    )
    await asyncio.sleep(0)
    await bus.publish(ev(EventType.AGENT_STARTED, agent_id="other"))
    target = ev(Shop.ORDER_PLACED, agent_id="wanted")
    await bus.publish(target)
    assert await waiter is target


async def test_wait_for_timeout() -> None:
    """wait_for raises TimeoutError when nothing matches in time, and forgets the waiter."""
    bus = EventBus()
    with pytest.raises(TimeoutError):
        await bus.wait_for(EventType.AGENT_COMPLETED, lambda e: False, timeout=0.01)
    # the expired waiter no longer sees events
    await bus.publish(ev(EventType.AGENT_COMPLETED))
    assert bus._waiters == []


async def test_wait_for_closed_while_waiting() -> None:
    """Closing the bus makes a pending wait_for raise BusClosedError; after close it
    raises at once."""
    bus = EventBus()
    waiter = asyncio.create_task(bus.wait_for(EventType.AGENT_COMPLETED))
    await asyncio.sleep(0)
    await bus.close()
    with pytest.raises(BusClosedError):
        await waiter
    with pytest.raises(BusClosedError):
        await bus.wait_for(EventType.AGENT_COMPLETED, timeout=1)


async def test_max_event_bytes_rejects_and_counts() -> None:
    """An event over max_event_bytes raises EventTooLargeError, is counted as rejected and
    reaches no handler; smaller events pass."""
    bus = EventBus(max_event_bytes=2000)
    rec = Recorder()
    await bus.subscribe(EventType.ANY, rec)
    big = ev(metadata={"blob": "x" * 5000})
    with pytest.raises(EventTooLargeError) as info:
        await bus.publish(big)
    assert big.event_id in str(info.value) and "2000" in str(info.value)
    assert isinstance(info.value, ValueError)
    small = ev(metadata={"blob": "x" * 10})
    await bus.publish(small)
    with pytest.raises(EventTooLargeError):
        bus.publish_sync(big)
    await bus.drain()
    assert rec.events == [small]
    stats = bus.stats()
    assert stats.rejected == {"too_large": 2}
    assert stats.published == 1


async def test_history_and_causation_chain() -> None:
    """get_causation_chain follows causation_id links oldest first; history filters."""
    bus = EventBus(history_size=100)
    root = ev(EventType.AGENT_STARTED, agent_id="main", correlation_id="c1")
    mid = ev(EventType.CUSTOM, agent_id="main", causation_id=root.event_id, correlation_id="c1")
    leaf = ev(EventType.AGENT_COMPLETED, agent_id="sub", causation_id=mid.event_id,
              correlation_id="c1")
    other = ev(EventType.AGENT_STARTED, agent_id="other")
    for e in (root, other, mid, leaf):
        await bus.publish(e)
    assert bus.get_causation_chain(leaf.event_id) == [root, mid, leaf]
    assert bus.get_causation_chain(root.event_id) == [root]
    assert bus.get_causation_chain("nope") == []
    assert bus.get_event(mid.event_id) is mid
    assert bus.history() == [root, other, mid, leaf]
    assert bus.history(agent_id="main") == [root, mid]
    assert bus.history(correlation_id="c1") == [root, mid, leaf]
    assert bus.history(event_types=[EventType.AGENT_STARTED]) == [root, other]


async def test_history_is_bounded() -> None:
    """Only the last history_size events are kept."""
    bus = EventBus(history_size=3)
    events = [ev() for _ in range(5)]
    for e in events:
        await bus.publish(e)
    assert bus.history() == events[2:]
    assert bus.get_event(events[0].event_id) is None


async def test_replay_republishes_in_order() -> None:
    """replay publishes the given events again, in order, to current subscribers."""
    bus = EventBus()
    events = [ev(agent_id=f"a{i}") for i in range(3)]
    for e in events:
        await bus.publish(e)
    rec = Recorder()
    await bus.subscribe(EventType.ANY, rec)
    assert await bus.replay(bus.history()) == 3
    await bus.drain()
    assert rec.events == events


async def test_stats_snapshot() -> None:
    """stats() reports capacity, subscription names/types and per-handler delivery counts."""
    bus = EventBus(max_queue_size=7)
    await bus.subscribe(EventType.AGENT_STARTED, Recorder(), name="starts")
    await bus.subscribe(Shop.ORDER_PAID, Recorder(), name="paid")
    await bus.publish(ev(EventType.AGENT_STARTED))
    await bus.publish(ev(EventType.AGENT_STARTED))
    await bus.drain()
    stats = bus.stats()
    assert stats.capacity == 7 and stats.closed is False
    by_name = {s.name: s for s in stats.subscriptions}
    assert by_name["starts"].event_type == "agent_started"
    assert by_name["paid"].event_type == "order_paid"
    assert by_name["starts"].delivered == 2 and by_name["paid"].delivered == 0
    assert by_name["starts"].queue_depth == 0
    assert stats.dropped == {} and stats.rejected == {}


def _run_in_thread(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` in a new thread; return what it raised, if anything."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return errors[0] if errors else None


async def test_second_loop_publish_raises_wrong_loop() -> None:
    """A bus bound to one running loop refuses publish/subscribe from another loop."""
    bus = EventBus()
    rec = Recorder()
    await bus.subscribe(EventType.ANY, rec)

    err = await asyncio.to_thread(_run_in_thread, lambda: asyncio.run(bus.publish(ev())))
    assert isinstance(err, WrongLoopError)
    err = await asyncio.to_thread(
        _run_in_thread, lambda: asyncio.run(bus.subscribe(EventType.ANY, Recorder()))
    )
    assert isinstance(err, WrongLoopError)
    await bus.drain()
    assert rec.events == []
    assert bus.subscription_count == 1


async def test_wait_for_predicate_error_reaches_the_waiter() -> None:
    """A predicate that raises fails that wait_for with its exception; publishing and other
    waiters are unaffected."""
    bus = EventBus()

    def bad(event: SystemEvent) -> bool:
        raise ValueError("predicate broke")

    failing = asyncio.create_task(bus.wait_for(EventType.CUSTOM, bad, timeout=30))
    fine = asyncio.create_task(bus.wait_for(EventType.CUSTOM, timeout=30))
    await asyncio.sleep(0)
    e = ev()
    assert await bus.publish(e) == 0
    with pytest.raises(ValueError, match="predicate broke"):
        await failing
    assert await fine is e


async def test_stats_readable_from_another_thread() -> None:
    """stats() can be called from another thread while the loop publishes."""
    bus = EventBus()
    rec = Recorder()
    await bus.subscribe(EventType.ANY, rec)
    snapshots: list[int] = []
    stop = threading.Event()

    reading = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            snapshots.append(bus.stats().published)
            reading.set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert await asyncio.to_thread(reading.wait, 30)
        for _ in range(200):
            await bus.publish(ev())
            await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
    await bus.drain()
    assert snapshots and snapshots == sorted(snapshots)
    assert bus.stats().published == 200 and len(rec.events) == 200
