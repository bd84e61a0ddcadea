"""AsyncEventHandler: process events concurrently, at most ``max_concurrent`` at a time
(seed 003 "异步事件处理")."""

from __future__ import annotations

import asyncio

from agentbus import SystemEvent, as_async_handler, handler_name

from ._base import AnyHandler, begin_close_handler, close_handler, logger, wrapped_name

__all__ = ["AsyncEventHandler"]


class AsyncEventHandler:
    """Concurrency limiter (seed 003 ``AsyncEventHandler(max_concurrent=10)``).

    The bus calls each subscription's handler one event at a time. Subscribed as a handler,
    this one takes a slot (waiting while ``max_concurrent`` events are in flight — that is
    the backpressure), starts the work as a task and returns, so up to ``max_concurrent``
    events are processed at once (seed 003 best practice 2, "处理器应该快速返回", without
    untracked tasks).

    * ``await h(event)`` / ``await h.submit(event)``: take a slot, start the work, return.
    * ``await h.handle_event(event)``: the seed's method — take a slot and wait for the
      work to finish.

    The work is ``handler(event)`` when a handler is given, else ``_process_event(event)``,
    which subclasses override (as in the seed). A failure inside a started task is logged and
    counted in ``errors`` (``last_error`` keeps it); it cannot reach the bus, which already
    moved on.

    Shutdown, two phases: ``begin_close()`` (sync; ``EventBus.close()`` calls it before
    draining) is forwarded to the wrapped handler at once, so a
    :class:`~middleware.RetryHandler` inside stops waiting for back-off while work is still
    running here; submissions are still accepted (the bus is draining). ``aclose()`` (after
    draining) calls ``begin_close()`` if not done yet, waits for every started task, then
    closes the wrapped handler; submissions after that raise ``RuntimeError``.

    Args:
        max_concurrent: slots, ``>= 1`` (seed default 10).
        handler: the wrapped handler (async, or sync: run in a worker thread).

    Attributes:
        active: events being processed now; ``max_active`` the highest value seen.
        completed, errors: finished work items, and those that raised.

    Raises:
        ValueError: ``max_concurrent < 1``.

    Event-loop thread only.
    """

    def __init__(self, max_concurrent: int = 10, handler: AnyHandler | None = None) -> None:
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        self.max_concurrent = max_concurrent
        self.semaphore = asyncio.Semaphore(max_concurrent)
        self.inner = handler
        self._handler = as_async_handler(handler) if handler is not None else None
        self.name = (
            wrapped_name("AsyncEventHandler", handler)
            if handler is not None
            else type(self).__qualname__
        )
        self.__qualname__ = self.name
        self.active = 0
        self.max_active = 0
        self.completed = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = False

    async def _process_event(self, event: SystemEvent) -> None:
        """The work for one event: the wrapped handler. Subclasses override (seed)."""
        if self._handler is None:
            raise NotImplementedError(
                "AsyncEventHandler needs a handler argument or an overridden _process_event"
            )
        await self._handler(event)

    async def _run(self, event: SystemEvent) -> None:
        self.active += 1
        if self.active > self.max_active:
            self.max_active = self.active
        try:
            await self._process_event(event)
            self.completed += 1
        finally:
            self.active -= 1

    async def handle_event(self, event: SystemEvent) -> None:
        """Process ``event`` within the concurrency limit and wait for it (seed 003).

        Raises:
            Exception: whatever the work raised.
        """
        self._check_open()
        async with self.semaphore:
            try:
                await self._run(event)
            except Exception as exc:
                self.errors += 1
                self.last_error = exc
                raise

    async def submit(self, event: SystemEvent) -> None:
        """Wait for a free slot, start processing ``event`` in a task, return.

        Raises:
            RuntimeError: the handler is closed.
        """
        self._check_open()
        await self.semaphore.acquire()
        try:
            task = asyncio.get_running_loop().create_task(
                self._run_released(event), name=f"agentbus-{self.name}"
            )
        except BaseException:
            self.semaphore.release()
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_released(self, event: SystemEvent) -> None:
        try:
            await self._run(event)
        except Exception as exc:
            self.errors += 1
            self.last_error = exc
            logger.error(
                "%s failed on %s event %s: %s: %s",
                self.name, event.type_name, event.event_id, type(exc).__name__, exc,
                exc_info=exc,
            )
        finally:
            self.semaphore.release()

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`submit`: the bus-facing form."""
        await self.submit(event)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")

    @property
    def in_flight(self) -> int:
        """Started tasks not finished yet."""
        return len(self._tasks)

    async def join(self) -> None:
        """Wait until every task started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def begin_close(self) -> None:
        """First phase of shutdown: forward ``begin_close()`` to the wrapped handler (or,
        for a subclass without one, do nothing). Work is still accepted.

        Sync, idempotent, never raises. Loop thread only.
        """
        if self._closing:
            return
        self._closing = True
        if self.inner is not None:
            begin_close_handler(self.inner)

    async def aclose(self) -> None:
        """:meth:`begin_close`, refuse new work, wait for started tasks, close the wrapped
        handler. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.begin_close()
        await self.join()
        if self.inner is not None:
            await close_handler(self.inner)

    def __repr__(self) -> str:
        return (
            f"<{self.name} max_concurrent={self.max_concurrent} active={self.active} "
            f"handler={handler_name(self.inner) if self.inner else None}>"
        )
