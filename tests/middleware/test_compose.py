"""chain() and the wrappers: FilteredHandler, EventTransformer, EventRouter."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentbus import EventBus, EventType, SystemEvent, handler_name
from agentbus.testing import CapturingHandler, FakeClock, make_event
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


async def test_bus_close_through_limit_dead_letters_retries_waiting_for_backoff() -> None:
    """chain(limit(4), retry.wrap, flaky): bus.close() reaches the retry's back-off through
    the limiter before waiting for its tasks, so sleeping retries are dead-lettered as
    closed instead of running to the end (the fake clock never moves)."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, delay=100, clock=clock)
    calls: list[SystemEvent] = []

    async def flaky(event: SystemEvent) -> None:
        calls.append(event)
        raise ConnectionError("down")

    handler = chain(limit(4), retry.wrap, flaky)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler)
    for _ in range(3):
        await bus.publish(make_event())
    await bus.drain()
    await clock.wait_for_sleepers(3)
    await asyncio.wait_for(bus.close(), timeout=10)
    assert [(d.reason, d.attempts) for d in retry.failed_events] == [("closed", 1)] * 3
    assert len(calls) == 3 and clock.monotonic() == 0


async def test_begin_close_propagates_down_the_whole_chain() -> None:
    """begin_close() on the outermost step reaches every step down to the sink, is sync and
    leaves the chain accepting events (the bus is still draining)."""

    class Sink(CapturingHandler):
        began = 0

        def begin_close(self) -> None:
            self.began += 1

    clock = FakeClock()
    retry = RetryHandler(max_attempts=3, delay=100, clock=clock)
    sink = Sink()
    router = EventRouter()
    router.add_route(EventType.ANY, retry.wrap(sink))
    handler = chain(when(lambda e: True), tag("t"), limit(2), router)
    handler.begin_close()  # type: ignore[attr-defined]
    handler.begin_close()  # type: ignore[attr-defined]
    assert retry.closing and sink.began == 1
    await handler(make_event())
    await handler.aclose()  # type: ignore[attr-defined]
    assert len(sink.events) == 1 and sink.closed


async def test_begin_close_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A sink whose begin_close raises does not break the chain's begin_close."""

    class Broken(CapturingHandler):
        def begin_close(self) -> None:
            raise RuntimeError("nope")

    handler = chain(when(lambda e: True), limit(1), Broken())
    handler.begin_close()  # type: ignore[attr-defined]
    assert "begin_close() of" in caplog.text and "nope" in caplog.text
    await handler.aclose()  # type: ignore[attr-defined]
