"""The benchmark cases: agentbus beside pyee, blinker, bubus and plain-Python floors.

Every handler body is ``count += 1`` (on a shared counter object), so what is measured is
the machinery around it. Handlers are distinct function objects (pyee and blinker
de-duplicate a function registered twice; bubus warns on equal names). Events are built
before the probe opens (construction has its own group) and each sample checks that every
handler saw every event, so a case that silently loses events fails instead of looking fast.

Groups (``Group.key``):

* ``sync-1`` / ``sync-10``: publish from synchronous code until delivered to 1 / 10
  handlers: a direct call (floor), pyee ``EventEmitter.emit``, blinker ``Signal.send``, and
  ``EventBus.publish_sync`` on the loop thread, which never waits, so it publishes in chunks
  of ``max_queue_size`` (1,000) and awaits ``drain()`` between chunks (reported), or with a
  capacity of at least N (all published, then one drain). agentbus handlers are
  ``async def`` (a sync handler would run in a thread).
* ``async-1`` / ``async-10``: ``await handler(ev)`` (floor); ``asyncio.Queue(1024)`` with
  one consumer task calling the handlers (reference); pyee ``AsyncIOEventEmitter`` (emit all,
  then ``wait_for_complete``; fewer events); bubus (``dispatch`` all, then
  ``wait_until_idle``; fewer events); ``await EventBus.publish`` per event, then ``drain()``.
* ``construct``: building one event with realistic fields (ids, trace context, metadata,
  attributes): a slotted dataclass (floor), a 3-field pydantic model, ``SystemEvent(...)``
  (validated), ``SystemEvent.model_construct(...)`` (what the executor does).
* ``executor``: one pydantic-ai ``Agent(TestModel())`` run with two tools, per run: bare
  ``agent.run`` (reference), with pydantic-ai's own OpenTelemetry instrumentation (SDK tracer
  provider), and ``AgentExecutor.execute`` through ``PydanticAIRunner`` without a bus, with a
  bus and no handlers, with each handler alone and with all three (Prometheus, OTel spans,
  structlog JSON logging). Bus cases include ``await bus.drain()`` and every OTel case a
  ``force_flush()`` of its ``BatchSpanProcessor`` (to a no-op exporter) at the end of the
  sample: the handlers' work done in bus workers is counted, not just the publisher's.
* ``other-subs``: async publish→deliver to one handler while 1 … 1,000 subscriptions to
  other event types exist.
* ``history``: async publish→deliver to one handler on a fresh bus, and on buses that
  already delivered ``history_prefill / 10`` and ``history_prefill`` events.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from agentbus import EventBus, EventType, SystemEvent, new_event_id, new_span_id, new_trace_id
from agentbus import semconv as sc

from .harness import BenchConfig, Case, Group, Probe

__all__ = ["Counter", "all_groups", "close_shared", "events", "realistic_event", "realistic_fields"]


class Counter:
    """A shared tally every benchmark handler increments (the handler body)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def _sync_handlers(counter: Counter, k: int) -> list[Callable[..., None]]:
    out = []
    for i in range(k):
        def handler(_event: Any, counter: Counter = counter) -> None:
            counter.n += 1
        handler.__name__ = handler.__qualname__ = f"sync_handler_{i}"
        out.append(handler)
    return out


def _async_handlers(counter: Counter, k: int) -> list[Callable[..., Any]]:
    out = []
    for i in range(k):
        async def handler(_event: Any, counter: Counter = counter) -> None:
            counter.n += 1
        handler.__name__ = handler.__qualname__ = f"async_handler_{i}"
        out.append(handler)
    return out


def _check(counter: Counter, expected: int, case: str) -> None:
    if counter.n != expected:
        raise RuntimeError(f"{case}: handlers saw {counter.n} deliveries, expected {expected}")


# ---------------------------------------------------------------------------- events
def realistic_fields() -> dict[str, Any]:
    """Field values of a typical ``AGENT_COMPLETED`` event, as the executor builds it."""
    start = 1_700_000_000_000_000_000
    return {
        "event_type": EventType.AGENT_COMPLETED,
        "agent_id": "support-agent",
        "user_id": "user-42",
        "session_id": "session-7",
        "timestamp": datetime.now(UTC),
        "metadata": {"model": "test"},
        "execution_time_ms": 12.5,
        "error_message": None,
        "error_type": None,
        "event_id": new_event_id(),
        "causation_id": new_event_id(),
        "correlation_id": new_event_id(),
        "trace_id": new_trace_id(),
        "span_id": new_span_id(),
        "parent_span_id": None,
        "attributes": {
            sc.GEN_AI_AGENT_NAME: "support",
            sc.GEN_AI_REQUEST_MODEL: "test",
            sc.AB_START_TIME_NS: start,
            sc.AB_END_TIME_NS: start + 12_500_000,
            sc.GEN_AI_USAGE_INPUT_TOKENS: 51,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 9,
        },
    }


