"""The bus's own health as Prometheus metrics, and the ``/metrics`` HTTP server.

* :func:`register_bus_metrics` registers a :class:`BusMetricsCollector` (a custom
  prometheus-client ``Collector``) whose ``collect()`` reads ``bus.stats()`` at scrape time
  and yields ``agentbus_bus_*`` metric families: published, delivered, dropped, rejected,
  handler errors, handler busy time, queue depth and capacity, dispatch lag, subscriptions.
* :class:`MetricsServer` serves a registry over HTTP with prometheus-client's own exposition
  (``start_http_server``): Prometheus text format by default, OpenMetrics (with exemplars)
  when the request's ``Accept`` header asks for ``application/openmetrics-text``. It binds
  ``127.0.0.1`` by default.

Several buses: one bus per registry. The metric names carry no ``bus`` label (so dashboards
and alert rules stay simple); registering a second bus in the same registry raises
``ValueError``. Give each bus its own ``CollectorRegistry`` (and its own server or port).

Bus metrics (see also the README section ``metrics``):

======================================  =========  ==========  ================================
name                                    type       labels      meaning
======================================  =========  ==========  ================================
agentbus_bus_events_published_total     counter                events accepted by ``publish``
agentbus_bus_events_delivered_total     counter    handler     (event, handler) deliveries done
agentbus_bus_events_dropped_total       counter    reason      deliveries lost (queue_full,
                                                               close_timeout)
agentbus_bus_publish_rejected_total     counter    reason      publishes refused (closed,
                                                               too_large, queue_full)
agentbus_bus_close_errors_total         counter    reason      handler shutdown calls that
                                                               failed or overran in close()
agentbus_bus_handler_errors_total       counter    handler     handler calls that raised
agentbus_bus_handler_busy_seconds_total counter    handler     wall time spent in the handler
agentbus_bus_queue_depth                gauge      handler     events waiting (+1 in flight)
agentbus_bus_queue_capacity             gauge                  mailbox capacity per handler
agentbus_bus_dispatch_lag_seconds       histogram  handler     wake-up to start of a batch
agentbus_bus_subscriptions              gauge                  live subscriptions
agentbus_bus_label_overflow_total       counter    metric,     distinct names folded into
                                                   label       ``_OTHER`` (see below)
======================================  =========  ==========  ================================

``handler`` is the subscription's name (``subscribe(..., name=)``, default the handler's
qualified name); subscriptions sharing a name are summed into one series. Counters of a
subscription that is removed are kept (added to its name's totals), so counters never go
down. At most ``handler_limit`` distinct names get their own series; the rest are summed
under ``_OTHER``, and each *distinct* name folded so (counted once, the first scrape that
folds it) adds 1 to ``agentbus_bus_label_overflow_total{metric="agentbus_bus",
label="handler"}`` — monotonic, whatever the scrape rate. It is a family of its own, not a
series of ``agentbus_label_overflow_total``: that family belongs to
``middleware.prometheus.PrometheusMetricsHandler``, and prometheus-client refuses a second
collector exposing a family name already registered in the same registry (and an exposition
must not hold one family twice). Sum both for every label cap:
``sum by (metric, label) ({__name__=~"agentbus_(bus_)?label_overflow_total"})``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agentbus.bus import LAG_BUCKETS_SECONDS, EventBus, SubscriptionStats

__all__ = [
    "BUS_LABEL_OVERFLOW_TOTAL",
    "DEFAULT_PORT",
    "BusMetricsCollector",
    "MetricsServer",
    "register_bus_metrics",
]

DEFAULT_PORT: Final = 9464
"""The default ``/metrics`` port (the OpenTelemetry Prometheus exporter's default)."""

OTHER: Final = "_OTHER"
BUS_LABEL_OVERFLOW_TOTAL: Final = "agentbus_bus_label_overflow_total"
"""Distinct handler names folded into ``_OTHER`` (labels ``metric="agentbus_bus"``,
``label="handler"``)."""
_BUS_METRIC: Final = "agentbus_bus"
_DROP_REASONS: Final = ("queue_full", "close_timeout", "cancelled")
_CLOSE_ERROR_REASONS: Final = ("begin_close", "aclose", "aclose_timeout")
_REJECT_REASONS: Final = ("closed", "too_large", "queue_full")
_LE: Final = (*(repr(float(b)) for b in LAG_BUCKETS_SECONDS), "+Inf")


@dataclass(slots=True)
class _Totals:
    """Counters of all subscriptions sharing one ``handler`` label value."""

    delivered: int = 0
    errors: int = 0
    busy_seconds: float = 0.0
    queue_depth: int = 0
    lag_sum: float = 0.0
    lag_buckets: list[int] = field(default_factory=lambda: [0] * len(_LE))

    def add(self, s: SubscriptionStats, *, live: bool) -> None:
        self.delivered += s.delivered
        self.errors += s.errors
        self.busy_seconds += s.busy_seconds
        if live:
            self.queue_depth += s.queue_depth
        self.lag_sum += s.lag_sum
        for i, n in enumerate(_per_bucket(s)):
            self.lag_buckets[i] += n

    def merge(self, other: _Totals) -> None:
        self.delivered += other.delivered
        self.errors += other.errors
        self.busy_seconds += other.busy_seconds
        self.queue_depth += other.queue_depth
        self.lag_sum += other.lag_sum
        for i, n in enumerate(other.lag_buckets):
            self.lag_buckets[i] += n


def _per_bucket(s: SubscriptionStats) -> list[int]:
    """Per-bucket (non-cumulative) lag counts of ``s``, whichever form the bus reports.

    ``lag_buckets`` has one entry per bound plus ``+Inf``. The bus counts per bucket; if a
    future bus reports cumulative counts (last entry == ``lag_count`` and the entries do not
    sum to it), they are differenced here, so the exposition stays right either way.
    """
    raw = list(s.lag_buckets)
    if len(raw) != len(_LE):
        return [0] * (len(_LE) - 1) + [s.lag_count]
    if sum(raw) != s.lag_count and raw and raw[-1] == s.lag_count:
        return [raw[0]] + [raw[i] - raw[i - 1] for i in range(1, len(raw))]
    return raw


class BusMetricsCollector(Collector):
    """A prometheus-client ``Collector`` exporting one bus's ``stats()`` at scrape time.

    Args:
        bus: the :class:`~agentbus.EventBus` to read.
        handler_limit: distinct ``handler`` label values before the rest are summed under
            ``_OTHER``; ``>= 1``. Each distinct name folded into ``_OTHER`` adds 1 to
            ``agentbus_bus_label_overflow_total{metric="agentbus_bus",label="handler"}``
            (once per name, however many scrapes or subscriptions fold it); the folded
            names are remembered (one string each) so the counter never goes down.

    Raises:
        ValueError: ``handler_limit < 1``.

    Threading: ``collect()`` runs on the scraping thread (the metrics server's); it only
    reads the bus (``EventBus.stats()`` is safe from any thread) and guards its own state
    with a lock.
    """

    def __init__(self, bus: EventBus, *, handler_limit: int = 100) -> None:
        if not isinstance(bus, EventBus):
            raise ValueError(f"bus must be an agentbus EventBus, got {type(bus).__name__}")
        if isinstance(handler_limit, bool) or not isinstance(handler_limit, int) \
                or handler_limit < 1:
            raise ValueError(f"handler_limit must be an int >= 1, got {handler_limit!r}")
        self.bus = bus
        self.handler_limit = handler_limit
        self._lock = threading.Lock()
        self._last: dict[str, SubscriptionStats] = {}
        self._retired: dict[str, _Totals] = {}
        self._handlers: set[str] = set()
        self._folded: set[str] = set()

    def _label(self, name: str) -> str:
        if name in self._handlers:
            return name
        if len(self._handlers) < self.handler_limit:
            self._handlers.add(name)
            return name
        self._folded.add(name)
        return OTHER

    def _snapshot(self) -> tuple[int, int, dict[str, int], dict[str, int], int,
                                 dict[str, _Totals], int, dict[str, int]]:
        stats = self.bus.stats()
        with self._lock:
            current = {s.id: s for s in stats.subscriptions}
            for sub_id, old in self._last.items():
                if sub_id not in current:  # unsubscribed: keep its counts
                    self._retired.setdefault(self._label(old.name), _Totals()).add(
                        old, live=False
                    )
            self._last = current
            by_handler: dict[str, _Totals] = {}
            for label, totals in self._retired.items():
                by_handler.setdefault(label, _Totals()).merge(totals)
            for s in current.values():
                by_handler.setdefault(self._label(s.name), _Totals()).add(s, live=True)
            folded = len(self._folded)
        return (stats.published, stats.capacity, stats.dropped, stats.rejected,
                len(stats.subscriptions), by_handler, folded, stats.close_errors)

    def describe(self) -> Iterable[Metric]:
        """The metric families (without samples), so the registry can reject duplicates."""
        return list(self._families(0, 0, {}, {}, 0, {}, 0, {}))

    def collect(self) -> Iterable[Metric]:
        """Yield the ``agentbus_bus_*`` families from a fresh ``bus.stats()``."""
        return list(self._families(*self._snapshot()))

    @staticmethod
    def _families(
        published: int,
        capacity: int,
        dropped: dict[str, int],
        rejected: dict[str, int],
        subscriptions: int,
        by_handler: dict[str, _Totals],
        folded: int,
        close_errors: dict[str, int],
    ) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "agentbus_bus_events_published_total",
            "Events accepted by EventBus.publish.",
            value=published,
        )
        delivered = CounterMetricFamily(
            "agentbus_bus_events_delivered_total",
            "Events delivered to a handler (calls completed), by handler.",
            labels=["handler"],
        )
        errors = CounterMetricFamily(
            "agentbus_bus_handler_errors_total",
            "Handler calls that raised an exception, by handler.",
            labels=["handler"],
        )
        busy = CounterMetricFamily(
            "agentbus_bus_handler_busy_seconds_total",
            "Wall time spent inside handlers in seconds, by handler.",
            labels=["handler"],
            unit="seconds",
        )
        depth = GaugeMetricFamily(
            "agentbus_bus_queue_depth",
            "Events waiting in a handler's mailbox (plus the one in flight), by handler.",
            labels=["handler"],
        )
        lag = HistogramMetricFamily(
            "agentbus_bus_dispatch_lag_seconds",
            "Seconds from waking an idle handler worker to it starting a batch, by handler.",
            labels=["handler"],
            unit="seconds",
        )
        for name in sorted(by_handler):
            t = by_handler[name]
            delivered.add_metric([name], t.delivered)
            errors.add_metric([name], t.errors)
            busy.add_metric([name], t.busy_seconds)
            depth.add_metric([name], t.queue_depth)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for le, n in zip(_LE, t.lag_buckets, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            lag.add_metric([name], buckets, t.lag_sum)
        yield delivered
        drops = CounterMetricFamily(
            "agentbus_bus_events_dropped_total",
            "Event deliveries lost, by reason (queue_full, close_timeout, cancelled).",
            labels=["reason"],
        )
        for reason in sorted(set(_DROP_REASONS) | set(dropped)):
            drops.add_metric([reason], dropped.get(reason, 0))
        yield drops
        rejects = CounterMetricFamily(
            "agentbus_bus_publish_rejected_total",
            "Publishes refused with an error, by reason (closed, too_large, queue_full).",
            labels=["reason"],
        )
        for reason in sorted(set(_REJECT_REASONS) | set(rejected)):
            rejects.add_metric([reason], rejected.get(reason, 0))
        yield rejects
        closing = CounterMetricFamily(
            "agentbus_bus_close_errors_total",
            "Handler shutdown calls of EventBus.close() that raised or overran its timeout, "
            "by reason (begin_close, aclose, aclose_timeout).",
            labels=["reason"],
        )
        for reason in sorted(set(_CLOSE_ERROR_REASONS) | set(close_errors)):
            closing.add_metric([reason], close_errors.get(reason, 0))
        yield closing
        yield errors
        yield busy
        yield depth
        yield GaugeMetricFamily(
            "agentbus_bus_queue_capacity",
            "Capacity of each handler's mailbox in events (max_queue_size).",
            value=capacity,
        )
        yield lag
        yield GaugeMetricFamily(
            "agentbus_bus_subscriptions", "Live subscriptions on the bus.", value=subscriptions
        )
        overflow = CounterMetricFamily(
            BUS_LABEL_OVERFLOW_TOTAL,
            "Distinct handler names summed under _OTHER because the bus metrics' handler "
            "label cap (handler_limit) was reached.",
            labels=["metric", "label"],
        )
        overflow.add_metric([_BUS_METRIC, "handler"], folded)
        yield overflow


def register_bus_metrics(
    bus: EventBus, registry: CollectorRegistry, *, handler_limit: int = 100
) -> BusMetricsCollector:
    """Register a :class:`BusMetricsCollector` for ``bus`` in ``registry``.

    Args:
        bus: the bus whose health to export.
        registry: the registry to register in (one bus per registry).
        handler_limit: see :class:`BusMetricsCollector`.

    Returns:
        The collector (``registry.unregister(collector)`` removes it).

    Raises:
        ValueError: ``registry`` already exports ``agentbus_bus_*`` metrics (another bus is
            registered there), or a bad argument.
    """
    collector = BusMetricsCollector(bus, handler_limit=handler_limit)
    try:
        registry.register(collector)
    except ValueError as exc:
        raise ValueError(
            f"cannot register bus metrics: {exc}. One bus per CollectorRegistry: give each "
            f"EventBus its own registry"
        ) from exc
    return collector


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics`` from a daemon thread.

    Uses prometheus-client's ``start_http_server`` (a threading WSGI server): the response is
    the Prometheus text format, or OpenMetrics with exemplars when the request's ``Accept``
    header contains ``application/openmetrics-text``. Every path serves the metrics
    (prometheus-client's behaviour); ``/metrics`` is the documented one.

    Args:
        registry: what to serve.
        host: address to bind; ``"127.0.0.1"`` by default (loopback only).
        port: TCP port; ``0`` picks a free one (read it from :attr:`port` after ``start``).

    Raises:
        ValueError: ``port`` not in ``0..65535``.

    Threading: ``start()`` / ``stop()`` are synchronous and may be called from any thread
    (including an event loop's: they return quickly). Also a context manager.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        self.registry = registry
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def address(self) -> tuple[str, int] | None:
        """The ``(host, port)`` the listening socket is bound to, or ``None`` if stopped."""
        if self._server is None:
            return None
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` (the actual port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Bind and start serving in a daemon thread.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (port in use, bad host).
        """
        if self._server is not None:
            raise RuntimeError(f"MetricsServer already serving at {self.url}")
        server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self._server = server
        self._thread = thread
        self.port = int(server.server_port)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop serving and close the socket; waits up to ``timeout`` seconds for the thread.
        Does nothing if not running."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
