"""Test doubles for users testing their own handlers (like structlog's ``testing`` module and
OpenTelemetry's ``InMemorySpanExporter``).

* :class:`CapturingHandler`: an async handler that records every event it receives
  (``.events``) and lets a test ``await`` a number of them.
* :func:`capture_events`: subscribe a :class:`CapturingHandler` for the duration of a block.
* :class:`FakeClock`: a manual clock for time-based handlers (aggregation windows, batch
  intervals, alert de-duplication, retry back-off): ``await clock.advance(5)`` moves time
  and runs what became due, without really sleeping.
* :func:`make_event`: a valid :class:`~agentbus.SystemEvent` with overridable fields.

Everything here runs on the event-loop thread and is meant for tests, not production.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from .events import EventType, SystemEvent

if TYPE_CHECKING:
    from .bus import EventBus

__all__ = ["CapturingHandler", "FakeClock", "capture_events", "make_event"]

T = TypeVar("T")


def make_event(
    event_type: Enum = EventType.AGENT_COMPLETED,
    agent_id: str = "test_agent",
    **fields: Any,
) -> SystemEvent:
    """A valid :class:`SystemEvent` for tests; ``fields`` override any other field.

    Raises:
        pydantic.ValidationError: an overriding value is invalid.
    """
    return SystemEvent(event_type=event_type, agent_id=agent_id, **fields)


class CapturingHandler:
    """An async handler that keeps every event it is called with, in call order.

    Args:
        predicate: only events for which it returns true are kept (default: all).

    Attributes:
        events: the captured events (a list; tests may ``clear()`` it).

    Use ``await capture.wait_for(n, timeout=1)`` to wait until ``n`` events are captured
    instead of sleeping. Loop thread only.
    """

    def __init__(self, predicate: Callable[[SystemEvent], bool] | None = None) -> None:
        self.events: list[SystemEvent] = []
        self._predicate = predicate
        self._changed: asyncio.Event | None = None
        self.closed = False

    async def __call__(self, event: SystemEvent) -> None:
        """Record ``event`` (if the predicate accepts it)."""
        if self._predicate is not None and not self._predicate(event):
            return
        self.events.append(event)
        if self._changed is not None:
            self._changed.set()

    @property
    def event_types(self) -> list[Enum]:
        """``event_type`` of each captured event, in order."""
        return [e.event_type for e in self.events]

    def of_type(self, event_type: Enum) -> list[SystemEvent]:
        """The captured events of ``event_type``."""
        return [e for e in self.events if e.event_type is event_type]

    def clear(self) -> None:
        """Forget the captured events."""
        self.events.clear()

    async def wait_for(self, count: int, *, timeout: float | None = 5.0) -> list[SystemEvent]:
        """Wait until at least ``count`` events are captured; return the captured events.

        Raises:
            TimeoutError: fewer than ``count`` after ``timeout`` seconds (real time).
        """

        async def _wait() -> None:
            while len(self.events) < count:
                if self._changed is None:
                    self._changed = asyncio.Event()
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"captured {len(self.events)} events, expected at least {count} "
                f"within {timeout} s"
            ) from None
        return self.events

    async def aclose(self) -> None:
        """Mark the handler closed (``EventBus.close()`` calls this); idempotent."""
        self.closed = True


@asynccontextmanager
async def capture_events(
    bus: EventBus, event_type: Enum = EventType.ANY
) -> AsyncIterator[CapturingHandler]:
    """Subscribe a :class:`CapturingHandler` to ``bus`` for the ``async with`` block.

    On exit the bus is drained (everything published in the block is captured) and the
    handler unsubscribed.
    """
    capture = CapturingHandler()
    sub_id = await bus.subscribe(event_type, capture, name="CapturingHandler")
    try:
        yield capture
    finally:
        if not bus.closed:
            await bus.drain()
            await bus.unsubscribe(sub_id)


class FakeClock:
    """A manual clock implementing the ``middleware`` ``Clock`` protocol.

    ``monotonic()`` returns the fake time (seconds; ``clock()`` is the same, so it also fits
    ``SessionManager(clock=...)``). ``await sleep(s)`` suspends until a test calls
    ``await advance(...)`` past the deadline. ``advance`` wakes sleepers in deadline order,
    setting the time to each deadline in turn and letting the woken tasks run (and sleep
    again) before moving on, so periodic timers fire once per period crossed.

    Args:
        start: the initial time, seconds.
        settle_steps: event-loop iterations given to woken tasks after each wake-up.

    Loop thread only.
    """

    def __init__(self, start: float = 0.0, *, settle_steps: int = 20) -> None:
        self._now = float(start)
        self._settle_steps = settle_steps
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._slept: asyncio.Event | None = None

    def monotonic(self) -> float:
        """The current fake time, seconds."""
        return self._now

    def __call__(self) -> float:
        """Same as :meth:`monotonic`."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Suspend until the fake time reaches ``now + seconds``.

        ``seconds <= 0`` only yields to the event loop once, like ``asyncio.sleep(0)``.
        """
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        if self._slept is not None:
            self._slept.set()
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def settle(self) -> None:
        """Give ready tasks ``settle_steps`` event-loop iterations."""
        for _ in range(self._settle_steps):
            await asyncio.sleep(0)

    async def wait_for_sleepers(self, count: int = 1, *, timeout: float = 5.0) -> None:
        """Wait (real time) until at least ``count`` tasks sleep on this clock.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
        """

        async def _wait() -> None:
            while self.sleepers < count:
                if self._slept is None:
                    self._slept = asyncio.Event()
                self._slept.clear()
                await self._slept.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper that becomes due.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards: seconds={seconds!r}")
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._now = max(self._now, deadline)
            fut.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def run(
        self, awaitable: Awaitable[T], *, step: float = 1.0, max_steps: int = 10_000
    ) -> T:
        """Await ``awaitable`` while advancing fake time by ``step`` seconds at a time.

        The way to drive code that sleeps on this clock (retry back-off, batch intervals)
        to completion without knowing how many sleeps it takes.

        Returns:
            The awaitable's result (its exception is raised).

        Raises:
            TimeoutError: not done after ``max_steps`` steps (it is then cancelled).
        """
        task = asyncio.ensure_future(awaitable)
        steps = 0
        while not task.done():
            if steps >= max_steps:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise TimeoutError(f"not done after {max_steps} steps of {step} s fake time")
            await self.advance(step)
            steps += 1
        return task.result()
