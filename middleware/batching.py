"""BatchEventHandler: buffer events and process them in batches, by size and by time
(seed 003 "批量处理")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from agentbus import SystemEvent

from ._base import close_handler, logger
from ._clock import SYSTEM_CLOCK, Clock, sleep_unless

__all__ = ["BatchEventHandler", "BatchHandler", "FailedBatch"]

BatchHandler = Callable[[list[SystemEvent]], Awaitable[Any]]
"""A batch sink: ``async (events) -> None``, e.g. a bulk database insert."""

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

    A batch is flushed when it reaches ``batch_size`` events, when its oldest event has
    waited ``flush_interval`` seconds (the seed declared it but never used it; here a timer
    task honours it), on :meth:`flush`, and on :meth:`aclose` — which ``EventBus.close()``
    calls, so no event is lost at shutdown. Batches are processed one at a time, in order.

    The sink is ``process_batch`` when given, else the ``_process_batch`` method, which
    subclasses override (as in the seed). A sink failure never loses the batch silently: it
    is kept in ``failed_batches`` with the error and logged; a size-triggered failure is
    also re-raised into the caller (the bus counts it). Wrap the sink with
    ``RetryHandler(...).wrap(sink)`` to retry it.

    Args:
        batch_size: events per batch, ``>= 1`` (seed default 100).
        flush_interval: maximum age of a buffered event, seconds, ``> 0`` (seed default 5),
            or ``None`` to flush by size (and close) only.
        process_batch: the batch sink, ``async (list[SystemEvent]) -> None``.
        clock: time source for the interval (``agentbus.testing.FakeClock`` in tests).

    Attributes:
        buffer: events waiting for the next flush (seed attribute).
        batches, flushed: batches processed and events in them; ``flushes_by_reason`` maps
            a reason to a count.

    Raises:
        ValueError: ``batch_size < 1`` or ``flush_interval <= 0``.

    Event-loop thread only.
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
        self._first_at = 0.0
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
        if not self.buffer:
            self._first_at = self.clock.monotonic()
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
        await self.process_batch(events)

    async def flush(self) -> None:
        """Process what is buffered now, whatever its size or age.

        Raises:
            Exception: the sink's error (the batch is kept in ``failed_batches``).
        """
        await self._flush("manual", raise_errors=True)

    # ---------------------------------------------------------------- machinery
    async def _flush(self, reason: FlushReason, *, raise_errors: bool) -> None:
        async with self._lock:
            while self.buffer:
                batch = self.buffer[: self.batch_size]
                del self.buffer[: len(batch)]
                if self.buffer:
                    self._first_at = self.clock.monotonic()
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
                if reason == "size" and len(self.buffer) < self.batch_size:
                    break

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
            remaining = self._first_at + self.flush_interval - self.clock.monotonic()
            if remaining > 0:
                await sleep_unless(self.clock, remaining, stop)
                continue
            await self._flush("interval", raise_errors=False)

    async def aclose(self) -> None:
        """Stop the timer, flush everything buffered, close the sink if it has ``aclose``.

        Idempotent. Events whose final flush fails stay in ``failed_batches``.
        """
        if self._closed:
            return
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._timer is not None:
            await asyncio.gather(self._timer, return_exceptions=True)
        await self._flush("close", raise_errors=False)
        if self.process_batch is not None:
            await close_handler(self.process_batch)