def realistic_event() -> SystemEvent:
    """A validated event with :func:`realistic_fields`."""
    return SystemEvent(**realistic_fields())


_EVENTS: list[SystemEvent] = []


def events(n: int) -> list[SystemEvent]:
    """``n`` distinct realistic events, built once and reused by every case."""
    while len(_EVENTS) < n:
        _EVENTS.append(realistic_event())
    return _EVENTS[:n]


# ---------------------------------------------------------------------------- sync delivery
def _sync_direct(k: int) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        hs = _sync_handlers(counter, k)
        if k == 1:
            h = hs[0]
            with probe:
                for ev in evs:
                    h(ev)
        else:
            with probe:
                for ev in evs:
                    for h in hs:
                        h(ev)
        _check(counter, n * k, "direct call")
        return n

    return case


def _pyee_sync(k: int) -> Callable[[int, Probe], Any]:
    from pyee import EventEmitter

    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        ee = EventEmitter()
        for h in _sync_handlers(counter, k):
            ee.on("agent_completed", h)
        emit = ee.emit
        with probe:
            for ev in evs:
                emit("agent_completed", ev)
        _check(counter, n * k, "pyee emit")
        return n

    return case


def _blinker(k: int) -> Callable[[int, Probe], Any]:
    from blinker import Signal

    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        sig = Signal()
        for h in _sync_handlers(counter, k):
            sig.connect(h, weak=False)
        send = sig.send
        with probe:
            for ev in evs:
                send(ev)
        _check(counter, n * k, "blinker send")
        return n

    return case


async def _bus_with(counter: Counter, k: int, **kw: Any) -> EventBus:
    bus = EventBus(**kw)
    for h in _async_handlers(counter, k):
        await bus.subscribe(EventType.AGENT_COMPLETED, h)
    return bus


def _publish_sync(k: int, *, chunked: bool) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        cap = 1_000 if chunked else max(n, 1_000)
        bus = await _bus_with(counter, k, max_queue_size=cap)
        publish = bus.publish_sync
        with probe:
            for i in range(0, n, cap):
                for ev in evs[i : i + cap]:
                    publish(ev)
                await bus.drain()
        await bus.close()
        _check(counter, n * k, "publish_sync")
        return n

    return case


def sync_group(k: int) -> Group:
    """Synchronous publish until delivered to ``k`` handlers."""
    return Group(
        key=f"sync-{k}",
        title=f"sync publish → delivered, {k} handler{'s' if k > 1 else ''}",
        unit="event",
        floor="direct",
        reference="pyee",
        cases=[
            Case("direct", "direct sync call (floor)", _sync_direct(k)),
            Case("pyee", "pyee `EventEmitter.emit`", _pyee_sync(k)),
            Case("blinker", "blinker `Signal.send`", _blinker(k)),
            Case(
                "agentbus",
                "agentbus `publish_sync`, chunks of 1,000 + `drain()`",
                _publish_sync(k, chunked=True),
                note="max_queue_size=1000 (default policy 'block'): publish_sync on the loop "
                "thread never waits, so each chunk is drained before the next",
            ),
            Case(
                "agentbus-big",
                "agentbus `publish_sync`, capacity ≥ N, one `drain()`",
                _publish_sync(k, chunked=False),
                note="max_queue_size=max(N, 1000): every event queued first, delivered after",
            ),
        ],
    )


# ---------------------------------------------------------------------------- async delivery
def _await_direct(k: int) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        hs = _async_handlers(counter, k)
        if k == 1:
            h = hs[0]
            with probe:
                for ev in evs:
                    await h(ev)
        else:
            with probe:
                for ev in evs:
                    for h in hs:
                        await h(ev)
        _check(counter, n * k, "await handler")
        return n

    return case


def _asyncio_queue(k: int) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        hs = _async_handlers(counter, k)
        queue: asyncio.Queue[SystemEvent | None] = asyncio.Queue(1024)

        async def consumer() -> None:
            get = queue.get
            while True:
                ev = await get()
                if ev is None:
                    return
                for h in hs:
                    await h(ev)

        with probe:
            task = asyncio.get_running_loop().create_task(consumer())
            put = queue.put
            for ev in evs:
                await put(ev)
            await put(None)
            await task
        _check(counter, n * k, "asyncio.Queue")
        return n

    return case


