"""Delivery guarantees of :class:`agentbus.EventBus`: ordering, slow handlers, full queues,
``publish_sync`` from threads, ``close()`` draining, cancellation."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from agentbus import BusClosedError, EventBus, EventType, QueueFullError, SystemEvent


def ev(**kw: Any) -> SystemEvent:
    """A valid CUSTOM event."""
    return SystemEvent(event_type=EventType.CUSTOM, agent_id="a", **kw)


async def spin_until(pred: Callable[[], bool], *, spins: int = 10_000) -> None:
    """Yield to the loop until ``pred()`` holds (bounded by yields, not by time)."""
    for _ in range(spins):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def wait_until(pred: Callable[[], bool], *, timeout: float = 30.0) -> None:
    """Poll ``pred()`` while other threads work; the timeout only guards against hangs."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if pred():
                return
            await asyncio.sleep(0.001)


class Gated:
    """An async handler that blocks on an ``asyncio.Event`` before recording each event."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.events: list[SystemEvent] = []

    async def __call__(self, event: SystemEvent) -> None:
        self.entered.set()
        await self.gate.wait()
        self.events.append(event)


# ---------------------------------------------------------------------------- ordering


async def test_each_handler_sees_publish_order_under_concurrent_publishers() -> None:
    """With several concurrent publishers and a small queue, every handler receives every
    event, each publisher's events in the order it published them."""
    bus = EventBus(max_queue_size=4)
    received: dict[str, list[tuple[int, int]]] = {"h1": [], "h2": [], "h3": []}

    def make(name: str, yields: int) -> Callable[[SystemEvent], Any]:
        async def handler(event: SystemEvent) -> None:
            for _ in range(yields):
                await asyncio.sleep(0)
            received[name].append((event.metadata["p"], event.metadata["seq"]))

        return handler

    for i, name in enumerate(received):
        await bus.subscribe(EventType.ANY, make(name, i), name=name)

    async def publisher(p: int) -> None:
        for seq in range(50):
            await bus.publish(ev(metadata={"p": p, "seq": seq}))
            if seq % 7 == p:
                await asyncio.sleep(0)

    await asyncio.gather(*(publisher(p) for p in range(5)))
    await bus.drain()
    for name, got in received.items():
        assert len(got) == 250, name
        for p in range(5):
            assert [s for q, s in got if q == p] == list(range(50)), (name, p)
    assert bus.stats().dropped == {}


async def test_single_publisher_order_is_total() -> None:
    """One publisher: every handler sees exactly the publish sequence."""
    bus = EventBus(max_queue_size=2)
    seen: list[list[int]] = [[], []]

    async def h0(event: SystemEvent) -> None:
        seen[0].append(event.metadata["i"])

    async def h1(event: SystemEvent) -> None:
        await asyncio.sleep(0)
        seen[1].append(event.metadata["i"])

    await bus.subscribe(EventType.ANY, h0)
    await bus.subscribe(EventType.CUSTOM, h1)
    for i in range(100):
        await bus.publish(ev(metadata={"i": i}))
    await bus.drain()
    assert seen == [list(range(100)), list(range(100))]


# ---------------------------------------------------------------------------- slow handler


async def test_slow_handler_does_not_delay_fast_one() -> None:
    """While one handler is stuck on its first event, another receives all events and the
    publisher is never suspended (the queue has room)."""
    bus = EventBus(max_queue_size=100)
    slow = Gated()
    fast: list[SystemEvent] = []
    fast_done = asyncio.Event()

    async def fast_handler(event: SystemEvent) -> None:
        fast.append(event)
        if len(fast) == 10:
            fast_done.set()

    await bus.subscribe(EventType.ANY, slow, name="slow")
    await bus.subscribe(EventType.ANY, fast_handler, name="fast")
    events = [ev() for _ in range(10)]
    for e in events:
        await bus.publish(e)
    await asyncio.wait_for(fast_done.wait(), 30)
    assert fast == events
    assert slow.entered.is_set() and slow.events == []
    depth = {s.name: s.queue_depth for s in bus.stats().subscriptions}
    assert depth == {"slow": 10, "fast": 0}
    slow.gate.set()
    await bus.drain()
    assert slow.events == events


# ---------------------------------------------------------------------------- full queue


