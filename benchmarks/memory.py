"""Memory under a slow handler: is what the bus holds bounded by its queue?

One handler that yields to the event loop on every event (``await asyncio.sleep(0)``), so it
is slower than the publisher and its mailbox stays full. The publisher builds a fresh
realistic :class:`~agentbus.SystemEvent` per publish and awaits ``publish`` (policy
``"block"``: it waits for room). Beside it, with the same handler and events:

* ``asyncio.Queue(1000)`` with one consumer task: the bounded floor;
* pyee ``AsyncIOEventEmitter``: ``emit`` schedules one task per handler per event and never
  waits, so every event stays pending until the loop gets to it; run with fewer events
  (``memory_peer_events``) because memory grows with every event.

Measured without ``tracemalloc`` (which would make a million events take minutes):
``sys.getallocatedblocks()`` (live Python objects, precise and independent of the allocator
returning memory to the OS) and the process RSS, sampled 20 times while publishing. The
retained blocks at the end of publishing are compared with those at the 25 % mark: a bounded
bus holds at most ``max_queue_size`` queued events plus ``history_size`` history entries
(10,000 by default), both reached long before the 25 % mark of a large run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agentbus import EventBus, EventType, SystemEvent

from .cases import Counter, realistic_fields

__all__ = ["MemoryResult", "memory_scenarios", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process, bytes (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(slots=True)
class MemoryResult:
    """One run of the slow-handler scenario.

    Attributes:
        key, label: id and table label.
        events: events published.
        seconds: wall time until every event was handled.
        blocks: ``(events_published, live_blocks_above_start)`` samples while publishing.
        rss: ``(events_published, rss_bytes_above_start)`` samples while publishing.
        max_pending: most events waiting for the handler at a sample point.
        bounded: retained blocks at the end ≤ 1.1 × those at the 25 % mark + 20,000.
    """

    key: str
    label: str
    events: int
    seconds: float = 0.0
    blocks: list[tuple[int, int]] = field(default_factory=list)
    rss: list[tuple[int, int]] = field(default_factory=list)
    max_pending: int = 0

    @property
    def peak_rss(self) -> int:
        """Largest RSS growth seen, bytes."""
        return max((r for _, r in self.rss), default=0)

    @property
    def peak_blocks(self) -> int:
        """Largest number of live blocks above the start."""
        return max((b for _, b in self.blocks), default=0)

    def blocks_at(self, fraction: float) -> int:
        """Live blocks above start at the first sample at or after ``fraction`` of events."""
        target = self.events * fraction
        for n, b in self.blocks:
            if n >= target:
                return b
        return self.blocks[-1][1] if self.blocks else 0

    @property
    def growth(self) -> int:
        """Live blocks gained between the 25 % mark and the end of publishing."""
        return self.blocks_at(1.0) - self.blocks_at(0.25)

    @property
    def bounded(self) -> bool:
        """True if retention stopped growing after the 25 % mark (see class docstring)."""
        return self.blocks_at(1.0) <= 1.1 * self.blocks_at(0.25) + 20_000


async def _run(
    result: MemoryResult,
    publish: Callable[[SystemEvent], Awaitable[object] | None],
    pending: Callable[[], int],
    finish: Callable[[], Awaitable[None]],
) -> MemoryResult:
    fields = realistic_fields()
    del fields["event_id"], fields["timestamp"]
    n = result.events
    every = max(1, n // 20)
    gc.collect()
    blocks0 = sys.getallocatedblocks()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        awaitable = publish(SystemEvent(**fields))
        if awaitable is not None:
            await awaitable
        if i % every == 0 or i == n:
            result.blocks.append((i, sys.getallocatedblocks() - blocks0))
            result.rss.append((i, rss_bytes() - rss0))
            result.max_pending = max(result.max_pending, pending())
    await finish()
    result.seconds = time.perf_counter() - t0
    return result


def _slow_handler(counter: Counter) -> Callable[[SystemEvent], Awaitable[None]]:
    async def slow_handler(_event: SystemEvent) -> None:
        await asyncio.sleep(0)
        counter.n += 1

    return slow_handler


async def agentbus_slow(n: int) -> MemoryResult:
    """agentbus: ``await publish`` (policy "block", queue 1000) to a slow handler."""
    counter = Counter()
    bus = EventBus(max_queue_size=1_000)
    await bus.subscribe(EventType.AGENT_COMPLETED, _slow_handler(counter))
    res = MemoryResult("agentbus", "agentbus `EventBus(max_queue_size=1000)`, `await publish`", n)
    await _run(res, bus.publish, lambda: bus.stats().queue_depth, bus.drain)
    await bus.close()
    if counter.n != n:
        raise RuntimeError(f"agentbus slow handler saw {counter.n} of {n}")
    return res


async def queue_slow(n: int) -> MemoryResult:
    """``asyncio.Queue(1000)``, ``await put``, one consumer task running the slow handler."""
    counter = Counter()
    handler = _slow_handler(counter)
    queue: asyncio.Queue[SystemEvent | None] = asyncio.Queue(1_000)

    async def consumer() -> None:
        while (ev := await queue.get()) is not None:
            await handler(ev)

    task = asyncio.get_running_loop().create_task(consumer())

    async def finish() -> None:
        await queue.put(None)
        await task

    res = MemoryResult("queue", "`asyncio.Queue(1000)` + 1 consumer task (floor)", n)
    await _run(res, queue.put, queue.qsize, finish)
    if counter.n != n:
        raise RuntimeError(f"queue slow handler saw {counter.n} of {n}")
    return res


async def pyee_slow(n: int) -> MemoryResult:
    """pyee ``AsyncIOEventEmitter.emit`` (never waits; one task per event) to the handler."""
    from pyee.asyncio import AsyncIOEventEmitter

    counter = Counter()
    ee = AsyncIOEventEmitter()
    ee.on("agent_completed", _slow_handler(counter))

    def publish(ev: SystemEvent) -> None:
        ee.emit("agent_completed", ev)

    res = MemoryResult("pyee-async", "pyee `AsyncIOEventEmitter.emit`", n)
    await _run(res, publish, lambda: len(ee._waiting), ee.wait_for_complete)
    if counter.n != n:
        raise RuntimeError(f"pyee slow handler saw {counter.n} of {n}")
    return res


async def memory_scenarios(events: int, peer_events: int) -> list[MemoryResult]:
    """Run the three scenarios, agentbus first (cleanest heap), pyee last (largest)."""
    return [await agentbus_slow(events), await queue_slow(events), await pyee_slow(peer_events)]
