"""Two-phase shutdown of :class:`agentbus.EventBus`: ``begin_close()`` before draining,
``aclose()`` after, both bounded by ``close(timeout=...)``, failures logged and counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentbus import EventBus, EventType, SystemEvent


def ev(i: int) -> SystemEvent:
    """A valid CUSTOM event numbered ``i``."""
    return SystemEvent(event_type=EventType.CUSTOM, agent_id="a", metadata={"i": i})


class BackingOff:
    """A handler that waits in a long "back-off" on its first event until ``begin_close()``
    tells it to stop (what a retrying wrapper does), recording every call in order."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.stop = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, event: SystemEvent) -> None:
        i = event.metadata["i"]
        if i == 0:
            self.waiting.set()
            await self.stop.wait()  # would wait forever without begin_close()
        self.calls.append(f"event {i}")

    async def handle(self, event: SystemEvent) -> None:
        """Bound-method form of the same handler object."""
        await self(event)

    def begin_close(self) -> None:
        """Phase 1: stop backing off."""
        self.calls.append("begin_close")
        self.stop.set()

    async def aclose(self) -> None:
        """Phase 3."""
        self.calls.append("aclose")


async def test_begin_close_is_called_once_before_draining() -> None:
    """begin_close() runs once per handler object, before the queued events are delivered
    (so a handler stuck in back-off stops waiting), and aclose() after them."""
    calls: list[str] = []
    h = BackingOff(calls)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, h)
    await bus.subscribe(EventType.CUSTOM, h.handle)  # same object, bound method
    for i in range(3):
        await bus.publish(ev(i))
    await h.waiting.wait()
    async with asyncio.timeout(30):  # guards against a hang only
        await bus.close(timeout=20)
    assert calls.count("begin_close") == 1
    assert calls.count("aclose") == 1
    assert calls[0] == "begin_close"
    assert calls[-1] == "aclose"
    assert sorted(calls[1:-1]) == sorted(f"event {i}" for i in (0, 1, 2) for _ in range(2))
    stats = bus.stats()
    assert stats.dropped == {}
    assert stats.close_errors == {}
    assert stats.delivered == 6


async def test_failing_begin_close_is_logged_counted_and_close_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A begin_close() that raises, or that is async by mistake, is logged and counted in
    stats().close_errors; close() still drains and calls aclose() on everyone."""
    closed: list[str] = []

    class Bad:
        async def __call__(self, event: SystemEvent) -> None:
            pass

        def begin_close(self) -> None:
            raise RuntimeError("begin_close exploded")

        async def aclose(self) -> None:
            closed.append("bad")

    class AsyncBegin:
        async def __call__(self, event: SystemEvent) -> None:
            pass

        async def begin_close(self) -> None:  # wrong: must be sync
            closed.append("never awaited")

        async def aclose(self) -> None:
            closed.append("async_begin")

    bus = EventBus()
    await bus.subscribe(EventType.ANY, Bad(), name="bad")
    await bus.subscribe(EventType.ANY, AsyncBegin(), name="async_begin")
    await bus.publish(ev(0))
    await bus.close()
    assert closed == ["bad", "async_begin"]
    assert bus.stats().close_errors == {"begin_close": 2}
    assert bus.stats().delivered == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("begin_close exploded" in m and "'bad'" in m for m in messages)
    assert any("must be synchronous" in m and "'async_begin'" in m for m in messages)


async def test_close_timeout_cancels_an_overrunning_aclose() -> None:
    """close(timeout) bounds aclose(): one still running at the deadline is cancelled,
    logged and counted as "aclose_timeout"; a later non-blocking aclose() still runs."""
    record: dict[str, Any] = {"cancelled": False, "finished": False, "quick": 0}

    class SlowClose:
        async def __call__(self, event: SystemEvent) -> None:
            pass

        async def aclose(self) -> None:
            try:
                await asyncio.sleep(10)
                record["finished"] = True
            except asyncio.CancelledError:
                record["cancelled"] = True
                raise

    class QuickClose:
        async def __call__(self, event: SystemEvent) -> None:
            pass

        async def aclose(self) -> None:
            record["quick"] += 1

    bus = EventBus()
    await bus.subscribe(EventType.ANY, SlowClose(), name="slow_close")
    await bus.subscribe(EventType.ANY, QuickClose(), name="quick_close")
    await bus.publish(ev(0))
    await bus.close(timeout=0.5)
    assert record == {"cancelled": True, "finished": False, "quick": 1}
    stats = bus.stats()
    assert stats.close_errors == {"aclose_timeout": 1}
    assert stats.delivered == 2


async def test_failing_aclose_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    """An aclose() that raises (even TimeoutError of its own) is counted as "aclose"."""

    class Bad:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        async def __call__(self, event: SystemEvent) -> None:
            pass

        async def aclose(self) -> None:
            raise self.exc

    bus = EventBus()
    await bus.subscribe(EventType.ANY, Bad(RuntimeError("flush failed")), name="b1")
    await bus.subscribe(EventType.ANY, Bad(TimeoutError("upstream timed out")), name="b2")
    await bus.close(timeout=30)
    assert bus.stats().close_errors == {"aclose": 2}
    assert any("flush failed" in r.getMessage() for r in caplog.records)


async def test_close_timeout_covers_drain_and_aclose_together() -> None:
    """When draining uses up the timeout, aclose() still starts but is cancelled at its
    first suspension; the stuck delivery is dropped as "close_timeout"."""
    stuck = asyncio.Event()
    entered = asyncio.Event()
    record: dict[str, bool] = {"started": False, "cancelled": False}

    class Stuck:
        async def __call__(self, event: SystemEvent) -> None:
            entered.set()
            await stuck.wait()  # never set

        async def aclose(self) -> None:
            record["started"] = True
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                record["cancelled"] = True
                raise

    bus = EventBus()
    await bus.subscribe(EventType.ANY, Stuck(), name="stuck")
    await bus.publish(ev(0))
    await entered.wait()
    await bus.close(timeout=0.2)
    assert record == {"started": True, "cancelled": True}
    stats = bus.stats()
    assert stats.dropped == {"close_timeout": 1}
    assert stats.close_errors == {"aclose_timeout": 1}


async def test_cancelling_close_propagates() -> None:
    """Cancelling close() while an aclose() runs cancels it and is not swallowed."""

    class SlowClose:
        async def __call__(self, event: SystemEvent) -> None:
            pass

        async def aclose(self) -> None:
            await asyncio.sleep(10)

    bus = EventBus()
    await bus.subscribe(EventType.ANY, SlowClose())
    task = asyncio.create_task(bus.close())
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bus.stats().close_errors == {}