def _pyee_async(k: int) -> Callable[[int, Probe], Any]:
    from pyee.asyncio import AsyncIOEventEmitter

    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        ee = AsyncIOEventEmitter()
        for h in _async_handlers(counter, k):
            ee.on("agent_completed", h)
        emit = ee.emit
        with probe:
            for ev in evs:
                emit("agent_completed", ev)
            await ee.wait_for_complete()
        _check(counter, n * k, "pyee AsyncIOEventEmitter")
        return n

    return case


_BUBUS_IDS = itertools.count(1)


def _bubus(k: int) -> Callable[[int, Probe], Any]:
    import bubus

    class BenchEvent(bubus.BaseEvent[None]):  # type: ignore[misc]
        """A bubus event carrying one agentbus event."""

        payload: Any = None

    logging.getLogger("bubus").setLevel(logging.WARNING)

    async def case(n: int, probe: Probe) -> int:
        evs = [BenchEvent(payload=e) for e in events(n)]
        counter = Counter()
        bus = bubus.EventBus(name=f"bench_{os.getpid()}_{next(_BUBUS_IDS)}")
        for h in _async_handlers(counter, k):
            bus.on(BenchEvent, h)
        dispatch = bus.dispatch
        with probe:
            for e in evs:
                dispatch(e)
            await bus.wait_until_idle()
        await bus.stop(clear=True)
        _check(counter, n * k, "bubus")
        return n

    return case


def _agentbus_async(k: int) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        bus = await _bus_with(counter, k)
        publish = bus.publish
        with probe:
            for ev in evs:
                await publish(ev)
            await bus.drain()
        await bus.close()
        _check(counter, n * k, "agentbus publish")
        return n

    return case


def async_group(k: int) -> Group:
    """Async publish until delivered to ``k`` handlers."""
    return Group(
        key=f"async-{k}",
        title=f"async publish → delivered, {k} handler{'s' if k > 1 else ''}",
        unit="event",
        floor="direct",
        reference="queue",
        cases=[
            Case("direct", "`await handler(ev)` directly (floor)", _await_direct(k)),
            Case(
                "queue",
                "`asyncio.Queue(1024)`, `await put`, 1 consumer task",
                _asyncio_queue(k),
                note="the consumer calls the handlers in turn",
            ),
            Case(
                "pyee-async",
                "pyee `AsyncIOEventEmitter`, emit all then wait",
                _pyee_async(k),
                size=lambda cfg: min(cfg.n, cfg.pyee_async_n),
                note="fewer events per sample (one task per handler per event)",
            ),
            Case(
                "bubus",
                "bubus `dispatch` all then `wait_until_idle`",
                _bubus(k),
                size=lambda cfg: min(cfg.n, cfg.bubus_n),
                note="fewer events per sample (milliseconds per event)",
            ),
            Case(
                "agentbus",
                "agentbus `await publish` + `drain()`",
                _agentbus_async(k),
                note="max_queue_size=1000, policy 'block', history_size=10000, metrics on",
            ),
        ],
    )


# ---------------------------------------------------------------------------- construction
@dataclass(slots=True)
class _SlottedEvent:
    event_type: Enum
    agent_id: str
    user_id: str | None
    session_id: str | None
    timestamp: datetime
    metadata: dict[str, Any]
    execution_time_ms: float | None
    error_message: str | None
    error_type: str | None
    event_id: str
    causation_id: str | None
    correlation_id: str | None
    trace_id: str | None
    span_id: str | None
    parent_span_id: str | None
    attributes: dict[str, Any]


def _construct(build: Callable[[dict[str, Any]], Any]) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        fields = realistic_fields()
        keep: list[Any] = [None] * n
        with probe:
            for i in range(n):
                keep[i] = build(fields)
        if keep[-1] is None:
            raise RuntimeError("construction produced nothing")
        return n

    return case


