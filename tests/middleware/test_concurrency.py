"""AsyncEventHandler: the concurrency limit, measured; errors; close."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from agentbus import EventBus, EventType, SystemEvent
from agentbus.testing import make_event
from middleware import AsyncEventHandler


class Gauge:
    """A handler measuring its own concurrency; blocks until released."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.done: list[str] = []
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    async def reaches(self, n: int) -> None:
        """Wait until ``n`` calls are active at once."""
        while self.active < n:
            self.changed.clear()
            await self.changed.wait()

    async def __call__(self, event: SystemEvent) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.changed.set()
        try:
            await self.release.wait()
            await asyncio.sleep(0)
        finally:
            self.active -= 1
        self.done.append(event.event_id)


async def test_limit_is_never_exceeded_measured_by_the_handler() -> None:
    """With 40 events on the bus, the wrapped handler never sees more than max_concurrent."""
    gauge = Gauge()
    limiter = AsyncEventHandler(max_concurrent=4, handler=gauge)
    bus = EventBus(max_queue_size=100)
    await bus.subscribe(EventType.ANY, limiter)
    events = [make_event() for _ in range(40)]
    for e in events:
        await bus.publish(e)
    await asyncio.wait_for(gauge.reaches(4), 5)
    assert gauge.active == 4 and limiter.in_flight == 4  # the rest wait for a slot
    gauge.release.set()
    await bus.close()
    assert gauge.peak == 4 and limiter.max_active == 4
    assert sorted(gauge.done) == sorted(e.event_id for e in events)
    assert limiter.completed == 40 and limiter.in_flight == 0


async def test_handle_event_bounds_concurrent_callers() -> None:
    """handle_event (the seed's form) bounds concurrency across many callers too."""
    gauge = Gauge()
    limiter = AsyncEventHandler(max_concurrent=3, handler=gauge)
    tasks = [asyncio.ensure_future(limiter.handle_event(make_event())) for _ in range(10)]
    await asyncio.wait_for(gauge.reaches(3), 5)
    gauge.release.set()
    await asyncio.gather(*tasks)
    assert gauge.peak == 3 and len(gauge.done) == 10


async def test_errors_in_started_work_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure inside a started task is counted and logged; the bus sees no error."""

    async def failing(event: SystemEvent) -> None:
        raise RuntimeError("boom")

    limiter = AsyncEventHandler(max_concurrent=2, handler=failing)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, limiter)
    for _ in range(3):
        await bus.publish(make_event())
    await bus.drain()
    await limiter.join()
    assert limiter.errors == 3 and isinstance(limiter.last_error, RuntimeError)
    assert bus.stats().handler_errors == 0
    assert any("boom" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    await bus.close()


async def test_sync_handler_runs_off_the_loop_thread() -> None:
    """A sync handler is run in a worker thread, not on the event loop."""
    threads: list[int] = []
    limiter = AsyncEventHandler(2, lambda e: threads.append(threading.get_ident()))
    await limiter(make_event())
    await limiter.aclose()
    assert threads and threads[0] != threading.get_ident()


async def test_aclose_waits_then_refuses_new_work() -> None:
    """aclose() waits for in-flight work; later submissions raise RuntimeError."""
    gauge = Gauge()
    limiter = AsyncEventHandler(2, gauge)
    await limiter(make_event())
    closing = asyncio.ensure_future(limiter.aclose())
    await asyncio.sleep(0.01)
    assert not closing.done()
    gauge.release.set()
    await closing
    assert len(gauge.done) == 1
    with pytest.raises(RuntimeError, match="closed"):
        await limiter(make_event())


async def test_missing_work_and_bad_limit_are_clear_errors() -> None:
    """No handler and no override raises NotImplementedError; max_concurrent < 1 ValueError."""
    with pytest.raises(NotImplementedError, match="_process_event"):
        await AsyncEventHandler(1).handle_event(make_event())
    with pytest.raises(ValueError, match="max_concurrent"):
        AsyncEventHandler(0)
