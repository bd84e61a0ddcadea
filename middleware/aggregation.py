"""EventAggregator: notice bursts — ``threshold`` similar events within a sliding window
(seed 003 "事件聚合")."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from agentbus import SystemEvent

from ._base import call_maybe_async, logger
from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["AggregationCallback", "EventAggregator", "KeyFunc"]

KeyFunc = Callable[[SystemEvent], str]
"""Groups events: ``(event) -> key``. Default: ``f"{event.type_name}_{event.agent_id}"``."""

AggregationCallback = Callable[[str, list[SystemEvent]], Awaitable[Any] | Any]
"""Called with ``(key, events)`` when a group reaches the threshold; sync or async."""


def _default_key(event: SystemEvent) -> str:
    return f"{event.type_name}_{event.agent_id}"


class EventAggregator:
    """Group events by key; when ``threshold`` events of a key arrive within
    ``window_seconds``, report them together (seed 003 ``EventAggregator``).

    Each key keeps the events that arrived in the last ``window_seconds`` (arrival time on
    ``clock``; older ones expire and are counted in ``expired``). When a key holds
    ``threshold`` events, ``on_aggregate(key, events)`` is awaited (or the
    ``_handle_aggregation`` method, which subclasses override as in the seed) and the key
    starts over — the seed re-reported the same growing list on every further event.

    Args:
        window_seconds: sliding window length, seconds, ``> 0`` (seed default 60).
        threshold: events per key that trigger an aggregation, ``>= 1`` (seed: 10).
        on_aggregate: the callback; default logs the aggregation.
        key: grouping function (default ``"<event_type>_<agent_id>"``, as in the seed).
        clock: time source (``agentbus.testing.FakeClock`` in tests).

    Attributes:
        aggregations: how many times the threshold was reached.
        expired: events that left the window without being part of an aggregation.
        discarded: events still pending at ``aclose()`` (logged, not reported).

    Raises:
        ValueError: ``window_seconds <= 0`` or ``threshold < 1``.

    Event-loop thread only. Errors of the callback propagate to the caller (the bus counts
    them); the key has already started over.
    """

    def __init__(
        self,
        window_seconds: float = 60,
        threshold: int = 10,
        on_aggregate: AggregationCallback | None = None,
        *,
        key: KeyFunc = _default_key,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds!r}")
        if not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be an int >= 1, got {threshold!r}")
        self.window_seconds = float(window_seconds)
        self.threshold = threshold
        self.on_aggregate = on_aggregate
        self.key = key
        self.clock = clock
        self.aggregations = 0
        self.expired = 0
        self.discarded = 0
        self.name = type(self).__qualname__
        self._windows: dict[str, deque[tuple[float, SystemEvent]]] = {}
        self._closed = False

    @property
    def events(self) -> dict[str, list[SystemEvent]]:
        """Events currently in each key's window (seed attribute), oldest first.

        Reading it does not expire anything; expiry happens as events arrive and in
        :meth:`expire`.
        """
        return {k: [e for _, e in w] for k, w in self._windows.items() if w}

    def _expire_window(self, window: deque[tuple[float, SystemEvent]], now: float) -> None:
        cutoff = now - self.window_seconds
        while window and window[0][0] <= cutoff:
            window.popleft()
            self.expired += 1

    def expire(self) -> int:
        """Drop events older than the window from every key; returns how many."""
        before = self.expired
        now = self.clock.monotonic()
        for k in list(self._windows):
            self._expire_window(self._windows[k], now)
            if not self._windows[k]:
                del self._windows[k]
        return self.expired - before

    async def aggregate(self, event: SystemEvent) -> None:
        """Add ``event`` to its key's window; report the group at the threshold (seed 003)."""
        if self._closed:
            raise RuntimeError(f"{self.name} is closed; event {event.event_id} not accepted")
        key = self.key(event)
        now = self.clock.monotonic()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque()
        self._expire_window(window, now)
        window.append((now, event))
        if len(window) >= self.threshold:
            events = [e for _, e in window]
            del self._windows[key]
            self.aggregations += 1
            await self._handle_aggregation(key, events)

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`aggregate`."""
        await self.aggregate(event)

    async def _handle_aggregation(self, key: str, events: list[SystemEvent]) -> None:
        """Report one aggregation: ``on_aggregate(key, events)``, or a log line (seed)."""
        if self.on_aggregate is not None:
            await call_maybe_async(self.on_aggregate, key, events)
        else:
            logger.info("Aggregated %d events for %s", len(events), key)

    async def aclose(self) -> None:
        """Stop accepting events; events below the threshold are counted in ``discarded``
        and logged (they never formed an aggregation). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.expire()
        pending = sum(len(w) for w in self._windows.values())
        if pending:
            self.discarded += pending
            logger.info(
                "%s closed with %d event(s) below the threshold in %d window(s)",
                self.name, pending, len(self._windows),
            )
        self._windows.clear()
