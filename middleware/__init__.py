"""middleware: composable event handlers for the agentbus ``EventBus`` (seed 003's catalogue).

A handler is any ``async (event) -> None`` callable (:data:`agentbus.Handler`). Wrappers take
the handler they wrap, so chains read left to right::

    from middleware import AlertingHandler, RetryHandler, chain, when

    retry = RetryHandler(max_attempts=3, delay=0.5)
    handler = chain(when(lambda e: e.agent_id == "billing"), retry.wrap, alerting.on_error)
    await bus.subscribe(EventType.ANY, handler)

Shutdown is two-phase, as ``EventBus.close()`` does it: every wrapper forwards the sync
``begin_close()`` inward (called before the bus drains: retries stop waiting for back-off and
are dead-lettered) and then the idempotent ``aclose()`` (after draining: batches flushed,
concurrent work awaited).
"""

from __future__ import annotations

from ._clock import Clock, SystemClock
from .aggregation import EventAggregator
from .alerting import (
    AlertingHandler,
    AlertService,
    CallableAlertService,
    LogAlertService,
    WebhookAlertService,
)
from .batching import BatchEventHandler, FailedBatch
from .compose import Wrapper, chain, limit, transform, when
from .concurrency import AsyncEventHandler
from .filtering import FilteredHandler
from .logging import LoggingHandler
from .metrics import MetricsCollector
from .priority import Priority, PriorityEventBus
from .prometheus import LabelGuard, PrometheusMetricsHandler
from .redaction import RedactionPattern, Redactor, default_redactor
from .retry import DeadLetter, RetryHandler
from .routing import EventRouter
from .sourcing import EventSourcingHandler, EventStore, InMemoryEventStore
from .stats import EventStatistics
from .tracer import EventTracer
from .transform import EventTransformer

__all__ = [
    "AlertService",
    "AlertingHandler",
    "AsyncEventHandler",
    "BatchEventHandler",
    "CallableAlertService",
    "Clock",
    "DeadLetter",
    "EventAggregator",
    "EventRouter",
    "EventSourcingHandler",
    "EventStatistics",
    "EventStore",
    "EventTracer",
    "EventTransformer",
    "FailedBatch",
    "FilteredHandler",
    "InMemoryEventStore",
    "LabelGuard",
    "LogAlertService",
    "LoggingHandler",
    "MetricsCollector",
    "Priority",
    "PriorityEventBus",
    "PrometheusMetricsHandler",
    "RedactionPattern",
    "Redactor",
    "RetryHandler",
    "SystemClock",
    "WebhookAlertService",
    "Wrapper",
    "chain",
    "default_redactor",
    "limit",
    "transform",
    "when",
]
