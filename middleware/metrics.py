"""MetricsCollector: in-process run-duration statistics per agent (seed 003 "指标收集处理器").

For Prometheus exposition use :mod:`middleware.prometheus`; this collector answers
"what are p50/p95/p99 of my agents right now" from inside the process.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from agentbus import EventType, SystemEvent

from ._stats import summarize

__all__ = ["MetricsCollector"]


class _Series:
    __slots__ = ("count", "max", "min", "recent", "sum")

    def __init__(self, max_samples: int | None) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.recent: deque[float] = deque(maxlen=max_samples)

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.recent.append(value)


class MetricsCollector:
    """Collect ``execution_time_ms`` of completed runs and summarise them per agent
    (seed 003 ``MetricsCollector``).

    Subscribe ``collector.collect_metrics`` (or the collector itself) to
    ``EventType.AGENT_COMPLETED`` or ``EventType.ANY``; other event types and events
    without a duration are ignored. The seed's version appended durations to a list and
    then did ``+= 1`` on a list (a ``TypeError``); here the count is kept properly.

    Args:
        max_samples: recent durations kept per agent for the percentiles (default 10 000;
            ``None`` keeps all). ``count``/``avg``/``min``/``max`` are exact over every run.

    Attributes:
        metrics: ``{"<agent_id>_duration": [ms, ...]}`` — the recent durations (seed
            attribute; a read-only view built on access).

    Event-loop thread only (plain attribute updates, no locking).
    """

    def __init__(self, *, max_samples: int | None = 10_000) -> None:
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {max_samples!r}")
        self.max_samples = max_samples
        self.name = type(self).__qualname__
        self._series: dict[str, _Series] = {}

    async def collect_metrics(self, event: SystemEvent) -> None:
        """Record the duration of an ``AGENT_COMPLETED`` event (seed 003)."""
        if event.event_type is not EventType.AGENT_COMPLETED or event.execution_time_ms is None:
            return
        series = self._series.get(event.agent_id)
        if series is None:
            series = self._series[event.agent_id] = _Series(self.max_samples)
        series.add(float(event.execution_time_ms))

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`collect_metrics`."""
        await self.collect_metrics(event)

    @property
    def metrics(self) -> dict[str, list[float]]:
        """``{"<agent_id>_duration": [recent durations in ms]}`` (seed attribute)."""
        return {f"{agent}_duration": list(s.recent) for agent, s in self._series.items()}

    def get_stats(self) -> dict[str, dict[str, Any]]:
        """Per-agent duration summary, keyed ``"<agent_id>_duration"`` as in the seed.

        Returns:
            ``{"<agent_id>_duration": {"avg", "min", "max", "count", "p50", "p95",
            "p99"}}``, milliseconds (``count`` is an int). ``avg``/``min``/``max``/``count``
            cover every run; the percentiles the last ``max_samples`` (linear
            interpolation).
        """
        stats: dict[str, dict[str, Any]] = {}
        for agent, s in self._series.items():
            summary: dict[str, Any] = summarize(list(s.recent))
            summary.update(avg=s.sum / s.count, min=s.min, max=s.max, count=s.count)
            stats[f"{agent}_duration"] = summary
        return stats

    def get_agent_stats(self, agent_id: str) -> dict[str, Any] | None:
        """The :meth:`get_stats` entry of one agent, or ``None`` if it has no runs."""
        return self.get_stats().get(f"{agent_id}_duration")

    def reset(self) -> None:
        """Forget everything collected."""
        self._series.clear()
