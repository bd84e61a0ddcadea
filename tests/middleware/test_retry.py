"""RetryHandler: back-off, dead letters, shutdown and cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from agentbus import EventBus, EventType, SystemEvent, handler_name
from agentbus.testing import FakeClock, make_event
from middleware import RetryHandler


class Flaky:
    """Fails ``failures`` times, then succeeds; records the fake time of each call."""

    def __init__(self, clock: FakeClock, failures: int, exc: Exception | None = None) -> None:
        self.clock = clock
        self.failures = failures
        self.exc = exc or ConnectionError("unavailable")
        self.calls: list[float] = []

    async def __call__(self, event: SystemEvent) -> None:
        self.calls.append(self.clock.monotonic())
        if len(self.calls) <= self.failures:
            raise self.exc


async def test_backoff_is_exponential_on_the_clock() -> None:
    """Attempts are spaced delay * backoff**n apart in clock time (no jitter)."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=4, delay=1.0, backoff=2.0, jitter=0, clock=clock)
    flaky = Flaky(clock, failures=3)
    await clock.run(retry.handle_with_retry(flaky, make_event()), step=0.5)
    assert [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)] == [1, 2, 4]
    assert retry.retries == 3 and retry.failed_events == []


def test_backoff_delay_has_bounded_jitter_and_cap() -> None:
    """Jittered delays stay within ±jitter of the exponential base, capped by max_delay."""
    retry = RetryHandler(delay=1.0, backoff=3.0, max_delay=10.0, jitter=0.2, rng=random.Random(7))
    for attempt, base in [(1, 1.0), (2, 3.0), (3, 9.0), (4, 10.0), (9, 10.0)]:
        delays = {retry.backoff_delay(attempt) for _ in range(50)}
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len(delays) > 1  # jitter actually varies


async def test_exhausted_retries_dead_letter_with_last_error() -> None:
    """After max_attempts failures the event is dead-lettered with the last error and re-raised."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=3, delay=0.1, clock=clock)
    errors = iter([ConnectionError("1"), ConnectionError("2"), TimeoutError("3")])

    async def failing(event: SystemEvent) -> None:
        raise next(errors)

    event = make_event()
    with pytest.raises(TimeoutError, match="3"):
        await clock.run(retry.handle_with_retry(failing, event), step=1)
    [dead] = retry.failed_events
    assert dead.event is event
    assert isinstance(dead.error, TimeoutError) and str(dead.error) == "3"
    assert (dead.attempts, dead.reason) == (3, "exhausted")
    assert dead.handler == handler_name(failing)


async def test_not_retryable_error_dead_letters_at_once() -> None:
    """An error outside retry_on is not retried."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, retry_on=(ConnectionError,), clock=clock)
    flaky = Flaky(clock, failures=10, exc=ValueError("bad input"))
    with pytest.raises(ValueError):
        await retry.handle_with_retry(flaky, make_event())
    assert len(flaky.calls) == 1
    assert [(d.attempts, d.reason) for d in retry.failed_events] == [(1, "not_retryable")]


async def test_wrap_on_bus_counts_dead_letter_as_handler_error() -> None:
    """A wrapped handler that exhausts its retries on the bus is dead-lettered and counted."""
    retry = RetryHandler(max_attempts=2, delay=0.001)
    flaky = Flaky(FakeClock(), failures=100)
    bus = EventBus()
    handler = retry.wrap(flaky)
    await bus.subscribe(EventType.ANY, handler)
    await bus.publish(make_event())
    await bus.drain()
    assert bus.stats().handler_errors == 1
    assert len(flaky.calls) == 2
    assert [d.reason for d in retry.failed_events] == ["exhausted"]
    assert handler_name(handler) == "RetryHandler(Flaky)"
    await bus.close()


async def test_bus_close_dead_letters_retry_waiting_for_backoff() -> None:
    """bus.close() calls begin_close() before draining: a retry sleeping on a one-hour
    back-off is dead-lettered as closed and close() returns (the fake clock never moves)."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=3, delay=3600, clock=clock)
    flaky = Flaky(clock, failures=100)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, retry.wrap(flaky))
    await bus.publish(make_event())
    await clock.wait_for_sleepers(1)
    await asyncio.wait_for(bus.close(), timeout=10)
    assert [(d.reason, d.attempts) for d in retry.failed_events] == [("closed", 1)]
    assert len(flaky.calls) == 1 and clock.monotonic() == 0
    assert bus.stats().handler_errors == 1


async def test_aclose_dead_letters_retries_waiting_for_backoff() -> None:
    """aclose() wakes a retry sleeping on its back-off; it is dead-lettered as closed."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, delay=100, clock=clock)
    flaky = Flaky(clock, failures=100)
    task = asyncio.ensure_future(retry.handle_with_retry(flaky, make_event()))
    await clock.wait_for_sleepers(1)
    assert retry.in_flight == 1
    await retry.aclose()
    with pytest.raises(ConnectionError):
        await task
    assert [(d.attempts, d.reason) for d in retry.failed_events] == [(1, "closed")]
    assert retry.in_flight == 0
    await retry.aclose()  # idempotent


async def test_cancelled_retry_is_dead_lettered_and_cancel_propagates() -> None:
    """Cancelling a task between attempts dead-letters its event and re-raises CancelledError."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, delay=100, clock=clock)
    task = asyncio.ensure_future(retry.handle_with_retry(Flaky(clock, 100), make_event()))
    await clock.wait_for_sleepers(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d.reason for d in retry.failed_events] == ["cancelled"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"delay": -1}, "delay"),
        ({"backoff": 0.5}, "backoff"),
        ({"jitter": 2}, "jitter"),
        ({"max_delay": -1}, "max_delay"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, float], name: str) -> None:
    """Out-of-range settings raise ValueError naming the setting."""
    with pytest.raises(ValueError, match=name):
        RetryHandler(**kwargs)  # type: ignore[arg-type]


async def test_begin_close_dead_letters_sleepers_without_time_passing() -> None:
    """begin_close() (sync) wakes retries sleeping on their back-off: dead-lettered as closed;
    a later call gets one attempt; the policy stays usable until aclose()."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, delay=100, clock=clock)
    flaky = Flaky(clock, failures=100)
    tasks = [asyncio.ensure_future(retry.handle_with_retry(flaky, make_event()))
             for _ in range(3)]
    await clock.wait_for_sleepers(3)
    retry.begin_close()
    retry.begin_close()  # idempotent
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert [(d.reason, d.attempts) for d in retry.failed_events] == [("closed", 1)] * 3
    assert clock.monotonic() == 0 and retry.closing
    with pytest.raises(ConnectionError):
        await retry.handle_with_retry(flaky, make_event())  # draining: a single attempt
    assert len(flaky.calls) == 4 and retry.failed_events[-1].reason == "closed"
    await retry.aclose()


async def test_begin_close_on_the_wrapper_is_forwarded_to_the_policy_and_inner() -> None:
    """retry.wrap(h).begin_close() closes the policy's back-offs and reaches h.begin_close."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=5, delay=100, clock=clock)

    class Inner(Flaky):
        began = 0

        def begin_close(self) -> None:
            self.began += 1

    inner = Inner(clock, failures=100)
    handler = retry.wrap(inner)
    task = asyncio.ensure_future(handler(make_event()))
    await clock.wait_for_sleepers(1)
    handler.begin_close()  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError):
        await task
    assert inner.began == 1 and [d.reason for d in retry.failed_events] == ["closed"]
