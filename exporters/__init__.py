"""exporters: the outside world — the ``/metrics`` server, OpenTelemetry span export, log sinks.

May import ``agentbus`` and ``middleware``; nothing there imports this package (except the
CLI). The OpenTelemetry SDK is used here and in the CLI only.
"""

from __future__ import annotations

from .logs import configure_logging
from .otel import (
    JsonLinesSpanExporter,
    OTelSpanHandler,
    TracingSetup,
    configure_tracing,
)
from .prometheus import BusMetricsCollector, MetricsServer, register_bus_metrics

__all__ = [
    "BusMetricsCollector",
    "JsonLinesSpanExporter",
    "MetricsServer",
    "OTelSpanHandler",
    "TracingSetup",
    "configure_logging",
    "configure_tracing",
    "register_bus_metrics",
]
