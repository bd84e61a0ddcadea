"""register_bus_metrics: the bus's own health exported from EventBus.stats()."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from agentbus import (
    BusClosedError,
    BusStats,
    EventBus,
    EventTooLargeError,
    EventType,
    SystemEvent,
)
from exporters.prometheus import BusMetricsCollector, register_bus_metrics


def event(i: int = 0, **kw: object) -> SystemEvent:
    return SystemEvent(event_type=EventType.CUSTOM, agent_id="probe", metadata={"i": i}, **kw)


class Recorder:
    """A handler counting calls and signalling when it reached a count."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self._targets: dict[int, asyncio.Event] = {}

    async def __call__(self, ev: SystemEvent) -> None:
        self.calls += 1
        target = self._targets.get(self.calls)
        if target is not None:
            target.set()
        if self.fail:
            raise RuntimeError("flaky handler")

    async def reached(self, n: int) -> None:
        if self.calls >= n:
            return
        await asyncio.wait_for(self._targets.setdefault(n, asyncio.Event()).wait(), 5)


class Blocker:
    """A handler that blocks on its first event until released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, ev: SystemEvent) -> None:
        self.entered.set()
        await self.release.wait()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def assert_matches_stats(registry: CollectorRegistry, stats: BusStats) -> None:
    """Every exported number equals the one in ``stats`` (handlers named uniquely)."""
    assert sample(registry, "agentbus_bus_events_published_total") == stats.published
    assert sample(registry, "agentbus_bus_queue_capacity") == stats.capacity
    assert sample(registry, "agentbus_bus_subscriptions") == len(stats.subscriptions)
    for reason, n in stats.dropped.items():
        assert sample(registry, "agentbus_bus_events_dropped_total", reason=reason) == n
    for reason, n in stats.rejected.items():
        assert sample(registry, "agentbus_bus_publish_rejected_total", reason=reason) == n
    for s in stats.subscriptions:
        h = {"handler": s.name}
        assert sample(registry, "agentbus_bus_events_delivered_total", **h) == s.delivered
        assert sample(registry, "agentbus_bus_handler_errors_total", **h) == s.errors
        assert sample(registry, "agentbus_bus_queue_depth", **h) == s.queue_depth
        assert sample(registry, "agentbus_bus_handler_busy_seconds_total",
                      **h) == pytest.approx(s.busy_seconds)
        assert sample(registry, "agentbus_bus_dispatch_lag_seconds_count", **h) == s.lag_count
        assert sample(registry, "agentbus_bus_dispatch_lag_seconds_bucket", le="+Inf",
                      **h) == s.lag_count
        assert sample(registry, "agentbus_bus_dispatch_lag_seconds_sum",
                      **h) == pytest.approx(s.lag_sum)


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus(max_queue_size=2, overflow="drop_newest", max_event_bytes=2_000)
    yield b
    await b.close(timeout=5)


async def test_bus_health_matches_stats_with_drop_rejection_and_handler_error(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """Published, delivered, dropped, rejected, errors and depth equal bus.stats()."""
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry)
    slow, ok, flaky = Blocker(), Recorder(), Recorder(fail=True)
    await bus.subscribe(EventType.ANY, slow, name="slow")
    await bus.subscribe(EventType.ANY, ok, name="ok")
    await bus.subscribe(EventType.ANY, flaky, name="flaky")
    with caplog.at_level(logging.CRITICAL, logger="agentbus.bus"):
        await bus.publish(event(1))
        await asyncio.wait_for(slow.entered.wait(), 5)  # slow now holds event 1
        await bus.publish(event(2))
        await bus.publish(event(3))  # slow's mailbox (2) is now full
        await ok.reached(3)
        await flaky.reached(3)
        await bus.publish(event(4))  # dropped for slow only
        with pytest.raises(EventTooLargeError):
            await bus.publish(event(5, attributes={"blob": "x" * 5_000}))
        await ok.reached(4)
        await flaky.reached(4)
        assert_matches_stats(registry, bus.stats())
        assert sample(registry, "agentbus_bus_events_published_total") == 4
        assert sample(registry, "agentbus_bus_events_dropped_total", reason="queue_full") == 1
        assert sample(registry, "agentbus_bus_publish_rejected_total", reason="too_large") == 1
        assert sample(registry, "agentbus_bus_handler_errors_total", handler="flaky") == 4
        assert sample(registry, "agentbus_bus_events_delivered_total", handler="ok") == 4
        assert sample(registry, "agentbus_bus_queue_depth", handler="slow") == 3
        slow.release.set()
        await bus.drain(timeout=5)
        assert_matches_stats(registry, bus.stats())
        assert sample(registry, "agentbus_bus_queue_depth", handler="slow") == 0
        assert sample(registry, "agentbus_bus_events_delivered_total", handler="slow") == 3
        await bus.close()
        with pytest.raises(BusClosedError):
            await bus.publish(event(6))
        assert sample(registry, "agentbus_bus_publish_rejected_total", reason="closed") == 1


async def test_known_reasons_are_exported_as_zero_before_anything_happens(
    bus: EventBus,
) -> None:
    """Drop and reject reasons exist from the start, so rate() has a series to work on."""
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry)
    for reason in ("queue_full", "close_timeout"):
        assert sample(registry, "agentbus_bus_events_dropped_total", reason=reason) == 0
    for reason in ("closed", "too_large", "queue_full"):
        assert sample(registry, "agentbus_bus_publish_rejected_total", reason=reason) == 0


async def test_dispatch_lag_histogram_is_cumulative_and_counts_every_wakeup() -> None:
    """Lag buckets are cumulative, end at +Inf == count == stats lag_count."""
    bus = EventBus()
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry)
    rec = Recorder()
    await bus.subscribe(EventType.ANY, rec, name="rec")
    for i in range(5):
        await bus.publish(event(i))
        await bus.drain(timeout=5)  # idle between events: every publish wakes the worker
    stats = bus.stats()
    family = next(m for m in registry.collect() if m.name == "agentbus_bus_dispatch_lag_seconds")
    buckets = [s.value for s in family.samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)
    assert buckets[-1] == stats.subscriptions[0].lag_count >= 1
    await bus.close()


async def test_counters_survive_unsubscribe_and_resubscribe() -> None:
    """A removed subscription's counts stay in its handler's counters (never decrease)."""
    bus = EventBus()
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry)
    first = await bus.subscribe(EventType.ANY, Recorder(), name="worker")
    for i in range(3):
        await bus.publish(event(i))
    await bus.drain(timeout=5)
    assert sample(registry, "agentbus_bus_events_delivered_total", handler="worker") == 3
    await bus.unsubscribe(first)
    assert sample(registry, "agentbus_bus_events_delivered_total", handler="worker") == 3
    assert sample(registry, "agentbus_bus_subscriptions") == 0
    await bus.subscribe(EventType.ANY, Recorder(), name="worker")
    for i in range(2):
        await bus.publish(event(i))
    await bus.drain(timeout=5)
    assert sample(registry, "agentbus_bus_events_delivered_total", handler="worker") == 5
    await bus.close()


async def test_subscriptions_sharing_a_name_are_summed_and_names_are_capped() -> None:
    """Same-named subscriptions give one series; names beyond handler_limit go to _OTHER."""
    bus = EventBus()
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry, handler_limit=2)
    for name in ("alpha", "alpha", "beta", "gamma", "delta"):
        await bus.subscribe(EventType.ANY, Recorder(), name=name)
    await bus.publish(event())
    await bus.drain(timeout=5)
    family = next(m for m in registry.collect()
                  if m.name == "agentbus_bus_events_delivered")
    by_handler = {s.labels["handler"]: s.value for s in family.samples
                  if s.name.endswith("_total")}
    assert by_handler == {"alpha": 2, "beta": 1, "_OTHER": 2}
    await bus.close()


async def test_one_bus_per_registry() -> None:
    """Registering a second bus in the same registry raises a clear ValueError."""
    registry = CollectorRegistry()
    register_bus_metrics(EventBus(), registry)
    with pytest.raises(ValueError, match="One bus per CollectorRegistry"):
        register_bus_metrics(EventBus(), registry)
    other = CollectorRegistry()
    assert isinstance(register_bus_metrics(EventBus(), other), BusMetricsCollector)


def test_bad_arguments_are_rejected() -> None:
    """A non-bus or a bad handler_limit raises ValueError naming it."""
    with pytest.raises(ValueError, match="bus"):
        BusMetricsCollector(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="handler_limit"):
        BusMetricsCollector(EventBus(), handler_limit=0)


async def test_folded_handler_names_are_counted_once_each_in_bus_label_overflow() -> None:
    """Each distinct name beyond handler_limit adds 1 to the bus overflow counter, once."""
    bus = EventBus()
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry, handler_limit=2)
    overflow = {"metric": "agentbus_bus", "label": "handler"}
    assert sample(registry, "agentbus_bus_label_overflow_total", **overflow) == 0
    ids = [await bus.subscribe(EventType.ANY, Recorder(), name=name)
           for name in ("alpha", "beta", "gamma", "delta", "gamma")]
    assert sample(registry, "agentbus_bus_label_overflow_total", **overflow) == 2
    assert sample(registry, "agentbus_bus_label_overflow_total", **overflow) == 2  # rescrape
    await bus.unsubscribe(ids[3])  # "delta" retired: still folded, not counted again
    await bus.subscribe(EventType.ANY, Recorder(), name="epsilon")
    assert sample(registry, "agentbus_bus_label_overflow_total", **overflow) == 3
    await bus.close()


async def test_bus_overflow_family_does_not_clash_with_the_handler_metrics() -> None:
    """Bus metrics and PrometheusMetricsHandler register in one registry; both overflow
    families are exposed, each once."""
    from prometheus_client import generate_latest

    from middleware.prometheus import PrometheusMetricsHandler

    registry = CollectorRegistry()
    PrometheusMetricsHandler(registry)
    register_bus_metrics(EventBus(), registry)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE agentbus_label_overflow_total counter") == 1
    assert text.count("# TYPE agentbus_bus_label_overflow_total counter") == 1


async def test_close_errors_are_exported_by_reason() -> None:
    """An aclose() that overruns close(timeout) shows in agentbus_bus_close_errors_total."""
    bus = EventBus(max_queue_size=10)
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry)
    assert sample(registry, "agentbus_bus_close_errors_total", reason="aclose_timeout") == 0
    cancelled = asyncio.Event()

    class SlowToClose:
        async def __call__(self, ev: SystemEvent) -> None:
            return None

        async def aclose(self) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    await bus.subscribe(EventType.ANY, SlowToClose())
    await bus.publish(event())
    await bus.close(timeout=0.2)
    assert cancelled.is_set()
    assert bus.stats().close_errors.get("aclose_timeout") == 1
    assert sample(registry, "agentbus_bus_close_errors_total", reason="aclose_timeout") == 1
    assert sample(registry, "agentbus_bus_events_dropped_total", reason="cancelled") == 0
