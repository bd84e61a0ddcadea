"""BatchEventHandler: flush on size, on interval, on close; failures kept; nothing lost."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentbus import EventBus, EventType, SystemEvent
from agentbus.testing import FakeClock, make_event
from middleware import BatchEventHandler, RetryHandler


class Sink:
    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[SystemEvent]] = []
        self.fail = fail
        self.closed = 0

    async def __call__(self, events: list[SystemEvent]) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("db down")
        self.batches.append(list(events))

    async def aclose(self) -> None:
        self.closed += 1


async def test_flushes_on_size() -> None:
    """Every batch_size events form one batch, in arrival order."""
    sink = Sink()
    batcher = BatchEventHandler(batch_size=3, flush_interval=None, process_batch=sink)
    events = [make_event() for _ in range(7)]
    for e in events:
        await batcher(e)
    assert sink.batches == [events[0:3], events[3:6]]
    assert batcher.buffer == events[6:]
    assert batcher.flushes_by_reason == {"size": 2}


async def test_flushes_on_interval_measured_from_first_event() -> None:
    """A partial batch is flushed once its oldest event waited flush_interval seconds."""
    clock = FakeClock()
    sink = Sink()
    batcher = BatchEventHandler(batch_size=100, flush_interval=5, process_batch=sink, clock=clock)
    first, second = make_event(), make_event()
    await batcher(first)
    await clock.advance(3)
    await batcher(second)
    await clock.advance(1.9)
    assert sink.batches == []
    await clock.advance(0.2)
    assert sink.batches == [[first, second]]
    third = make_event()
    await batcher(third)
    await clock.advance(4.9)
    assert len(sink.batches) == 1
    await clock.advance(0.2)
    assert sink.batches[1] == [third]
    assert batcher.flushes_by_reason == {"interval": 2}
    await batcher.aclose()


async def test_flushes_on_bus_close_and_closes_sink() -> None:
    """EventBus.close() flushes the partial batch and closes the sink."""
    sink = Sink()
    batcher = BatchEventHandler(batch_size=10, flush_interval=60, process_batch=sink)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, batcher)
    events = [make_event() for _ in range(4)]
    for e in events:
        await bus.publish(e)
    await bus.close()
    assert sink.batches == [events]
    assert batcher.flushes_by_reason == {"close": 1}
    assert sink.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        await batcher(make_event())


async def test_no_event_lost_under_size_interval_and_close() -> None:
    """Size, real-interval and close flushes racing: every event processed once, in order."""

    async def slow_sink(events: list[SystemEvent]) -> None:
        await asyncio.sleep(0)
        received.extend(events)

    received: list[SystemEvent] = []
    batcher = BatchEventHandler(batch_size=7, flush_interval=0.001, process_batch=slow_sink)
    bus = EventBus(max_queue_size=5)
    await bus.subscribe(EventType.ANY, batcher)
    sent = [make_event() for _ in range(300)]
    for i, e in enumerate(sent):
        await bus.publish(e)
        if i % 25 == 0:
            await asyncio.sleep(0.002)
    await bus.close()
    assert received == sent


async def test_failed_batch_is_kept_and_size_failure_reaches_the_bus() -> None:
    """A failing sink keeps the batch in failed_batches; the bus counts the handler error."""
    sink = Sink(fail=1)
    batcher = BatchEventHandler(batch_size=2, flush_interval=None, process_batch=sink)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, batcher)
    events = [make_event() for _ in range(4)]
    for e in events:
        await bus.publish(e)
    await bus.drain()
    assert bus.stats().handler_errors == 1
    [failed] = batcher.failed_batches
    assert failed.events == events[:2] and isinstance(failed.error, OSError)
    assert failed.reason == "size"
    assert sink.batches == [events[2:]]
    await bus.close()


async def test_subclass_overrides_process_batch() -> None:
    """Without process_batch, the seed's _process_batch override is the sink."""
    got: list[int] = []

    class Counting(BatchEventHandler):
        async def _process_batch(self, events: list[SystemEvent]) -> None:
            got.append(len(events))

    batcher = Counting(batch_size=2, flush_interval=None)
    for _ in range(5):
        await batcher.handle_event(make_event())
    await batcher.aclose()
    assert got == [2, 2, 1]