async def test_block_policy_suspends_publisher_until_room() -> None:
    """Under "block" a publisher facing a full mailbox is suspended, and resumes (with its
    event delivered in order) once the handler makes room."""
    bus = EventBus(max_queue_size=2)
    h = Gated()
    await bus.subscribe(EventType.ANY, h)
    first = [ev() for _ in range(3)]  # one in the handler, two queued
    for e in first:
        await bus.publish(e)
    await spin_until(h.entered.is_set)
    extra = ev()
    blocked = asyncio.create_task(bus.publish(extra))
    await spin_until(lambda: bool(bus._subs and next(iter(bus._subs.values())).space_waiters))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done()
    h.gate.set()
    assert await asyncio.wait_for(blocked, 30) == 1
    await bus.drain()
    assert h.events == [*first, extra]
    assert bus.stats().dropped == {}


async def test_block_policy_other_handlers_still_get_earlier_events() -> None:
    """A publisher blocked on one handler's full mailbox does not hold back events already
    queued for others."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    other: list[SystemEvent] = []

    async def record(event: SystemEvent) -> None:
        other.append(event)

    await bus.subscribe(EventType.ANY, h, name="slow")
    await bus.subscribe(EventType.ANY, record, name="other")
    e1, e2, e3 = ev(), ev(), ev()
    await bus.publish(e1)
    await spin_until(h.entered.is_set)
    await bus.publish(e2)
    blocked = asyncio.create_task(bus.publish(e3))
    await spin_until(lambda: len(other) == 2)
    assert not blocked.done()
    h.gate.set()
    await blocked
    await bus.drain()
    assert other == [e1, e2, e3] and h.events == [e1, e2, e3]


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_drop_policies_count_drops(policy: Any) -> None:
    """Under drop_newest / drop_oldest a full mailbox never suspends the publisher; the
    lost deliveries are counted in stats().dropped and per subscription."""
    bus = EventBus(max_queue_size=2, overflow=policy)
    h = Gated()
    fast: list[SystemEvent] = []

    async def record(event: SystemEvent) -> None:
        fast.append(event)

    await bus.subscribe(EventType.ANY, h, name="slow")
    await bus.subscribe(EventType.ANY, record, name="fast")
    events = [ev(metadata={"i": i}) for i in range(6)]
    await bus.publish(events[0])
    await spin_until(h.entered.is_set)  # e0 in the handler
    for n, e in enumerate(events[1:], start=2):
        await bus.publish(e)  # never blocks
        await spin_until(lambda n=n: len(fast) == n)  # fast keeps up
    h.gate.set()
    await bus.drain()
    got = [e.metadata["i"] for e in h.events]
    if policy == "drop_newest":
        assert got == [0, 1, 2]
    else:
        assert got == [0, 4, 5]
    stats = bus.stats()
    assert stats.dropped == {"queue_full": 3}
    by_name = {s.name: s for s in stats.subscriptions}
    assert by_name["slow"].dropped == 3 and by_name["fast"].dropped == 0
    assert fast == events
    assert by_name["slow"].delivered + by_name["slow"].dropped == len(events)


async def test_publish_nowait_raises_queue_full_without_partial_delivery() -> None:
    """publish(wait=False) under "block" raises QueueFullError when a mailbox is full; the
    event is queued to no handler and counted as rejected."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    other: list[SystemEvent] = []

    async def record(event: SystemEvent) -> None:
        other.append(event)

    await bus.subscribe(EventType.ANY, record, name="first")  # has room
    await bus.subscribe(EventType.ANY, h, name="slow")
    await bus.publish(ev())
    await spin_until(h.entered.is_set)
    await bus.publish(ev())  # fills "slow"
    await spin_until(lambda: len(other) == 2)  # "first" has room again
    refused = ev()
    with pytest.raises(QueueFullError, match="slow"):
        await bus.publish(refused, wait=False)
    h.gate.set()
    await bus.drain()
    assert refused not in other and refused not in h.events
    assert bus.stats().rejected == {"queue_full": 1}
    assert bus.stats().published == 2


