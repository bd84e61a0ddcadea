"""BatchEventHandler: buffer events and process them in batches, by size and by time
(seed 003 "批量处理")."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from agentbus import SystemEvent

from ._base import begin_close_handler, call_off_loop, close_handler, logger
from ._clock import SYSTEM_CLOCK, Clock, sleep_unless

__all__ = ["BatchEventHandler", "BatchHandler", "FailedBatch"]

BatchHandler = Callable[[list[SystemEvent]], Awaitable[Any] | Any]
"""A batch sink: ``(events) -> None``, async (awaited on the loop) or sync (run in a worker
thread, e.g. a blocking ``db.insert_many``)."""

FlushReason = Literal["size", "interval", "close", "manual"]


class FailedBatch:
    """A batch whose processing raised: an entry of ``BatchEventHandler.failed_batches``.

    Attributes:
        events: the events of the batch, in arrival order.
        error: the exception raised by the batch sink.
        reason: what triggered the flush (``"size"``, ``"interval"``, ``"close"``,
            ``"manual"``).
    """

    __slots__ = ("error", "events", "reason")

    def __init__(self, events: list[SystemEvent], error: Exception, reason: FlushReason) -> None:
        self.events = events
        self.error = error
        self.reason = reason

    def __repr__(self) -> str:
        return f"FailedBatch({len(self.events)} events, {self.reason}, {self.error!r})"


class BatchEventHandler:
    """Buffer events and hand them to a batch sink (seed 003 ``BatchEventHandler``).

    A batch is flushed when it reaches ``batch_size`` events, when the oldest buffered event
    has waited ``flush_interval`` seconds since it arrived (the seed declared it but never
    used it; here a timer task honours it), on :meth:`flush`, and on :meth:`aclose` — which
    ``EventBus.close()`` calls, so no event is lost at shutdown. Batches are processed one at
    a time, in order; a size flush only ever hands the sink full batches.

    The sink is ``process_batch`` when given, else the ``_process_batch`` method, which
    subclasses override (as in the seed). An async sink is awaited on the event loop; a sync
    sink runs in a worker thread (``asyncio.to_thread``), so a blocking bulk insert never
    stalls the loop. A sink failure never loses the batch silently: it
    is kept in ``failed_batches`` with the error and logged; a size-triggered failure is
    also re-raised into the caller (the bus counts it). Wrap the sink with
    ``RetryHandler(...).wrap(sink)`` to retry it.

    Args:
        batch_size: events per batch, ``>= 1`` (seed default 100).
        flush_interval: maximum age of a buffered event, seconds, ``> 0`` (seed default 5),
            or ``None`` to flush by size (and close) only.
        process_batch: the batch sink, ``(list[SystemEvent]) -> None``, async or sync
            (:data:`BatchHandler`).
        clock: time source for the interval (``agentbus.testing.FakeClock`` in tests).

    Attributes:
        buffer: events waiting for the next flush (seed attribute).
        batches, flushed: batches processed and events in them; ``flushes_by_reason`` maps
            a reason to a count.

    Raises:
        ValueError: ``batch_size < 1`` or ``flush_interval <= 0``.

    Shutdown: ``begin_close()`` (sync; ``EventBus.close()`` calls it before draining)
    forwards the closing signal to the sink, e.g. a ``RetryHandler(...).wrap(sink)`` stops
    waiting for back-off; ``aclose()`` calls it too, then stops the timer, flushes and closes
    the sink.

    Event-loop thread only (a sync sink runs in a worker thread).
    """

    def __init__(
        self,
        batch_size: int = 100,
        flush_interval: float | None = 5,
        *,
        process_batch: BatchHandler | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if flush_interval is not None and flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds or None, got {flush_interval!r}")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.process_batch = process_batch
        self.clock = clock
        self.buffer: list[SystemEvent] = []
        self.failed_batches: list[FailedBatch] = []
        self.batches = 0
        self.flushed = 0
        self.flushes_by_reason: dict[str, int] = {}
        self.name = type(self).__qualname__
        self._arrivals: deque[float] = deque()  # arrival time of each buffered event
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False

    # ---------------------------------------------------------------- the seed's surface
    async def handle_event(self, event: SystemEvent) -> None:
        """Add ``event`` to the buffer; flush if the batch is full (seed 003).

        Raises:
            RuntimeError: the handler is closed.
            Exception: the sink's error on a size-triggered flush (the batch is kept in
                ``failed_batches``).
        """
        if self._closed:
            raise RuntimeError(f"{self.name} is closed; event {event.event_id} not accepted")
        self._arrivals.append(self.clock.monotonic())
        self.buffer.append(event)
        if len(self.buffer) >= self.batch_size:
            await self._flush("size", raise_errors=True)
        elif self.flush_interval is not None:
            self._ensure_timer()

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`handle_event`."""
        await self.handle_event(event)

    async def _process_batch(self, events: list[SystemEvent]) -> None:
        """The batch sink: ``process_batch`` if given. Subclasses override (seed)."""
        if self.process_batch is None:
            raise NotImplementedError(
                "BatchEventHandler needs process_batch= or an overridden _process_batch"
            )
        await call_off_loop(self.process_batch, events)

    async def flush(self) -> None:
        """Process what is buffered now, whatever its size or age.

        Raises:
            Exception: the sink's error (the batch is kept in ``failed_batches``).
        """
        await self._flush("manual", raise_errors=True)

    # ---------------------------------------------------------------- machinery
    async def _flush(self, reason: FlushReason, *, raise_errors: bool) -> None:
        async with self._lock:
            while self.buffer and (reason != "size" or len(self.buffer) >= self.batch_size):
                batch = self.buffer[: self.batch_size]
                del self.buffer[: len(batch)]
                for _ in range(min(len(batch), len(self._arrivals))):
                    self._arrivals.popleft()
                try:
                    await self._process_batch(batch)
                except Exception as exc:
                    self.failed_batches.append(FailedBatch(batch, exc, reason))
                    logger.error(
                        "%s: batch of %d events failed (%s flush): %s: %s",
                        self.name, len(batch), reason, type(exc).__name__, exc,
                        exc_info=exc,
                    )
                    if raise_errors:
                        raise
                else:
                    self.batches += 1
                    self.flushed += len(batch)
                    self.flushes_by_reason[reason] = self.flushes_by_reason.get(reason, 0) + 1

    def _ensure_timer(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
            self._stop = asyncio.Event()
        self._wake.set()
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(
                self._run_timer(), name=f"agentbus-{self.name}-timer"
            )

    async def _run_timer(self) -> None:
        assert self._wake is not None and self._stop is not None
        assert self.flush_interval is not None
        wake, stop = self._wake, self._stop
        while not stop.is_set():
            if not self.buffer:
                wake.clear()
                waiter = asyncio.ensure_future(wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
                    await asyncio.gather(waiter, stopper, return_exceptions=True)
                continue
            oldest = self._arrivals[0] if self._arrivals else self.clock.monotonic()
            remaining = oldest + self.flush_interval - self.clock.monotonic()
            if remaining > 0:
                await sleep_unless(self.clock, remaining, stop)
                continue
            await self._flush("interval", raise_errors=False)

    @property
    def oldest_arrival(self) -> float | None:
        """Clock time (``clock.monotonic()``) at which the oldest buffered event arrived, or
        ``None`` when the buffer is empty; the interval flush is due at this plus
        ``flush_interval``."""
        return self._arrivals[0] if self.buffer and self._arrivals else None

    def begin_close(self) -> None:
        """First phase of shutdown: forward ``begin_close()`` to the sink (a retrying sink
        stops waiting for back-off). Events are still accepted. Sync, idempotent, never
        raises; loop thread only."""
        if self.process_batch is not None:
            begin_close_handler(self.process_batch)

    async def aclose(self) -> None:
        """:meth:`begin_close`, stop the timer, flush everything buffered, close the sink if
        it has ``aclose``.

        Idempotent. Events whose final flush fails stay in ``failed_batches``.
        """
        if self._closed:
            return
        self._closed = True
        self.begin_close()
        if self._stop is not None:
            self._stop.set()
        if self._timer is not None:
            await asyncio.gather(self._timer, return_exceptions=True)
        await self._flush("close", raise_errors=False)
        if self.process_batch is not None:
            await close_handler(self.process_batch)
