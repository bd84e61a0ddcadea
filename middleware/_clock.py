"""Clock machinery for time-based handlers (private).

Every handler that waits or measures time (aggregation window, batch interval, alert
de-duplication window, retry back-off) takes a ``clock`` implementing :class:`Clock`, so tests
pass ``agentbus.testing.FakeClock`` and advance time without really sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "sleep_unless"]


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source plus a matching ``sleep``.

    ``monotonic()`` returns seconds (float) from an arbitrary origin; ``sleep(seconds)``
    suspends the calling task until ``monotonic()`` has advanced by ``seconds``. Both are
    called on the event-loop thread only.
    """

    def monotonic(self) -> float:
        """Current time in seconds, never decreasing."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        """``time.monotonic()``, in seconds."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
"""The default clock of every time-based handler."""


async def sleep_unless(clock: Clock, seconds: float, stop: asyncio.Event) -> bool:
    """Sleep ``seconds`` on ``clock`` unless ``stop`` is set first.

    Returns:
        ``True`` if ``stop`` was set (already, or during the sleep), ``False`` if the full
        time elapsed.

    Cancelling the caller cancels the sleep and re-raises ``CancelledError``.
    """
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            if not task.done():
                task.cancel()
        await asyncio.gather(sleeper, stopper, return_exceptions=True)
    return stop.is_set()
