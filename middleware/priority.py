"""PriorityEventBus: an ``EventBus`` that delivers urgent events first (seed 003 "事件优先级")."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from enum import Enum

from agentbus import BusClosedError, EventBus, SystemEvent

from ._base import logger

__all__ = ["Priority", "PriorityEventBus"]


class Priority(Enum):
    """Event priority, verbatim from seed 003: lower value = delivered first."""

    HIGH = 1
    MEDIUM = 2
    LOW = 3


class PriorityEventBus(EventBus):
    """An :class:`agentbus.EventBus` whose ``publish`` takes a :class:`Priority`
    (seed 003 ``PriorityEventBus``).

    ``publish(event, priority)`` puts the event in a heap keyed by ``(priority, sequence)``:
    ``HIGH`` before ``MEDIUM`` before ``LOW``, first-in first-out within a priority (the seed
    pushed ``(priority, event)`` tuples, which compare events on a tie and raise). Events
    leave the heap through the base bus's ``publish``, so subscriptions, backpressure and
    statistics are the base bus's.

    Two modes:

    * manual (default, as in the seed): events wait in the heap until
      ``await bus.dispatch_events()`` publishes all of them in priority order.
    * automatic (``auto_dispatch=True``): a background task drains the heap whenever it
      is not empty. Ordering then applies among the events waiting at the same time — which
      is whenever the dispatcher is held up, e.g. by backpressure from a full handler
      mailbox (use this mode when an ``AgentExecutor`` publishes to the bus).

    ``close()`` publishes everything still in the heap before closing the base bus, so
    nothing accepted is lost; ``drain()`` in automatic mode waits for the heap too.

    Args:
        max_queue_size, enable_metrics: as for :class:`~agentbus.EventBus`.
        auto_dispatch: start the background dispatcher.
        **kwargs: the base bus's keyword arguments (``overflow``, ``max_event_bytes``, ...).

    Event-loop thread only, except :meth:`publish_sync` (as in the base bus).
    """

    def __init__(
        self,
        max_queue_size: int = 1000,
        enable_metrics: bool = True,
        *,
        auto_dispatch: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(max_queue_size, enable_metrics, **kwargs)  # type: ignore[arg-type]
        self.priority_queue: list[tuple[int, int, SystemEvent]] = []
        self.auto_dispatch = auto_dispatch
        self._seq = itertools.count()
        self._dispatch_lock: asyncio.Lock | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._pending: asyncio.Event | None = None
        self._priority_closed = False

    # ------------------------------------------------------------------ enqueueing
    def _enqueue(self, event: SystemEvent, priority: Priority) -> int:
        if not isinstance(priority, Priority):
            raise TypeError(f"priority must be a Priority member, got {priority!r}")
        if self._priority_closed:
            raise BusClosedError("cannot publish: the PriorityEventBus is closed")
        self._check(event)
        heapq.heappush(self.priority_queue, (priority.value, next(self._seq), event))
        if self.auto_dispatch:
            self._ensure_dispatcher()
        return len(self.priority_queue)

    async def publish(
        self, event: SystemEvent, priority: Priority = Priority.MEDIUM, *, wait: bool = True
    ) -> int:
        """Queue ``event`` with ``priority`` (seed 003). Never waits.

        ``wait`` is accepted for compatibility with :meth:`EventBus.publish` and ignored:
        backpressure applies when the event is dispatched.

        Returns:
            How many events wait in the priority queue, this one included.

        Raises:
            TypeError: ``event`` is not a ``SystemEvent`` or ``priority`` not a
                :class:`Priority`.
            BusClosedError: the bus is closing or closed.
            EventTooLargeError: ``max_event_bytes`` is set and exceeded.
        """
        if self._loop is None:
            self._bind()
        return self._enqueue(event, priority)

    def publish_sync(
        self,
        event: SystemEvent,
        priority: Priority = Priority.MEDIUM,
        *,
        timeout: float | None = None,
    ) -> int:
        """Queue ``event`` from sync code on the loop thread or from another thread.

        Returns:
            How many events wait in the priority queue, this one included.

        Raises:
            RuntimeError: no running event loop is bound to the bus.
            TimeoutError: from another thread, not queued within ``timeout`` seconds.
            plus the errors of :meth:`publish`.
        """
        loop = self._loop
        if loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "publish_sync needs the bus's event loop: use the bus from a coroutine "
                    "first, then call publish_sync from that loop or another thread"
                ) from None
            loop = self._bind()
        if threading.get_ident() == self._loop_thread:
            return self._enqueue(event, priority)
        future = asyncio.run_coroutine_threadsafe(self.publish(event, priority), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    # ------------------------------------------------------------------ dispatching
    @property
    def pending(self) -> int:
        """Events waiting in the priority queue."""
        return len(self.priority_queue)

    async def dispatch_events(self) -> int:
        """Publish every queued event through the base bus, highest priority first (seed).

        Events queued while this runs are included, in their priority order. Concurrent
        calls are serialised.

        Returns:
            How many events were published.
        """
        if self._dispatch_lock is None:
            self._dispatch_lock = asyncio.Lock()
        n = 0
        async with self._dispatch_lock:
            while self.priority_queue:
                _, _, event = heapq.heappop(self.priority_queue)
                await EventBus.publish(self, event)
                n += 1
        return n

    def _ensure_dispatcher(self) -> None:
        if self._pending is None:
            self._pending = asyncio.Event()
        self._pending.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._run_dispatcher(), name="agentbus-priority-dispatcher"
            )

    async def _run_dispatcher(self) -> None:
        assert self._pending is not None
        pending = self._pending
        while True:
            await pending.wait()
            pending.clear()
            try:
                await self.dispatch_events()
            except BusClosedError:
                return
            except Exception as exc:  # never let the dispatcher die silently
                logger.error("PriorityEventBus dispatcher failed: %s", exc, exc_info=exc)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every event published so far is handled; in automatic mode this
        includes the priority queue (manual mode: call :meth:`dispatch_events` first).

        Raises:
            TimeoutError: not drained within ``timeout`` seconds.
        """

        async def _drain() -> None:
            if self.auto_dispatch:
                await self.dispatch_events()
            await EventBus.drain(self)

        await asyncio.wait_for(_drain(), timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Reject new events, publish what the priority queue holds, stop the dispatcher,
        then close the base bus (deliver, ``aclose()`` handlers). Idempotent."""
        if not self._priority_closed and not self.closed:
            self._priority_closed = True
            self._bind()
            await self.dispatch_events()
            if self._dispatcher is not None:
                self._dispatcher.cancel()
                await asyncio.gather(self._dispatcher, return_exceptions=True)
        await super().close(timeout)
