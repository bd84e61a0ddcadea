"""The in-memory :class:`EventBus` (seed 003 "EventBus 基础", seed 004 ``wait_for_event`` and
size guard, seed 001 causation chain and replay).

Delivery model:
    Each subscription owns a bounded FIFO mailbox (``max_queue_size`` events) and one worker
    task. ``publish`` appends the event to every matching mailbox and returns; workers call
    handlers concurrently with each other. A handler that raises is logged and counted and
    does not affect the publisher or other handlers. A slow handler only delays itself until
    its mailbox is full; then the overflow policy applies:

    * ``"block"`` (default): the publisher awaits room (backpressure), queueing behind the
      publishers already waiting (FIFO; a mailbox with waiting publishers is full for
      newcomers, and a freed slot is reserved for the publisher it was handed to);
    * ``"drop_newest"``: the new event is not given to that handler, counted as dropped;
    * ``"drop_oldest"``: the oldest queued event of that handler is discarded, counted.

    Order: the bus accepts events in one sequence (the order ``publish`` calls start; see
    ``history()``). Every handler receives the events it gets in that order, so handlers
    subscribed to the same events see them in the identical order, also with concurrent
    publishers blocked on full mailboxes; each publisher's own events keep its order. Under
    a drop policy each handler receives a subsequence of it.

    ``close()`` rejects new publishes with :class:`BusClosedError`, calls ``begin_close()``
    on handlers that have one (retries stop waiting for back-off), delivers everything
    already accepted, then awaits ``aclose()`` on handlers that have one (batchers flush);
    ``close(timeout=...)`` bounds the whole shutdown.

Threading: a bus is bound to the event loop it is first used on. Every method except
``publish_sync`` and ``stats`` must be called on that loop. ``publish_sync`` works from sync
code on the loop thread (never waits) and from any other thread (waits for room).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from types import TracebackType
from typing import Any, Literal, Self

from ._dispatch import (
    LAG_BUCKETS_SECONDS,
    AnyHandler,
    Handler,
    Subscription,
    _Starter,
    handler_name,
)
from .errors import BusClosedError, EventTooLargeError, QueueFullError, WrongLoopError
from .events import EventType, SystemEvent

__all__ = [
    "LAG_BUCKETS_SECONDS",
    "BusStats",
    "EventBus",
    "Handler",
    "OverflowPolicy",
    "SubscriptionStats",
]

logger = logging.getLogger("agentbus.bus")

_get_running_loop = asyncio.get_running_loop
_get_ident = threading.get_ident

OverflowPolicy = Literal["block", "drop_newest", "drop_oldest"]
"""What ``publish`` does when a handler's mailbox is full. See the module docstring."""