async def test_publish_sync_on_loop_thread_raises_queue_full() -> None:
    """publish_sync on the loop thread never waits: a full mailbox raises QueueFullError and
    nothing is queued; with room it queues at once."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    await bus.subscribe(EventType.ANY, h)
    assert bus.publish_sync(ev()) == 1
    await spin_until(h.entered.is_set)
    assert bus.publish_sync(ev()) == 1
    with pytest.raises(QueueFullError, match="max_queue_size=1"):
        bus.publish_sync(ev())
    h.gate.set()
    await bus.drain()
    assert len(h.events) == 2
    assert bus.stats().rejected == {"queue_full": 1}


async def test_publish_sync_before_any_loop_use_binds_running_loop() -> None:
    """publish_sync from sync code called inside the loop works before the bus is bound."""
    bus = EventBus()
    assert bus.publish_sync(ev()) == 0
    assert bus.stats().published == 1


def test_publish_sync_without_loop_is_a_clear_error() -> None:
    """publish_sync with no bound or running loop raises RuntimeError explaining why."""
    bus = EventBus()
    with pytest.raises(RuntimeError, match="event loop"):
        bus.publish_sync(ev())


# ---------------------------------------------------------------------------- threads


async def test_publish_sync_from_several_threads() -> None:
    """publish_sync from several threads: every event is delivered, each thread's events in
    that thread's order."""
    bus = EventBus(max_queue_size=8)
    got: list[tuple[int, int]] = []

    async def record(event: SystemEvent) -> None:
        got.append((event.metadata["t"], event.metadata["i"]))

    await bus.subscribe(EventType.ANY, record)

    def worker(t: int) -> None:
        for i in range(200):
            bus.publish_sync(ev(metadata={"t": t, "i": i}), timeout=30)

    await asyncio.gather(*(asyncio.to_thread(worker, t) for t in range(4)))
    await bus.drain()
    assert len(got) == 800
    for t in range(4):
        assert [i for q, i in got if q == t] == list(range(200))


async def test_publish_sync_from_thread_blocks_on_backpressure() -> None:
    """From another thread, publish_sync under "block" suspends the thread while the mailbox
    is full and returns once there is room."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    await bus.subscribe(EventType.ANY, h)
    returned: list[int] = []

    def producer() -> None:
        for i in range(3):
            bus.publish_sync(ev(metadata={"i": i}), timeout=30)
            returned.append(i)

    thread_task = asyncio.ensure_future(asyncio.to_thread(producer))
    sub = next(iter(bus._subs.values()))
    # event 0 in the handler, event 1 queued, event 2's publisher waits for room
    await wait_until(lambda: bool(sub.space_waiters))
    assert returned == [0, 1]
    assert not thread_task.done()
    h.gate.set()
    await asyncio.wait_for(thread_task, 30)
    await bus.drain()
    assert returned == [0, 1, 2]
    assert [e.metadata["i"] for e in h.events] == [0, 1, 2]


async def test_publish_sync_from_thread_timeout() -> None:
    """A thread's publish_sync that cannot queue within timeout raises TimeoutError; the
    deliveries it could not make are counted, never silently lost."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    await bus.subscribe(EventType.ANY, h, name="slow")
    await bus.publish(ev())
    await spin_until(h.entered.is_set)
    await bus.publish(ev())

    def late() -> BaseException | None:
        try:
            bus.publish_sync(ev(), timeout=0.01)
        except BaseException as exc:
            return exc
        return None

    err = await asyncio.to_thread(late)
    assert isinstance(err, TimeoutError)
    h.gate.set()
    await bus.drain()
    stats = bus.stats()
    assert len(h.events) + sum(stats.dropped.values()) == stats.published


async def test_publish_sync_from_thread_after_close() -> None:
    """A thread's publish_sync after close raises BusClosedError."""
    bus = EventBus()
    await bus.subscribe(EventType.ANY, Gated())
    await bus.close()
    err = await asyncio.to_thread(lambda: _capture(lambda: bus.publish_sync(ev(), timeout=30)))
    assert isinstance(err, BusClosedError)


def _capture(fn: Callable[[], Any]) -> BaseException | None:
    try:
        fn()
    except BaseException as exc:
        return exc
    return None


# ---------------------------------------------------------------------------- close


async def test_close_drains_then_rejects() -> None:
    """close() delivers every accepted event before returning, then publish, publish_sync
    and subscribe raise BusClosedError (counted as rejected)."""
    bus = EventBus(max_queue_size=100)
    h = Gated()
    await bus.subscribe(EventType.ANY, h)
    events = [ev() for _ in range(20)]
    for e in events:
        await bus.publish(e)
    closing = asyncio.create_task(bus.close())
    await spin_until(lambda: bus.closed)
    with pytest.raises(BusClosedError):
        await bus.publish(ev())
    assert not closing.done()
    h.gate.set()
    await asyncio.wait_for(closing, 30)
    assert h.events == events
    with pytest.raises(BusClosedError, match="closed"):
        await bus.publish(ev())
    with pytest.raises(BusClosedError):
        bus.publish_sync(ev())
    with pytest.raises(BusClosedError):
        await bus.subscribe(EventType.ANY, Gated())
    stats = bus.stats()
    assert stats.closed is True
    assert stats.rejected == {"closed": 3}
    assert stats.published == 20


