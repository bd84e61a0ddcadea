"""EventStatistics: counts per event type and timing per agent (seed 003 "事件统计")."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentbus import SystemEvent

from ._stats import summarize

__all__ = ["EventStatistics"]


class EventStatistics:
    """Count every event by type and summarise ``execution_time_ms`` per agent
    (seed 003 ``EventStatistics``).

    Subscribe ``stats.record`` (or ``stats`` itself) to ``EventType.ANY``. As in the seed,
    every event carrying a duration counts towards its agent's timing (run events and
    middleware events alike); unlike the seed, a duration of ``0`` ms is counted too.

    Attributes:
        counter: ``Counter`` of event type value → events (seed attribute).
        timing: ``{agent_id: [ms, ...]}`` (seed attribute).

    Event-loop thread only.
    """

    def __init__(self) -> None:
        self.counter: Counter[str] = Counter()
        self.timing: dict[str, list[float]] = {}
        self.name = type(self).__qualname__

    async def record(self, event: SystemEvent) -> None:
        """Count the event; record its duration if it has one (seed 003)."""
        self.counter[event.type_name] += 1
        if event.execution_time_ms is not None:
            self.timing.setdefault(event.agent_id, []).append(event.execution_time_ms)

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`record`."""
        await self.record(event)

    def get_summary(self) -> dict[str, Any]:
        """Statistics summary (seed 003).

        Returns:
            ``{"total_events": int, "by_type": {type: count}, "timing": {agent_id: {"avg",
            "min", "max", "count", "p50", "p95", "p99"}}}``; durations in milliseconds.
        """
        return {
            "total_events": sum(self.counter.values()),
            "by_type": dict(self.counter),
            "timing": {agent: summarize(times) for agent, times in self.timing.items() if times},
        }