_POLICIES: frozenset[str] = frozenset({"block", "drop_newest", "drop_oldest"})


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    """Counters of one subscription, as read by ``EventBus.stats()``.

    ``busy_seconds`` is the wall time the worker spent in the handler (summed per batch);
    ``busy_seconds / delivered`` is the mean handler latency. ``lag_*`` describe the
    dispatch lag (seconds from waking an idle worker to it starting), cumulative buckets
    with upper bounds :data:`LAG_BUCKETS_SECONDS` plus ``+Inf``.
    """

    id: str
    name: str
    event_type: str
    delivered: int
    errors: int
    dropped: int
    queue_depth: int
    busy_seconds: float
    lag_sum: float
    lag_count: int
    lag_buckets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot of the bus's own health (all counters cumulative since creation).

    ``dropped`` maps a reason (``"queue_full"``, ``"close_timeout"``, ``"cancelled"``: a
    publisher cancelled while waiting for room) to the number of (event, handler)
    deliveries lost; ``rejected`` maps a reason (``"closed"``,
    ``"too_large"``, ``"queue_full"``) to publishes refused with an error.
    ``close_errors`` maps a reason to the handler shutdown calls of ``close()`` that
    failed (each also logged, never raised): ``"begin_close"`` (raised, or was async),
    ``"aclose"`` (raised), ``"aclose_timeout"`` (overran ``close(timeout=...)`` and was
    cancelled).
    """

    published: int
    capacity: int
    closed: bool
    dropped: dict[str, int]
    rejected: dict[str, int]
    subscriptions: tuple[SubscriptionStats, ...] = field(default_factory=tuple)
    close_errors: dict[str, int] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        """Total (event, handler) deliveries completed."""
        return sum(s.delivered for s in self.subscriptions)

    @property
    def handler_errors(self) -> int:
        """Total handler calls that raised."""
        return sum(s.errors for s in self.subscriptions)

    @property
    def queue_depth(self) -> int:
        """Events waiting in all mailboxes."""
        return sum(s.queue_depth for s in self.subscriptions)


class EventBus:
    """In-memory publish/subscribe bus with bounded per-handler queues.

    Args:
        max_queue_size: capacity of each handler's mailbox, in events (seed 003); ``>= 1``.
        enable_metrics: keep busy-time and dispatch-lag accounting (seed 003). Counters of
            published/delivered/dropped/errors are always kept: they cost an integer add.
        overflow: :data:`OverflowPolicy` applied when a mailbox is full; default ``"block"``.
        max_event_bytes: reject events whose JSON form is larger (seed 004's message-size
            guard) with :class:`EventTooLargeError`; ``None`` (default) skips the check,
            which otherwise costs one serialisation per publish.
        history_size: how many recent events to keep for ``get_causation_chain`` and
            ``history`` (seed 001); ``0`` keeps none.

    Raises:
        ValueError: a bad argument, naming it.
    """

    def __init__(
        self,
        max_queue_size: int = 1000,
        enable_metrics: bool = True,
        *,
        overflow: OverflowPolicy = "block",
        max_event_bytes: int | None = None,
        history_size: int = 10_000,
    ) -> None:
        if not isinstance(max_queue_size, int) or max_queue_size < 1:
            raise ValueError(f"max_queue_size must be an int >= 1, got {max_queue_size!r}")
        if overflow not in _POLICIES:
            raise ValueError(f"overflow must be one of {sorted(_POLICIES)}, got {overflow!r}")
        if max_event_bytes is not None and max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be >= 1 or None, got {max_event_bytes!r}")
        if history_size < 0:
            raise ValueError(f"history_size must be >= 0, got {history_size!r}")
        self.max_queue_size = max_queue_size
        self.enable_metrics = enable_metrics
        self.overflow: OverflowPolicy = overflow
        self.max_event_bytes = max_event_bytes
        self.history_size = history_size

        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._subs: dict[str, Subscription] = {}
        self._routes: dict[Enum, tuple[Subscription, ...]] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._published = 0
        self._dropped: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self._waiters: list[tuple[Enum, Callable[[SystemEvent], bool] | None,
                                  asyncio.Future[SystemEvent]]] = []
        # History (seed 001): a bounded deque of events, appended on the hot path (one
        # C call); the id index for lookups is built lazily by _index() when queried.
        self._history: deque[SystemEvent] = deque(maxlen=history_size or 1)
        self._index_map: dict[str, tuple[int, SystemEvent]] = {}
        self._indexed = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        # Publishers suspended in _wait_for_room; close() lets them finish queueing first.
        self._blocked = 0
        self._unblocked: asyncio.Future[None] | None = None
        # close(timeout) gave up delivering: a publisher handed a slot just before then
        # gets BusClosedError instead of queueing to a retired handler (counted as dropped).
        self._gave_up = False
        self._close_errors: dict[str, int] = {}

    # ------------------------------------------------------------------ loop binding
    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            if self._loop is not None:
                self._forget_loop()
            self._loop = loop
            self._loop_thread = threading.get_ident()
        elif loop is not self._loop:
            raise WrongLoopError(
                "this EventBus is bound to another event loop; create one bus per loop"
            )
        return loop

    def _forget_loop(self) -> None:
        """The bound loop is closed: drop its tasks and futures so the next loop starts
        fresh workers (queued events are kept and delivered there)."""
        for sub in self._subs.values():
            sub.task = None
            sub.waiter = _Starter(sub)
            sub.in_flight = False
            sub.space_waiters.clear()
            sub.granted = 0
        self._waiters.clear()
        self._idle_waiters = []
        self._blocked = 0
        self._unblocked = None

    # ------------------------------------------------------------------ subscriptions
    async def subscribe(
        self,
        event_type: Enum,
        handler: AnyHandler,
        *,
        name: str | None = None,
    ) -> str:
        """Subscribe ``handler`` to ``event_type`` (or ``EventType.ANY`` for all events).

        Args:
            event_type: an :class:`EventType` member, ``EventType.ANY``, or a member of a
                user ``Enum``.
            handler: ``async (event) -> None``; a sync callable is run in a worker thread.
            name: label for metrics and logs; defaults to the handler's qualified name.

        Returns:
            The subscription id, for :meth:`unsubscribe`.

        Raises:
            TypeError: ``event_type`` is not an ``Enum`` member or ``handler`` not callable.
            BusClosedError: the bus is closing or closed.
        """
        self._bind()
        return self.subscribe_nowait(event_type, handler, name=name)

    def subscribe_nowait(
        self,
        event_type: Enum,
        handler: AnyHandler,
        *,
        name: str | None = None,
    ) -> str:
        """Synchronous form of :meth:`subscribe`, for set-up code outside a coroutine.

        The handler's worker starts on the first event delivered to it. Same arguments,
        return value and errors as :meth:`subscribe`.
        """
        if self._closed:
            raise BusClosedError("cannot subscribe: the EventBus is closed")
        if not isinstance(event_type, Enum):
            raise TypeError(
                f"event_type must be an Enum member (EventType or custom), "
                f"got {type(event_type).__name__}"
            )
        sub_id = f"sub-{next(self._ids)}"
        sub = Subscription(self, sub_id, event_type, handler, name or handler_name(handler))
        self._subs[sub_id] = sub
        self._routes.clear()
        return sub_id

    def on(self, event_type: Enum, *, name: str | None = None) -> Callable[[Any], Any]:
        """Decorator form: ``@bus.on(EventType.AGENT_STARTED)`` subscribes the function.

        Returns the function unchanged, so it can still be called directly.
        """

        def decorator(handler: Any) -> Any:
            self.subscribe_nowait(event_type, handler, name=name)
            return handler

        return decorator

    async def unsubscribe(self, subscription_id: str) -> bool:
        """Remove one subscription. Events already queued for it are still delivered.

        Returns:
            ``True`` if it existed.
        """
        sub = self._subs.pop(subscription_id, None)
        if sub is None:
            return False
        self._routes.clear()
        await self._retire([sub])
        return True

    async def unsubscribe_handler(self, handler: AnyHandler) -> int:
        """Remove every subscription of ``handler`` (compared with ``==``, so a bound
        method matches a fresh bound method of the same object).

        Returns:
            How many subscriptions were removed.
        """
        subs = [s for s in self._subs.values() if s.original == handler]
        for s in subs:
            del self._subs[s.id]
        if subs:
            self._routes.clear()
            await self._retire(subs)
        return len(subs)

    async def _retire(self, subs: Iterable[Subscription]) -> None:
        tasks = []
        for sub in subs:
            sub.closing = True
            if sub.task is not None:
                sub.wake()
                tasks.append(sub.task)
            elif sub.mailbox:
                sub.wake()  # starts the worker, which drains then exits
                if sub.task is not None:
                    tasks.append(sub.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def subscription_count(self) -> int:
        """Number of live subscriptions."""
        return len(self._subs)

    def _route(self, event_type: Enum) -> tuple[Subscription, ...]:
        # Cached per event type (also when empty) until the subscriptions change.
        subs = tuple(
            s
            for s in self._subs.values()
            if s.event_type is event_type or s.event_type is EventType.ANY
        )
        self._routes[event_type] = subs
        return subs

    # ------------------------------------------------------------------ publishing
    def _check(self, event: Any) -> None:
        if self._closed:
            self._reject("closed")
            raise BusClosedError("cannot publish: the EventBus is closed")
        if not isinstance(event, SystemEvent):
            raise TypeError(f"publish expects a SystemEvent, got {type(event).__name__}")
        if self.max_event_bytes is not None:
            size = len(event.model_dump_json().encode())
            if size > self.max_event_bytes:
                self._reject("too_large")
                raise EventTooLargeError(
                    f"event {event.event_id} ({event.type_name}) is {size} bytes as JSON, "
                    f"over max_event_bytes={self.max_event_bytes}"
                )

    def _reject(self, reason: str) -> None:
        self._rejected[reason] = self._rejected.get(reason, 0) + 1

    def _drop(self, sub: Subscription, reason: str, n: int = 1) -> None:
        sub.dropped += n
        self._dropped[reason] = self._dropped.get(reason, 0) + n

    async def publish(self, event: SystemEvent, *, wait: bool = True) -> int:
        """Publish ``event`` to every matching subscription (seed 003 ``publish``).

        Returns once the event is queued for every handler, not when handlers finish. Under
        the ``"block"`` policy it waits for room in full mailboxes (backpressure).

        Args:
            event: the event; not copied, so handlers must not mutate it.
            wait: with ``False``, never wait: a full mailbox under ``"block"`` raises
                :class:`QueueFullError` instead, and the event is queued to no handler.

        Returns:
            How many subscriptions the event was queued for (drops excluded).

        Raises:
            TypeError: ``event`` is not a :class:`SystemEvent`.
            BusClosedError: the bus is closing or closed.
            EventTooLargeError: ``max_event_bytes`` is set and exceeded.
            WrongLoopError: called from another event loop.
            asyncio.CancelledError: cancelled while waiting for room; the deliveries not
                made are counted as dropped with reason ``"cancelled"``.
        """
        if self._loop is not _get_running_loop():
            self._bind()
        if not wait:
            # On the loop thread (just bound above): publish_sync's non-waiting path (called
            # non-virtually: a subclass's publish_sync override must not be re-entered).
            return EventBus.publish_sync(self, event)
        # Hot path (issue 6): the checks are inlined, the full _check runs only when one of
        # its conditions can fail; then count, record in the history, notify wait_for.
        if self._closed or self.max_event_bytes is not None or type(event) is not SystemEvent:
            self._check(event)
        self._published += 1
        if self.history_size:
            self._history.append(event)
        if self._waiters:
            self._notify_waiters(event)
        subs = self._routes.get(event.event_type)
        if subs is None:
            subs = self._route(event.event_type)
        cap = self.max_queue_size
        queued = len(subs)
        for sub in subs:
            mailbox = sub.mailbox
            # A mailbox with blocked publishers is full for newcomers: they queue behind
            # (FIFO), so every handler gets events in the one order the bus accepted them.
            if len(mailbox) >= cap or sub.space_waiters:
                policy = self.overflow
                if policy == "block":
                    try:
                        await self._wait_for_room(sub)
                    except BaseException as exc:
                        # Not queued to this handler nor the ones after it: count them.
                        reason = "close_timeout" if isinstance(exc, BusClosedError) else (
                            "cancelled")
                        for lost in subs[subs.index(sub):]:
                            self._drop(lost, reason)
                        raise
                elif policy == "drop_newest":
                    self._drop(sub, "queue_full")
                    queued -= 1
                    continue
                else:
                    mailbox.popleft()
                    self._drop(sub, "queue_full")
            mailbox.append(event)
            if sub.waiter is not None:
                sub.wake()
        return queued

    async def _wait_for_room(self, sub: Subscription) -> None:
        """Queue behind the publishers already blocked on ``sub`` and wait until a slot is
        handed to us (FIFO, see ``Subscription.release_space``). On return the slot is
        ours: the caller appends without yielding."""
        loop = self._bind()
        self._blocked += 1
        waiters = sub.space_waiters
        fut: asyncio.Future[None] = loop.create_future()
        waiters.append(fut)
        try:
            sub.release_space()  # a slot may be free already (granted ones not appended)
            if sub.waiter is not None:
                sub.wake()
            await fut
        except BaseException:
            granted = fut.done() and not fut.cancelled() and fut.exception() is None
            if fut in waiters:
                waiters.remove(fut)
                if granted:
                    sub.granted -= 1
                    sub.release_space()  # pass our slot on
            raise
        else:
            if waiters and waiters[0] is fut:
                waiters.popleft()
            else:
                waiters.remove(fut)
            sub.granted -= 1
            if self._gave_up:
                raise BusClosedError("the EventBus closed (timeout) before this event was queued")
        finally:
            self._blocked -= 1
            unblocked = self._unblocked
            if not self._blocked and unblocked is not None and not unblocked.done():
                unblocked.set_result(None)

    def publish_sync(self, event: SystemEvent, *, timeout: float | None = None) -> int:
        """Publish from synchronous code (seed 003 ``publish_sync``).

        * On the bus's event-loop thread (sync code called from a coroutine or callback):
          queues without waiting; if a mailbox is full under ``"block"``, raises
          :class:`QueueFullError` rather than deadlock the loop.
        * From any other thread: hands the event to the loop and blocks the calling thread
          until it is queued (backpressure applies), at most ``timeout`` seconds.

        Returns:
            How many subscriptions the event was queued for.

        Raises:
            RuntimeError: no event loop is bound to the bus (nothing awaited it yet) or the
                loop is not running.
            TimeoutError: from another thread, not queued within ``timeout`` seconds.
            plus the errors of :meth:`publish`.
        """
        if _get_ident() != self._loop_thread:  # None (no loop bound yet) never matches
            return self._publish_off_loop(event, timeout)
        # On the loop thread: queue without waiting. Inline here, not in a helper, to save
        # a call on the hot path (issue 6); publish(wait=False) comes here too.
        if self._closed or self.max_event_bytes is not None or type(event) is not SystemEvent:
            self._check(event)
        subs = self._routes.get(event.event_type)
        if subs is None:
            subs = self._route(event.event_type)
        cap = self.max_queue_size
        queued = len(subs)
        # One pass (issue 6): a full mailbox under "block" undoes the appends made so far,
        # so the event is queued to all handlers or to none. Workers woken for an event
        # that was taken back find their mailbox empty and sleep again.
        for sub in subs:
            mailbox = sub.mailbox
            if len(mailbox) >= cap or sub.space_waiters:  # waiters: see publish()
                policy = self.overflow
                if policy == "block":
                    for done in subs[: subs.index(sub)]:
                        done.mailbox.pop()
                    self._reject("queue_full")
                    raise QueueFullError(
                        f"handler {sub.name!r} has {len(mailbox)} queued events and "
                        f"{len(sub.space_waiters)} blocked publishers "
                        f"(max_queue_size={cap}); publish(wait=False) and publish_sync on "
                        f"the event-loop thread cannot wait: use 'await bus.publish(event)'"
                    )
                self._drop(sub, "queue_full")
                if policy == "drop_newest":
                    queued -= 1
                    continue
                mailbox.popleft()
            mailbox.append(event)
            if sub.waiter is not None:
                sub.wake()
        self._published += 1
        if self.history_size:
            self._history.append(event)
        if self._waiters:
            self._notify_waiters(event)
        return queued

    def _publish_off_loop(self, event: SystemEvent, timeout: float | None) -> int:
        """``publish_sync`` not on the bus's loop thread (or before a loop is bound)."""
        loop = self._loop
        if loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "publish_sync needs the bus's event loop: subscribe or publish from a "
                    "coroutine first, then call publish_sync from that loop or another thread"
                ) from None
            loop = self._bind()
        if _get_ident() == self._loop_thread:
            return EventBus.publish_sync(self, event)
        if loop.is_closed() or not loop.is_running():
            raise RuntimeError("publish_sync: the bus's event loop is not running")
        future = asyncio.run_coroutine_threadsafe(self.publish(event), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    # ------------------------------------------------------------------ waiting
    async def wait_for(
        self,
        event_type: Enum,
        predicate: Callable[[SystemEvent], bool] | None = None,
        *,
        timeout: float | None = None,
    ) -> SystemEvent:
        """Wait for the next published event of ``event_type`` matching ``predicate``
        (seed 004 ``wait_for_event``).

        Only events published after the call count. ``EventType.ANY`` matches all types.

        Args:
            timeout: seconds; ``None`` waits forever.

        Raises:
            TimeoutError: nothing matched within ``timeout`` seconds.
            BusClosedError: the bus closed while waiting.
        """
        loop = self._bind()
        if self._closed:
            raise BusClosedError("cannot wait: the EventBus is closed")
        fut: asyncio.Future[SystemEvent] = loop.create_future()
        entry = (event_type, predicate, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _notify_waiters(self, event: SystemEvent) -> None:
        keep = []
        for entry in self._waiters:
            etype, pred, fut = entry
            if fut.done():
                continue
            if etype is EventType.ANY or etype is event.event_type:
                try:
                    matched = pred is None or pred(event)
                except Exception as exc:
                    fut.set_exception(exc)
                    continue
                if matched:
                    fut.set_result(event)
                    continue
            keep.append(entry)
        self._waiters[:] = keep

    # ------------------------------------------------------------------ history (seed 001)
    def _index(self) -> dict[str, tuple[int, SystemEvent]]:
        """The id index of the history, brought up to date: ``event_id -> (seq, event)``.

        ``seq`` is the event's 1-based publish number; an entry is live while
        ``seq > published - len(history)`` (older entries fell out of the deque and are
        ignored, then pruned on the next full rebuild). Incremental: costs O(events
        published since the last query), O(history_size) at worst.
        """
        index = self._index_map
        published = self._published
        new = published - self._indexed
        if new:
            hist = self._history
            if new >= len(hist) or len(index) > 2 * self.history_size:
                index.clear()
                new = len(hist)
            seq = published - new
            for ev in itertools.islice(hist, len(hist) - new, None):
                seq += 1
                index[ev.event_id] = (seq, ev)
            self._indexed = published
        return index

    def get_event(self, event_id: str) -> SystemEvent | None:
        """The event with ``event_id`` if it is still in the history, else ``None``."""
        if not self.history_size:
            return None
        entry = self._index().get(event_id)
        if entry is None or entry[0] <= self._published - len(self._history):
            return None
        return entry[1]

    def get_causation_chain(self, event_id: str) -> list[SystemEvent]:
        """The chain of events that led to ``event_id``, oldest first (seed 001).

        Follows ``causation_id`` links through the history (last ``history_size``
        events). Stops at an event with no cause, at one no longer in the history, or on a
        cycle (each event appears once). Returns ``[]`` if ``event_id`` is unknown.
        """
        chain: list[SystemEvent] = []
        seen: set[str] = set()
        current = self.get_event(event_id)
        while current is not None and current.event_id not in seen:
            seen.add(current.event_id)
            chain.append(current)
            if current.causation_id is None:
                break
            current = self.get_event(current.causation_id)
        chain.reverse()
        return chain

    def history(
        self,
        *,
        event_types: Iterable[Enum] | None = None,
        agent_id: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
    ) -> list[SystemEvent]:
        """Recent events (at most ``history_size``) in publish order, filtered (seed 001
        ``replay_events``). ``since`` compares with ``event.timestamp`` (aware; a naive
        value is read as local time)."""
        types = set(event_types) if event_types is not None else None
        if since is not None and since.tzinfo is None:
            since = since.astimezone()
        out: list[SystemEvent] = []
        if not self.history_size:
            return out
        for ev in self._history:
            if types is not None and ev.event_type not in types:
                continue
            if agent_id is not None and ev.agent_id != agent_id:
                continue
            if correlation_id is not None and ev.correlation_id != correlation_id:
                continue
            if since is not None and ev.timestamp < since:
                continue
            out.append(ev)
        return out

    async def replay(self, events: Iterable[SystemEvent]) -> int:
        """Publish ``events`` again, in order (seed 001 replay). Returns how many."""
        n = 0
        for ev in list(events):
            await self.publish(ev)
            n += 1
        return n

    # ------------------------------------------------------------------ stats
    def stats(self) -> BusStats:
        """A consistent-enough snapshot of the counters; safe from any thread (reads only)."""
        subs = tuple(
            SubscriptionStats(
                id=s.id,
                name=s.name,
                event_type=_type_name(s.event_type),
                delivered=s.delivered,
                errors=s.errors,
                dropped=s.dropped,
                queue_depth=len(s.mailbox) + (1 if s.in_flight else 0),
                busy_seconds=s.busy_seconds,
                lag_sum=s.lag_sum,
                lag_count=s.lag_count,
                lag_buckets=tuple(s.lag_buckets),
            )
            for s in list(self._subs.values())
        )
        return BusStats(
            published=self._published,
            capacity=self.max_queue_size,
            closed=self._closed,
            dropped=dict(self._dropped),
            rejected=dict(self._rejected),
            subscriptions=subs,
            close_errors=dict(self._close_errors),
        )

    # ------------------------------------------------------------------ draining / closing
    def _handler_failed(
        self, sub: Subscription, event: SystemEvent, exc: BaseException
    ) -> None:
        logger.error(
            "handler %r failed on %s event %s from agent %r: %s: %s",
            sub.name,
            event.type_name,
            event.event_id,
            event.agent_id,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    def _batch_done(self, sub: Subscription) -> None:
        if not sub.mailbox and self._idle_waiters:
            self._check_idle()

    def _is_idle(self) -> bool:
        return all(not s.mailbox and not s.in_flight for s in self._subs.values())

    def _check_idle(self) -> None:
        if self._is_idle():
            for fut in self._idle_waiters:
                if not fut.done():
                    fut.set_result(None)
            self._idle_waiters = []

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every event published so far has been handled by every handler.

        Raises:
            TimeoutError: not drained within ``timeout`` seconds.
        """
        loop = self._bind()
        if self._is_idle():
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._idle_waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting events, deliver everything already accepted, close handlers.

        Two-phase shutdown, on each handler object (a handler, or the object of a
        bound-method handler; once per object even if subscribed several times):

        1. After ``close`` starts, ``publish``/``publish_sync``/``subscribe`` raise
           :class:`BusClosedError`; then the synchronous ``begin_close()`` of every handler
           object that has one is called, *before* draining, so work that would delay
           delivery stops early (a retry waiting for back-off dead-letters the event).
        2. Everything accepted is delivered (drain). Events whose publisher is waiting for
           room in a full mailbox when ``close`` starts count as accepted.
        3. ``aclose()`` of every handler object that has one is awaited, in subscription
           order, so batchers flush.

        A ``begin_close()`` or ``aclose()`` that raises is logged and counted in
        ``stats().close_errors``, never raised.

        Args:
            timeout: seconds for steps 2 and 3 together; ``None`` waits as long as it takes.
                Delivery still unfinished at the deadline is cancelled: events queued or
                being handled are counted as dropped with reason ``"close_timeout"``, and
                publishers still waiting for room get :class:`BusClosedError` (their
                undelivered handlers counted the same way). An ``aclose()`` still running
                at the deadline is cancelled and counted as ``"aclose_timeout"`` (one started
                after the deadline runs until its first suspension).

        Raises:
            asyncio.CancelledError: ``close`` itself was cancelled (propagated).
        """
        if self._closed:
            return
        loop = self._bind()
        self._closed = True
        for _etype, _pred, fut in self._waiters:
            if not fut.done():
                fut.set_exception(BusClosedError("the EventBus closed while waiting"))
        self._waiters.clear()
        deadline = None if timeout is None else loop.time() + timeout
        subs = list(self._subs.values())
        for name, begin_close in _handler_objects(subs, "begin_close"):
            try:
                result = begin_close()
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError("begin_close() must be synchronous, it returned an awaitable")
            except Exception as exc:
                self._close_failed("begin_close", name, exc)
        timed_out = False
        while self._blocked and not timed_out:
            unblocked: asyncio.Future[None] = loop.create_future()
            self._unblocked = unblocked
            try:
                await asyncio.wait_for(unblocked, _remaining(loop, deadline))
            except TimeoutError:
                timed_out = True
        self._unblocked = None
        subs = list(self._subs.values())  # blocked publishers cannot subscribe: same set
        retire = asyncio.ensure_future(self._retire(subs))
        try:
            if timed_out:
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(retire), _remaining(loop, deadline))
        except TimeoutError:
            self._gave_up = True
            for sub in subs:
                for waiter in list(sub.space_waiters):
                    if not waiter.done():
                        waiter.set_exception(BusClosedError(
                            "the EventBus closed (timeout) before this event was queued"
                        ))
                undelivered = len(sub.mailbox) + (1 if sub.in_flight else 0)
                if undelivered:
                    self._drop(sub, "close_timeout", undelivered)
                    sub.mailbox.clear()
                if sub.task is not None:
                    sub.task.cancel()
            await asyncio.gather(retire, return_exceptions=True)
        for name, aclose in _handler_objects(subs, "aclose"):
            cm = asyncio.timeout_at(deadline)
            try:
                async with cm:
                    await aclose()
            except TimeoutError as exc:
                self._close_failed("aclose_timeout" if cm.expired() else "aclose", name, exc)
            except Exception as exc:
                self._close_failed("aclose", name, exc)
        self._check_idle()

    def _close_failed(self, reason: str, name: str, exc: BaseException) -> None:
        self._close_errors[reason] = self._close_errors.get(reason, 0) + 1
        what = "begin_close()" if reason == "begin_close" else "aclose()"
        if reason == "aclose_timeout":
            logger.error("%s of handler %r overran the close timeout and was cancelled",
                         what, name)
        else:
            logger.error("%s of handler %r failed: %s: %s", what, name, type(exc).__name__,
                         exc, exc_info=exc)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has started."""
        return self._closed

    async def __aenter__(self) -> Self:
        self._bind()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _handler_objects(subs: Iterable[Subscription], attr: str) -> list[tuple[str, Any]]:
    """``(subscription name, bound attr)`` for each distinct handler object having ``attr``:
    the handler itself, or the ``__self__`` of a bound-method handler (first match wins)."""
    seen: set[int] = set()
    out: list[tuple[str, Any]] = []
    for sub in subs:
        for target in (sub.original, getattr(sub.original, "__self__", None)):
            method = getattr(target, attr, None)
            if method is None or not callable(method) or id(target) in seen:
                continue
            seen.add(id(target))
            out.append((sub.name, method))
    return out


def _remaining(loop: asyncio.AbstractEventLoop, deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - loop.time(), 0.0)


def _type_name(event_type: Enum) -> str:
    value = event_type.value
    return value if isinstance(value, str) else event_type.name.lower()
