"""EventTracer: an in-memory trace log of events for debugging (seed 003 "事件追踪").

For OpenTelemetry spans use ``exporters.otel.OTelSpanHandler``; this keeps a plain, queryable
list of what happened, per session and per trace.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from agentbus import EventType, SystemEvent

__all__ = ["EventTracer"]


class EventTracer:
    """Record a compact dict per event (seed 003 ``EventTracer``).

    Each entry: ``type``, ``agent``, ``user``, ``session_id``, ``timestamp`` (ISO 8601),
    ``metadata`` (a copy), ``event_id``, ``trace_id``, ``span_id``, ``causation_id``,
    ``execution_time_ms``, and for ``ERROR_OCCURRED`` ``error: {"message", "type"}``. The
    seed filtered sessions on ``"session_id"`` but never stored it; here it is stored.

    Args:
        max_entries: keep at most this many recent entries (default 10 000; ``None``:
            unbounded). Older entries are evicted and counted in ``evicted``.

    Event-loop thread only.
    """

    def __init__(self, max_entries: int | None = 10_000) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None, got {max_entries!r}")
        self.max_entries = max_entries
        self.event_log: deque[dict[str, Any]] = deque()
        self.evicted = 0
        self.name = type(self).__qualname__

    async def trace(self, event: SystemEvent) -> None:
        """Append the event's trace entry (seed 003)."""
        entry: dict[str, Any] = {
            "type": event.type_name,
            "agent": event.agent_id,
            "user": event.user_id,
            "session_id": event.session_id,
            "timestamp": event.timestamp.isoformat(),
            "metadata": dict(event.metadata),
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "span_id": event.span_id,
            "causation_id": event.causation_id,
            "execution_time_ms": event.execution_time_ms,
        }
        if event.event_type is EventType.ERROR_OCCURRED:
            entry["error"] = {"message": event.error_message, "type": event.error_type}
        self.event_log.append(entry)
        if self.max_entries is not None and len(self.event_log) > self.max_entries:
            self.event_log.popleft()
            self.evicted += 1

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`trace`."""
        await self.trace(event)

    def get_trace_log(self) -> list[dict[str, Any]]:
        """Every kept entry, oldest first (seed 003)."""
        return list(self.event_log)

    def get_events_for_session(self, session_id: str) -> list[dict[str, Any]]:
        """Entries of one session, oldest first (seed 003)."""
        return [e for e in self.event_log if e["session_id"] == session_id]

    def get_events_for_trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Entries of one trace (one run and its sub-agents), oldest first."""
        return [e for e in self.event_log if e["trace_id"] == trace_id]

    def clear(self) -> None:
        """Forget every entry."""
        self.event_log.clear()