async def test_missing_sink_is_a_clear_error() -> None:
    """A batcher with neither process_batch nor an override says what is missing."""
    batcher = BatchEventHandler(batch_size=1, flush_interval=None)
    with pytest.raises(NotImplementedError, match="process_batch"):
        await batcher(make_event())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"batch_size": 0}, "batch_size"), ({"flush_interval": 0}, "flush_interval")],
)
def test_bad_arguments_are_named(kwargs: dict[str, float], name: str) -> None:
    """Bad sizes and intervals raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        BatchEventHandler(**kwargs)  # type: ignore[arg-type]


async def test_sync_sink_runs_in_a_worker_thread() -> None:
    """A sync sink (like db.insert_many) is called off the loop thread; nothing fails."""

    class Db:
        def __init__(self) -> None:
            self.rows: list[SystemEvent] = []
            self.threads: set[int] = set()

        def insert_many(self, events: list[SystemEvent]) -> None:
            self.threads.add(threading.get_ident())
            self.rows.extend(events)

    db = Db()
    batcher = BatchEventHandler(2, flush_interval=None, process_batch=db.insert_many)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, batcher)
    events = [make_event() for _ in range(5)]
    for e in events:
        await bus.publish(e)
    await bus.close()
    assert db.rows == events
    assert batcher.failed_batches == [] and batcher.batches == 3
    assert threading.get_ident() not in db.threads


async def test_leftover_events_keep_their_arrival_time() -> None:
    """Events left after a size flush are flushed flush_interval after *they* arrived, and a
    size flush never hands the sink a partial batch."""
    clock = FakeClock()
    gate = asyncio.Event()
    flushed_at: list[tuple[float, list[SystemEvent]]] = []

    async def gated_sink(events: list[SystemEvent]) -> None:
        await gate.wait()
        flushed_at.append((clock.monotonic(), list(events)))

    batcher = BatchEventHandler(2, flush_interval=10, process_batch=gated_sink, clock=clock)
    e1, e2, e3, e4, e5 = (make_event() for _ in range(5))
    # Concurrent callers (e.g. limit(4) in front of the batcher): a size flush is stuck in
    # the sink while more events arrive at t=1.
    tasks = [asyncio.ensure_future(batcher(e1)), asyncio.ensure_future(batcher(e2))]
    await clock.advance(1)
    tasks += [asyncio.ensure_future(batcher(e)) for e in (e3, e4, e5)]
    await clock.advance(3)  # t=4: the sink is released
    gate.set()
    await asyncio.gather(*tasks)
    await clock.settle()
    assert [b for _, b in flushed_at] == [[e1, e2], [e3, e4]]
    assert batcher.buffer == [e5] and batcher.oldest_arrival == 1
    await clock.advance(6.9)  # t=10.9: e5 waited 9.9 s
    assert len(flushed_at) == 2
    await clock.advance(0.2)  # t=11.1
    assert flushed_at[2] == (11, [e5])
    assert batcher.flushes_by_reason == {"size": 2, "interval": 1}
    await batcher.aclose()


async def test_begin_close_stops_a_retrying_sink_backoff() -> None:
    """begin_close() reaches a RetryHandler-wrapped sink: the batch waiting for back-off is
    dead-lettered as closed and kept in failed_batches, without time passing."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, delay=100, clock=clock)
    sink = Sink(fail=100)
    batcher = BatchEventHandler(2, flush_interval=None, process_batch=retry.wrap(sink),
                                clock=clock)
    events = [make_event(), make_event()]
    await batcher(events[0])
    flushing = asyncio.ensure_future(batcher(events[1]))
    await clock.wait_for_sleepers(1)
    batcher.begin_close()
    batcher.begin_close()  # idempotent
    with pytest.raises(OSError):
        await flushing
    assert [(d.reason, d.attempts) for d in retry.failed_events] == [("closed", 1)]
    assert [f.events for f in batcher.failed_batches] == [events]
    await batcher.aclose()
