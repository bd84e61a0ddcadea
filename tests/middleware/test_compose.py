"""chain() and the wrappers: FilteredHandler, EventTransformer, EventRouter."""

from __future__ import annotations

import threading

import pytest

from agentbus import EventBus, EventType, SystemEvent, handler_name
from agentbus.testing import CapturingHandler, make_event
from middleware import (
    BatchEventHandler,
    EventRouter,
    EventTransformer,
    FilteredHandler,
    RetryHandler,
    chain,
    limit,
    transform,
    when,
)


def tag(label: str):  # type: ignore[no-untyped-def]
    """A transform appending ``label`` to metadata["path"]."""

    def add(event: SystemEvent) -> SystemEvent:
        event.metadata.setdefault("path", []).append(label)
        return event

    return transform(add)


async def test_chain_applies_steps_left_to_right() -> None:
    """chain(a, b, sink) passes the event through a, then b, then the sink."""
    sink = CapturingHandler()
    handler = chain(tag("a"), tag("b"), when(lambda e: True), tag("c"), sink)
    await handler(make_event())
    assert sink.events[0].metadata["path"] == ["a", "b", "c"]


async def test_chain_names_and_forwards_aclose_to_the_sink() -> None:
    """The chain's name shows its steps; closing the bus flushes a batch sink at its end."""
    got: list[list[SystemEvent]] = []

    async def store(events: list[SystemEvent]) -> None:
        got.append(events)

    batcher = BatchEventHandler(batch_size=100, flush_interval=None, process_batch=store)
    retry = RetryHandler(max_attempts=2, delay=0)
    handler = chain(when(lambda e: e.agent_id == "keep"), retry.wrap, batcher)
    assert handler_name(handler) == "FilteredHandler(RetryHandler(BatchEventHandler))"
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler)
    kept = make_event(agent_id="keep")
    await bus.publish(kept)
    await bus.publish(make_event(agent_id="drop"))
    await bus.close()
    assert got == [[kept]]


async def test_chain_with_limit_processes_everything_before_close() -> None:
    """A limit() step's in-flight work is finished by bus.close()."""
    sink = CapturingHandler()
    bus = EventBus()
    await bus.subscribe(EventType.ANY, chain(limit(3), sink))
    for _ in range(20):
        await bus.publish(make_event())
    await bus.close()
    assert len(sink.events) == 20


def test_chain_rejects_bad_steps() -> None:
    """Empty chains and non-callable steps are TypeErrors naming the position."""
    with pytest.raises(TypeError, match="at least"):
        chain()
    with pytest.raises(TypeError, match="step 0"):
        chain(42, CapturingHandler())
    with pytest.raises(ValueError, match="max_concurrent"):
        limit(0)


async def test_filter_accepts_async_condition_and_sync_handler() -> None:
    """An async condition works; a sync handler runs in a worker thread."""
    threads: list[int] = []

    async def is_error(e: SystemEvent) -> bool:
        return e.event_type is EventType.ERROR_OCCURRED

    f = FilteredHandler(is_error, lambda e: threads.append(threading.get_ident()))
    await f(make_event(EventType.ERROR_OCCURRED))
    await f(make_event(EventType.AGENT_STARTED))
    assert len(threads) == 1 and threads[0] != threading.get_ident()
    assert (f.passed, f.rejected) == (1, 1)


async def test_transformer_drops_on_none_and_rejects_wrong_types() -> None:
    """A transform returning None drops the event; returning a non-event is a TypeError."""
    sink = CapturingHandler()
    dropper = EventTransformer(lambda e: None, sink)
    await dropper(make_event())
    assert sink.events == [] and dropper.dropped == 1
    bad = EventTransformer(lambda e: {"not": "an event"}, sink)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="dict"):
        await bad(make_event())


async def test_router_isolates_failing_route_and_reports_group() -> None:
    """A failing route handler does not stop the others; the bus counts one error."""
    router = EventRouter()
    calls: list[str] = []

    @router.route(EventType.AGENT_STARTED)
    async def fails(event: SystemEvent) -> None:
        raise RuntimeError("route down")

    @router.route(EventType.AGENT_STARTED)
    async def works(event: SystemEvent) -> None:
        calls.append("works")

    @router.route(EventType.ANY)
    async def audit(event: SystemEvent) -> None:
        calls.append(f"audit:{event.type_name}")

    with pytest.raises(ExceptionGroup) as info:
        await router(make_event(EventType.AGENT_STARTED))
    assert [str(e) for e in info.value.exceptions] == ["route down"]
    assert calls == ["works", "audit:agent_started"]

    bus = EventBus()
    await bus.subscribe(EventType.ANY, router)
    await bus.publish(make_event(EventType.AGENT_STARTED))
    await bus.publish(make_event(EventType.AGENT_COMPLETED))
    await bus.drain()
    assert bus.stats().handler_errors == 1 and router.errors == 2
    await bus.close()


async def test_router_closes_routed_handlers_once() -> None:
    """Closing the router closes each routed handler object once."""
    router = EventRouter()
    capture = CapturingHandler()
    router.add_route(EventType.AGENT_STARTED, capture)
    router.add_route(EventType.AGENT_COMPLETED, capture)
    with pytest.raises(TypeError, match="Enum"):
        router.add_route("agent_started", capture)  # type: ignore[arg-type]
    await router.aclose()
    assert capture.closed
