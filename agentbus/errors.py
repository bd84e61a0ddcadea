"""Exceptions raised by the engine. All derive from :class:`AgentBusError`."""

from __future__ import annotations

__all__ = [
    "AgentBusError",
    "BusClosedError",
    "EventTooLargeError",
    "QueueFullError",
    "WrongLoopError",
]


class AgentBusError(Exception):
    """Base class of agentbus errors."""


class BusClosedError(AgentBusError, RuntimeError):
    """``publish`` / ``subscribe`` after ``EventBus.close()`` started."""


class QueueFullError(AgentBusError, RuntimeError):
    """A handler's queue is full and the caller cannot wait.

    Raised by ``publish_sync`` on the bus's own event-loop thread under the ``block`` policy
    (waiting there would deadlock the loop), and by ``publish(..., wait=False)``.
    """


class EventTooLargeError(AgentBusError, ValueError):
    """An event's JSON form exceeds ``EventBus(max_event_bytes=...)`` (seed 004's size guard).

    The event is rejected, never truncated or replaced, and counted as rejected.
    """


class WrongLoopError(AgentBusError, RuntimeError):
    """The bus was used from an event loop other than the one it is bound to."""