async def test_close_delivers_events_of_publishers_blocked_on_full_queue() -> None:
    """Events whose publisher was waiting for room when close() started are still delivered
    to every handler before close() returns."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    other: list[SystemEvent] = []

    async def record(event: SystemEvent) -> None:
        other.append(event)

    await bus.subscribe(EventType.ANY, h, name="slow")
    await bus.subscribe(EventType.ANY, record, name="fast")
    e1, e2, e3 = ev(), ev(), ev()
    await bus.publish(e1)
    await spin_until(h.entered.is_set)
    await bus.publish(e2)
    blocked = asyncio.create_task(bus.publish(e3))
    await spin_until(lambda: len(other) == 2)
    closing = asyncio.create_task(bus.close())
    await spin_until(lambda: bus.closed)
    h.gate.set()
    await asyncio.wait_for(closing, 30)
    assert blocked.done() and blocked.result() == 2
    assert h.events == [e1, e2, e3]
    assert other == [e1, e2, e3]
    assert bus.stats().dropped == {}


async def test_async_with_closes_on_exit() -> None:
    """`async with EventBus()` drains and closes on exit."""
    h = Gated()
    h.gate.set()
    async with EventBus() as bus:
        await bus.subscribe(EventType.ANY, h)
        events = [ev() for _ in range(5)]
        for e in events:
            await bus.publish(e)
    assert bus.closed
    assert h.events == events


async def test_close_timeout_counts_undelivered() -> None:
    """close(timeout) gives up on a stuck handler: the event it was handling and those still
    queued are counted as dropped with reason "close_timeout"; other handlers got all."""
    bus = EventBus()
    stuck = Gated()  # never released
    fast: list[SystemEvent] = []

    async def record(event: SystemEvent) -> None:
        fast.append(event)

    await bus.subscribe(EventType.ANY, stuck, name="stuck")
    await bus.subscribe(EventType.ANY, record, name="fast")
    events = [ev() for _ in range(4)]
    for e in events:
        await bus.publish(e)
    await bus.close(timeout=0.05)
    assert fast == events
    stats = bus.stats()
    assert stats.dropped == {"close_timeout": 4}
    assert {s.name: s.dropped for s in stats.subscriptions} == {"stuck": 4, "fast": 0}


async def test_close_timeout_releases_blocked_publisher() -> None:
    """A publisher blocked on a stuck handler when close(timeout) gives up gets
    BusClosedError, and its undelivered event is counted as dropped."""
    bus = EventBus(max_queue_size=1)
    stuck = Gated()
    await bus.subscribe(EventType.ANY, stuck, name="stuck")
    await bus.publish(ev())
    await spin_until(stuck.entered.is_set)
    await bus.publish(ev())
    blocked = asyncio.create_task(bus.publish(ev()))
    await spin_until(lambda: bool(next(iter(bus._subs.values())).space_waiters))
    await bus.close(timeout=0.05)
    with pytest.raises(BusClosedError):
        await asyncio.wait_for(blocked, 30)
    stats = bus.stats()
    assert stats.published == 3
    assert stats.dropped == {"close_timeout": 3}


class Closable:
    """A handler object with aclose(), counting calls."""

    def __init__(self) -> None:
        self.events: list[SystemEvent] = []
        self.closed = 0
        self.seen_at_close = -1

    async def __call__(self, event: SystemEvent) -> None:
        self.events.append(event)

    async def handle(self, event: SystemEvent) -> None:
        """Bound-method handler."""
        self.events.append(event)

    async def aclose(self) -> None:
        """Record the close and how many events were handled by then."""
        self.closed += 1
        self.seen_at_close = len(self.events)


async def test_close_calls_aclose_once_after_draining() -> None:
    """close() awaits aclose() once per handler object (callable or bound-method owner),
    after its events were delivered."""
    bus = EventBus()
    obj, owner = Closable(), Closable()
    await bus.subscribe(EventType.ANY, obj)
    await bus.subscribe(EventType.CUSTOM, obj)
    await bus.subscribe(EventType.ANY, owner.handle)
    await bus.subscribe(EventType.CUSTOM, owner.handle)
    for _ in range(3):
        await bus.publish(ev())
    await bus.close()
    await bus.close()  # idempotent
    assert obj.closed == 1 and owner.closed == 1
    assert obj.seen_at_close == 6 and owner.seen_at_close == 6


async def test_failing_aclose_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """An aclose() that raises is logged; close() still completes and closes the rest."""
    bus = EventBus()

    class Bad(Closable):
        async def aclose(self) -> None:
            raise RuntimeError("flush failed")

    good = Closable()
    await bus.subscribe(EventType.ANY, Bad())
    await bus.subscribe(EventType.ANY, good)
    await bus.close()
    assert good.closed == 1
    assert any("flush failed" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- cancellation


async def test_worker_cancellation_is_not_swallowed() -> None:
    """Cancelling a handler's worker task cancels it (the CancelledError propagates)."""
    bus = EventBus()
    h = Gated()
    await bus.subscribe(EventType.ANY, h)
    await bus.publish(ev())
    await spin_until(h.entered.is_set)
    task = next(iter(bus._subs.values())).task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_handler_raising_cancelled_error_is_counted_not_fatal() -> None:
    """A handler that itself raises CancelledError (nobody cancelled the worker) is counted
    as a handler error and the worker goes on with the next events."""
    bus = EventBus()
    got: list[int] = []

    async def odd(event: SystemEvent) -> None:
        if event.metadata["i"] == 0:
            raise asyncio.CancelledError
        got.append(event.metadata["i"])

    await bus.subscribe(EventType.ANY, odd, name="odd")
    for i in range(3):
        await bus.publish(ev(metadata={"i": i}))
    await asyncio.wait_for(bus.drain(), 30)
    assert got == [1, 2]
    assert bus.stats().subscriptions[0].errors == 1


