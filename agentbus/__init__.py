"""agentbus: the engine — events, the in-memory bus, the executor, sessions, checkpoints.

Public API (seed 003, ``from agentbus import ...``)::

    EventBus, EventType, SystemEvent, AgentExecutor, AgentConfig

Nothing here imports ``middleware`` or ``exporters`` (except the CLI, ``agentbus.cli``).
"""

from __future__ import annotations

from ._dispatch import Handler, as_async_handler, handler_name
from .bus import BusStats, EventBus, OverflowPolicy, SubscriptionStats
from .errors import (
    AgentBusError,
    BusClosedError,
    EventTooLargeError,
    QueueFullError,
    WrongLoopError,
)
from .events import (
    EventType,
    SubAgentEventType,
    SystemEvent,
    new_event_id,
    new_span_id,
    new_trace_id,
)
from .executor import (
    AgentConfig,
    AgentContext,
    AgentExecutor,
    AgentOutput,
    AgentRunner,
    ExecutionResult,
    Middleware,
    RunContext,
    TokenUsage,
    ToolCall,
    current_run,
    register_model,
)
from .sessions import Checkpoint, CheckpointManager, Session, SessionManager

__all__ = [
    "AgentBusError",
    "AgentConfig",
    "AgentContext",
    "AgentExecutor",
    "AgentOutput",
    "AgentRunner",
    "BusClosedError",
    "BusStats",
    "Checkpoint",
    "CheckpointManager",
    "EventBus",
    "EventTooLargeError",
    "EventType",
    "ExecutionResult",
    "Handler",
    "Middleware",
    "OverflowPolicy",
    "QueueFullError",
    "RunContext",
    "Session",
    "SessionManager",
    "SubAgentEventType",
    "SubscriptionStats",
    "SystemEvent",
    "TokenUsage",
    "ToolCall",
    "WrongLoopError",
    "as_async_handler",
    "current_run",
    "handler_name",
    "new_event_id",
    "new_span_id",
    "new_trace_id",
    "register_model",
]

__version__ = "0.1.0"
