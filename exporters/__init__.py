"""exporters: the outside world — the ``/metrics`` server, OpenTelemetry span export, log sinks.

May import ``agentbus`` and ``middleware``; nothing there imports this package (except the
CLI). The OpenTelemetry SDK is used here and in the CLI only.
"""

from __future__ import annotations

from .prometheus import BusMetricsCollector, MetricsServer, register_bus_metrics

__all__ = [
    "BusMetricsCollector",
    "MetricsServer",
    "register_bus_metrics",
]
