"""Dispatch machinery: one mailbox and one worker task per subscription.

Private. The hot path is ``EventBus.publish`` appending to each matching subscription's
``deque`` and, only when the worker sleeps, waking it; the worker drains its mailbox calling
the handler in publish order. Wake-ups, busy time and lag are accounted per batch, not per
event, so an idle-to-busy transition costs one future and a busy handler costs nothing extra.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .events import SystemEvent

if TYPE_CHECKING:
    from .bus import EventBus

logger = logging.getLogger("agentbus.bus")

Handler = Callable[[SystemEvent], Awaitable[None]]
"""An event handler: ``async (event) -> None``. The extension point of the whole toolkit."""

AnyHandler = Callable[[SystemEvent], Any]
"""What ``subscribe`` accepts: an async handler, or a sync callable (run in a worker thread)."""

LAG_BUCKETS_SECONDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
"""Upper bounds (seconds) of the dispatch-lag histogram: time from waking an idle handler
worker to the worker starting on the batch."""


def is_async_callable(obj: Any) -> bool:
    """True if calling ``obj`` returns an awaitable by declaration (coroutine function,
    ``functools.partial`` of one, or an object whose ``__call__`` is one)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - we want the bound __call__
    return call is not None and inspect.iscoroutinefunction(call)


def as_async_handler(handler: AnyHandler) -> Handler:
    """Adapt ``handler`` to the :data:`Handler` shape.

    Async callables are returned unchanged. A sync callable runs in the default executor
    (``asyncio.to_thread``) so it never blocks the event loop; if it returns an awaitable
    (a lambda returning a coroutine), that is awaited on the loop.

    Raises:
        TypeError: ``handler`` is not callable.
    """
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {type(handler).__name__}")
    if is_async_callable(handler):
        return handler

    async def run_sync(event: SystemEvent) -> None:
        result = await asyncio.to_thread(handler, event)
        if inspect.isawaitable(result):
            await result

    run_sync.__qualname__ = handler_name(handler)
    return run_sync


def handler_name(handler: Any) -> str:
    """A stable, low-cardinality name for ``handler`` (its qualified name): metric label."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    name = getattr(handler, "__qualname__", None)
    if not isinstance(name, str):
        name = type(handler).__qualname__
    return name.replace("<locals>.", "")


class _Starter:
    """Stands in for a sleeping worker's future before the worker task exists."""

    __slots__ = ("sub",)

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    def set_result(self, _: None) -> None:
        sub = self.sub
        sub.task = asyncio.get_running_loop().create_task(
            sub.run(), name=f"agentbus-handler-{sub.name}"
        )


class Subscription:
    """One subscription: handler, bounded mailbox, worker task and counters.

    Counters are plain ints/floats updated on the loop thread; read them with
    ``EventBus.stats()``.
    """

    __slots__ = (
        "bus",
        "busy_seconds",
        "closing",
        "delivered",
        "dropped",
        "errors",
        "event_type",
        "granted",
        "handler",
        "id",
        "in_flight",
        "lag_buckets",
        "lag_count",
        "lag_sum",
        "last_error",
        "mailbox",
        "name",
        "original",
        "space_waiters",
        "task",
        "waiter",
        "wake_at",
    )

    def __init__(
        self,
        bus: EventBus,
        sub_id: str,
        event_type: Enum,
        handler: AnyHandler,
        name: str,
    ) -> None:
        self.bus = bus
        self.id = sub_id
        self.event_type = event_type
        self.original = handler
        self.handler = as_async_handler(handler)
        self.name = name
        self.mailbox: deque[SystemEvent] = deque()
        self.waiter: Any = _Starter(self)
        self.task: asyncio.Task[None] | None = None
        # Publishers blocked on this full mailbox, in arrival order. The first ``granted``
        # of them were handed a freed slot and have not appended yet; they stay here until
        # they do, so a newcomer sees waiters and queues behind them (per-handler order).
        self.space_waiters: deque[asyncio.Future[None]] = deque()
        self.granted = 0
        self.closing = False
        self.in_flight = False
        self.delivered = 0
        self.errors = 0
        self.dropped = 0
        self.busy_seconds = 0.0
        self.wake_at = 0.0
        self.lag_sum = 0.0
        self.lag_count = 0
        self.lag_buckets = [0] * (len(LAG_BUCKETS_SECONDS) + 1)
        self.last_error: BaseException | None = None

    def wake(self) -> None:
        """Wake the worker if it sleeps (or start it). Loop thread only."""
        w = self.waiter
        if w is not None:
            self.waiter = None
            if self.bus.enable_metrics:
                self.wake_at = perf_counter()
            w.set_result(None)

    def release_space(self) -> None:
        """Hand free mailbox slots to blocked publishers, oldest first. Loop thread only.

        A slot handed to a publisher stays reserved for it (``granted``) until it appends,
        so no other publisher can take it in between: every handler receives events in
        the one order the bus accepted them. Waiters already done (granted, cancelled or
        failed by ``close``) are skipped.
        """
        waiters = self.space_waiters
        room = self.bus.max_queue_size - len(self.mailbox) - self.granted
        i = self.granted
        n = len(waiters)
        while room > 0 and i < n:
            fut = waiters[i]
            i += 1
            if not fut.done():
                fut.set_result(None)
                self.granted += 1
                room -= 1

    async def run(self) -> None:
        """Worker loop: drain the mailbox in order, then sleep until woken."""
        mailbox = self.mailbox
        popleft = mailbox.popleft
        handler = self.handler
        bus = self.bus
        metrics = bus.enable_metrics
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        waiters = self.space_waiters
        while True:
            if not mailbox:
                if self.closing:
                    # A publisher that was waiting for room may still append: its wake-up
                    # starts a fresh worker, so that event is delivered, not stranded.
                    self.waiter = _Starter(self)
                    return
                fut: asyncio.Future[None] = loop.create_future()
                self.waiter = fut
                await fut
                continue
            if metrics:
                t0 = perf_counter()
                if self.wake_at:
                    lag = t0 - self.wake_at
                    self.wake_at = 0.0
                    self.lag_sum += lag
                    self.lag_count += 1
                    self.lag_buckets[bisect_left(LAG_BUCKETS_SECONDS, lag)] += 1
            n = 0
            self.in_flight = True
            try:
                while mailbox:
                    event = popleft()
                    if waiters:
                        self.release_space()
                    try:
                        await handler(event)
                    except Exception as exc:
                        self.errors += 1
                        self.last_error = exc
                        bus._handler_failed(self, event, exc)
                    except asyncio.CancelledError as exc:
                        if task is None or task.cancelling():
                            raise  # the worker itself is being cancelled
                        # raised by the handler on its own: a handler error like any other
                        self.errors += 1
                        self.last_error = exc
                        bus._handler_failed(self, event, exc)
                    n += 1
            finally:
                self.in_flight = False
                self.delivered += n
                if metrics:
                    self.busy_seconds += perf_counter() - t0
            bus._batch_done(self)
