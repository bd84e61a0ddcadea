"""EventAggregator: notice bursts — ``threshold`` similar events within a sliding window
(seed 003 "事件聚合")."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from agentbus import SystemEvent

from ._base import begin_close_handler, call_off_loop, logger
from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["AggregationCallback", "EventAggregator", "KeyFunc"]

KeyFunc = Callable[[SystemEvent], str]
"""Groups events: ``(event) -> key``. Default: ``f"{event.type_name}_{event.agent_id}"``."""

AggregationCallback = Callable[[str, list[SystemEvent]], Awaitable[Any] | Any]
"""Called with ``(key, events)`` when a group reaches the threshold: async (awaited on the
loop) or sync (run in a worker thread, so it may block, e.g. page someone over HTTP)."""


def _default_key(event: SystemEvent) -> str:
    return f"{event.type_name}_{event.agent_id}"


class EventAggregator:
    """Group events by key; when ``threshold`` events of a key arrive within
    ``window_seconds``, report them together (seed 003 ``EventAggregator``).

    Each key keeps the events that arrived in the last ``window_seconds`` (arrival time on
    ``clock``; older ones expire and are counted in ``expired``). When a key holds
    ``threshold`` events, ``on_aggregate(key, events)`` is called (or the
    ``_handle_aggregation`` method, which subclasses override as in the seed) and the key
    starts over — the seed re-reported the same growing list on every further event.

    Memory is bounded for any number of distinct keys (per session, per user): keys are
    kept in order of their last event, and every arrival sweeps the keys whose newest event
    has left the window (amortised O(1): each key is swept at most once per time it became
    active), so an idle key disappears one window after its last event without another
    event of its own. At most ``max_keys`` keys are kept; a new key beyond that evicts the
    least recently active one (counted in ``evictions``, its events in
    ``evicted_events``). A key's window never holds more than ``threshold - 1`` events.

    Args:
        window_seconds: sliding window length, seconds, ``> 0`` (seed default 60).
        threshold: events per key that trigger an aggregation, ``>= 1`` (seed: 10).
        on_aggregate: the callback (:data:`AggregationCallback`, sync or async); default
            logs the aggregation.
        key: grouping function (default ``"<event_type>_<agent_id>"``, as in the seed).
        max_keys: most keys held at once, ``>= 1``.
        clock: time source (``agentbus.testing.FakeClock`` in tests).

    Attributes:
        aggregations: how many times the threshold was reached.
        expired: events that left the window without being part of an aggregation.
        discarded: events still pending at ``aclose()`` (logged, not reported).
        evictions, evicted_events: keys dropped because ``max_keys`` was reached, and the
            events they held.

    Raises:
        ValueError: ``window_seconds <= 0``, ``threshold < 1`` or ``max_keys < 1``.

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
        max_keys: int = 10_000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds!r}")
        if not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be an int >= 1, got {threshold!r}")
        if not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an int >= 1, got {max_keys!r}")
        self.window_seconds = float(window_seconds)
        self.threshold = threshold
        self.on_aggregate = on_aggregate
        self.key = key
        self.max_keys = max_keys
        self.clock = clock
        self.aggregations = 0
        self.expired = 0
        self.discarded = 0
        self.evictions = 0
        self.evicted_events = 0
        self.name = type(self).__qualname__
        # Least recently active key first; each window holds (arrival time, event).
        self._windows: OrderedDict[str, deque[tuple[float, SystemEvent]]] = OrderedDict()
        self._closed = False

    @property
    def events(self) -> dict[str, list[SystemEvent]]:
        """Events currently in each key's window (seed attribute), oldest first.

        Reading it does not expire anything; expiry happens as events arrive and in
        :meth:`expire`.
        """
        return {k: [e for _, e in w] for k, w in self._windows.items() if w}

    @property
    def key_count(self) -> int:
        """How many keys hold a window now (at most ``max_keys``)."""
        return len(self._windows)

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

    def _sweep(self, now: float) -> None:
        """Drop the least recently active keys whose newest event left the window."""
        cutoff = now - self.window_seconds
        windows = self._windows
        while windows:
            key, window = next(iter(windows.items()))
            if window and window[-1][0] > cutoff:
                return
            del windows[key]
            self.expired += len(window)

    async def aggregate(self, event: SystemEvent) -> None:
        """Add ``event`` to its key's window; report the group at the threshold (seed 003).

        Raises:
            RuntimeError: the aggregator is closed.
            Exception: the key function's or the callback's error.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} is closed; event {event.event_id} not accepted")
        key = self.key(event)
        now = self.clock.monotonic()
        self._sweep(now)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                _, oldest = self._windows.popitem(last=False)
                self.evictions += 1
                self.evicted_events += len(oldest)
            window = self._windows[key] = deque()
        else:
            self._windows.move_to_end(key)
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
            await call_off_loop(self.on_aggregate, key, events)
        else:
            logger.info("Aggregated %d events for %s", len(events), key)

    def begin_close(self) -> None:
        """First phase of shutdown: forward ``begin_close()`` to ``on_aggregate`` if it has
        one. Events are still accepted. Sync, never raises; loop thread only."""
        if self.on_aggregate is not None:
            begin_close_handler(self.on_aggregate)

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