def construct_group() -> Group:
    """Cost of building one event."""
    from pydantic import BaseModel

    class Small(BaseModel):
        agent_id: str
        user_id: str
        session_id: str

    return Group(
        key="construct",
        title="event construction (16 fields: ids, trace context, metadata, attributes)",
        unit="event",
        floor="dataclass",
        reference="dataclass",
        cases=[
            Case("dataclass", "slotted dataclass, same fields (floor)",
                 _construct(lambda f: _SlottedEvent(**f))),
            Case("pydantic-3", "pydantic model, 3 `str` fields",
                 _construct(lambda f: Small(agent_id=f["agent_id"], user_id=f["user_id"],
                                            session_id=f["session_id"]))),
            Case("validated", "`SystemEvent(**fields)` (validated)",
                 _construct(lambda f: SystemEvent(**f))),
            Case("constructed", "`SystemEvent.model_construct(**fields)` (executor's path)",
                 _construct(lambda f: SystemEvent.model_construct(**f))),
        ],
    )


# ---------------------------------------------------------------------------- scaling
def _other_subs(others: int) -> Callable[[int, Probe], Any]:
    other_types = Enum(  # type: ignore[misc]
        "OtherEventType", {f"T{i}": f"other_{i}" for i in range(others)}
    )

    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        counter = Counter()
        bus = await _bus_with(counter, 1)
        idle = Counter()
        for member, h in zip(other_types, _async_handlers(idle, others), strict=True):
            await bus.subscribe(member, h)
        publish = bus.publish
        with probe:
            for ev in evs:
                await publish(ev)
            await bus.drain()
        await bus.close()
        _check(counter, n, "other subscriptions")
        _check(idle, 0, "other subscriptions (idle)")
        return n

    return case


def other_subs_group(cfg: BenchConfig) -> Group:
    """Cost per event as subscriptions to other event types grow."""
    counts = cfg.other_subs
    return Group(
        key="other-subs",
        title="async publish → 1 handler, with subscriptions to other event types",
        unit="event",
        reference=f"others-{counts[0]}",
        cases=[
            Case(f"others-{c}", f"{c:,} other subscription{'s' if c > 1 else ''}",
                 _other_subs(c))
            for c in counts
        ],
    )


class _AgedBus:
    """A bus (bound to the benchmark's loop) that has already delivered ``prefill`` events."""

    def __init__(self, prefill: int) -> None:
        self.prefill = prefill
        self.counter = Counter()
        self.bus: EventBus | None = None

    async def get(self, n: int) -> EventBus:
        if self.bus is None:
            bus = await _bus_with(self.counter, 1)
            pool = events(min(max(n, 1), 100_000))
            publish = bus.publish
            for i in range(self.prefill):
                await publish(pool[i % len(pool)])
            await bus.drain()
            self.bus = bus
        return self.bus

    async def aclose(self) -> None:
        if self.bus is not None:
            await self.bus.close()
            self.bus = None


_AGED: list[_AgedBus] = []


def _history(prefill: int) -> Callable[[int, Probe], Any]:
    aged = _AgedBus(prefill)
    _AGED.append(aged)

    async def case(n: int, probe: Probe) -> int:
        evs = events(n)
        if prefill == 0:
            counter = Counter()
            bus = await _bus_with(counter, 1)
        else:
            bus = await aged.get(n)
            counter = aged.counter
        before = counter.n
        publish = bus.publish
        with probe:
            for ev in evs:
                await publish(ev)
            await bus.drain()
        if prefill == 0:
            await bus.close()
        if counter.n - before != n:
            raise RuntimeError(f"history case lost events: {counter.n - before} of {n}")
        return n

    return case


def history_group(cfg: BenchConfig) -> Group:
    """Cost per event on a fresh bus vs one that already delivered many events."""
    points = (0, cfg.history_prefill // 10, cfg.history_prefill)
    return Group(
        key="history",
        title="async publish → 1 handler, after events already delivered",
        unit="event",
        reference="after-0",
        cases=[
            Case(f"after-{p}", f"after {p:,} delivered events", _history(p)) for p in points
        ],
    )


async def close_shared() -> None:
    """Close the long-lived buses of the history group (call once at the end)."""
    for aged in _AGED:
        await aged.aclose()


# ---------------------------------------------------------------------------- all
def all_groups(cfg: BenchConfig) -> list[Group]:
    """Every group, in report order (the executor group comes from :mod:`.executor`)."""
    from .executor import executor_group, instrumentation_group

    groups: list[Group] = [
        async_group(1),
        async_group(10),
        sync_group(1),
        sync_group(10),
        construct_group(),
        executor_group(),
        instrumentation_group(),
        other_subs_group(cfg),
        history_group(cfg),
    ]
    return groups


def group_keys(groups: Sequence[Group]) -> list[str]:
    """The keys of ``groups``, in order."""
    return [g.key for g in groups]