async def test_cancelled_blocked_publisher_counts_undelivered() -> None:
    """Cancelling a publisher blocked on a full mailbox propagates CancelledError and
    counts the event's undelivered handlers as dropped."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    await bus.subscribe(EventType.ANY, h, name="slow")
    await bus.publish(ev())
    await spin_until(h.entered.is_set)
    await bus.publish(ev())
    blocked = asyncio.create_task(bus.publish(ev()))
    await spin_until(lambda: bool(next(iter(bus._subs.values())).space_waiters))
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    h.gate.set()
    await bus.drain()
    stats = bus.stats()
    assert len(h.events) == 2
    assert sum(stats.dropped.values()) == 1


async def test_unsubscribe_while_publisher_blocked_on_it() -> None:
    """A publisher blocked on a mailbox whose subscription is being removed still gets its
    event delivered (it was published before the unsubscribe finished)."""
    bus = EventBus(max_queue_size=1)
    h = Gated()
    sub_id = await bus.subscribe(EventType.ANY, h)
    e1, e2, e3 = ev(), ev(), ev()
    await bus.publish(e1)
    await spin_until(h.entered.is_set)
    await bus.publish(e2)
    blocked = asyncio.create_task(bus.publish(e3))
    await spin_until(lambda: bool(next(iter(bus._subs.values())).space_waiters))
    unsub = asyncio.create_task(bus.unsubscribe(sub_id))
    await asyncio.sleep(0)
    h.gate.set()
    assert await asyncio.wait_for(unsub, 30) is True
    assert await asyncio.wait_for(blocked, 30) == 1
    await spin_until(lambda: len(h.events) == 3)
    assert h.events == [e1, e2, e3]


def test_bus_reused_on_a_new_loop_after_the_first_closed() -> None:
    """A bus whose loop has closed binds to the next loop that uses it, with fresh workers."""
    bus = EventBus()
    got: list[SystemEvent] = []

    async def record(event: SystemEvent) -> None:
        got.append(event)

    async def first() -> None:
        await bus.subscribe(EventType.ANY, record)
        await bus.publish(ev())
        await bus.drain()

    async def second() -> None:
        await bus.publish(ev())
        await asyncio.wait_for(bus.drain(), 30)
        await bus.close()

    asyncio.run(first())
    asyncio.run(second())
    assert len(got) == 2
    assert bus.stats().subscriptions[0].delivered == 2
