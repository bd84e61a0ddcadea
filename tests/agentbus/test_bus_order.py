"""Publish order across handlers: every handler receives the events it subscribed to in the
one order the bus accepted them, also with concurrent publishers blocked on full mailboxes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum
from typing import Any

import pytest

from agentbus import EventBus, EventType, QueueFullError, SystemEvent


def ev(i: int, p: int = 0, event_type: Enum = EventType.CUSTOM) -> SystemEvent:
    """A valid event numbered ``i`` from publisher ``p``."""
    return SystemEvent(event_type=event_type, agent_id="a", metadata={"i": i, "p": p})


async def spin_until(pred: Callable[[], bool], *, spins: int = 10_000) -> None:
    """Yield to the loop until ``pred()`` holds (bounded by yields, not by time)."""
    for _ in range(spins):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def recorder(into: list[str], yields: int) -> Callable[[SystemEvent], Any]:
    """An async handler that yields ``yields`` times, then records the event id."""

    async def handler(event: SystemEvent) -> None:
        for _ in range(yields):
            await asyncio.sleep(0)
        into.append(event.event_id)

    return handler


def subsequence(seq: list[str], of: list[str]) -> bool:
    """True if ``seq`` is ``of`` with some items left out, order kept."""
    it = iter(of)
    return all(x in it for x in seq)


@pytest.mark.parametrize("cap", [1, 3])
@pytest.mark.parametrize("yields", [(0, 5), (5, 0), (0, 1, 7, 3)])
async def test_all_handlers_see_one_common_order_under_blocked_publishers(
    cap: int, yields: tuple[int, ...]
) -> None:
    """Fast and slow handlers fed by concurrent publishers that block on full mailboxes all
    receive the identical sequence: the accepted order, each publisher's events in its
    own order."""
    bus = EventBus(max_queue_size=cap)
    got: list[list[str]] = [[] for _ in yields]
    for n, into in zip(yields, got, strict=True):
        await bus.subscribe(EventType.ANY, recorder(into, n), name=f"h{n}")
    published: dict[int, list[str]] = {p: [] for p in range(6)}

    async def publisher(p: int) -> None:
        for i in range(15):
            e = ev(i, p)
            published[p].append(e.event_id)
            await bus.publish(e)
            if (i + p) % 4 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(publisher(p) for p in range(6)))
    await bus.drain()
    accepted = [e.event_id for e in bus.history()]
    assert len(accepted) == 90
    for into in got:
        assert into == accepted
    by_id = {e.event_id: e.metadata["p"] for e in bus.history()}
    for p, ids in published.items():
        assert [i for i in accepted if by_id[i] == p] == ids
    assert bus.stats().dropped == {}


async def test_handlers_of_different_types_agree_on_shared_events() -> None:
    """A handler of one type and ANY handlers receive the events they share in the same
    relative order (the accepted order), under blocking backpressure."""
    bus = EventBus(max_queue_size=1)
    any_fast: list[str] = []
    any_slow: list[str] = []
    custom_only: list[str] = []
    await bus.subscribe(EventType.ANY, recorder(any_fast, 0))
    await bus.subscribe(EventType.CUSTOM, recorder(custom_only, 3))
    await bus.subscribe(EventType.ANY, recorder(any_slow, 6))

    async def publisher(p: int) -> None:
        for i in range(12):
            etype = EventType.CUSTOM if (i + p) % 3 else EventType.SESSION_CREATED
            await bus.publish(ev(i, p, etype))

    await asyncio.gather(*(publisher(p) for p in range(4)))
    await bus.drain()
    history = bus.history()
    accepted = [e.event_id for e in history]
    assert any_fast == accepted
    assert any_slow == accepted
    assert custom_only == [e.event_id for e in history if e.event_type is EventType.CUSTOM]


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
async def test_drop_policies_keep_the_common_relative_order(overflow: Any) -> None:
    """Under a drop policy each handler receives a subsequence of the accepted order, and
    handlers that lost different events still agree on the order of what they share."""
    bus = EventBus(max_queue_size=2, overflow=overflow)
    got: list[list[str]] = [[], [], []]
    for n, into in zip((0, 2, 5), got, strict=True):
        await bus.subscribe(EventType.ANY, recorder(into, n), name=f"h{n}")

    async def publisher(p: int) -> None:
        for i in range(20):
            await bus.publish(ev(i, p))
            if i % 3 == p:
                await asyncio.sleep(0)

    await asyncio.gather(*(publisher(p) for p in range(4)))
    await bus.drain()
    accepted = [e.event_id for e in bus.history()]
    stats = bus.stats()
    assert stats.dropped.get("queue_full", 0) > 0
    for into, sub in zip(got, stats.subscriptions, strict=True):
        assert subsequence(into, accepted)
        assert len(into) + sub.dropped == len(accepted)
    for a in got:
        for b in got:
            shared = set(a) & set(b)
            assert [i for i in a if i in shared] == [i for i in b if i in shared]


async def test_freed_slot_is_reserved_for_the_woken_publisher() -> None:
    """While a freed slot is handed to a blocked publisher, a newcomer on the loop thread
    (publish_sync / publish(wait=False)) sees the mailbox as full and cannot overtake it."""
    bus = EventBus(max_queue_size=1)
    gate = asyncio.Event()
    entered = asyncio.Event()
    received: list[int] = []
    outcome: list[str] = []

    async def handler(event: SystemEvent) -> None:
        i = event.metadata["i"]
        if i == 0:
            entered.set()
            await gate.wait()
        if i == 1:  # e2's publisher was just handed the slot e1 freed, but not resumed
            try:
                bus.publish_sync(ev(98))
                outcome.append("queued")
            except QueueFullError:
                outcome.append("full")
            try:  # does not suspend: the woken publisher still has not resumed
                await bus.publish(ev(99), wait=False)
                outcome.append("queued")
            except QueueFullError:
                outcome.append("full")
        received.append(i)

    await bus.subscribe(EventType.ANY, handler)
    await bus.publish(ev(0))
    await entered.wait()
    await bus.publish(ev(1))
    blocked = asyncio.create_task(bus.publish(ev(2)))
    sub = next(iter(bus._subs.values()))
    await spin_until(lambda: bool(sub.space_waiters))
    gate.set()
    assert await blocked == 1
    await bus.drain()
    assert outcome == ["full", "full"]
    assert received == [0, 1, 2]
    assert bus.stats().rejected == {"queue_full": 2}


async def test_cancelled_woken_publisher_passes_its_slot_on() -> None:
    """A publisher cancelled after being handed a slot gives it to the next blocked
    publisher (FIFO); its own delivery is counted as dropped "cancelled"."""
    bus = EventBus(max_queue_size=1)
    gate = asyncio.Event()
    entered = asyncio.Event()
    received: list[int] = []
    tasks: list[asyncio.Task[int]] = []

    async def handler(event: SystemEvent) -> None:
        i = event.metadata["i"]
        if i == 0:
            entered.set()
            await gate.wait()
        if i == 1:
            tasks[0].cancel()  # e2's publisher holds the slot e1 freed
        received.append(i)

    await bus.subscribe(EventType.ANY, handler)
    await bus.publish(ev(0))
    await entered.wait()
    await bus.publish(ev(1))
    sub = next(iter(bus._subs.values()))
    tasks.append(asyncio.create_task(bus.publish(ev(2))))
    await spin_until(lambda: len(sub.space_waiters) == 1)
    tasks.append(asyncio.create_task(bus.publish(ev(3))))
    await spin_until(lambda: len(sub.space_waiters) == 2)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert await tasks[1] == 1
    await bus.drain()
    assert received == [0, 1, 3]
    assert bus.stats().dropped == {"cancelled": 1}
    assert not sub.space_waiters and sub.granted == 0
