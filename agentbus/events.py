"""Event model: :class:`EventType` and :class:`SystemEvent` (seed 003, "事件类型").

``SystemEvent`` is a pydantic v2 model carrying the seed's fields (``event_type``,
``agent_id``, ``user_id``, ``session_id``, ``timestamp``, ``metadata``,
``execution_time_ms``, ``error_message``, ``error_type``) plus what tracing and replay need
(``event_id``, ``causation_id``, ``correlation_id``, ``trace_id``, ``span_id``,
``parent_span_id``; seed 001's causation chain).

Timestamps are timezone-aware UTC. A naive ``datetime`` (as in the seed's examples,
``datetime.now()``) is read as local time and converted, so arithmetic between events never
mixes naive and aware values.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "EventType",
    "SubAgentEventType",
    "SystemEvent",
    "new_event_id",
    "new_span_id",
    "new_trace_id",
]


class EventType(Enum):
    """Lifecycle event types, verbatim from seed 003.

    ``ANY`` is only meaningful as a subscription key ("all events"); publishing an event of
    type ``ANY`` is rejected. User-defined ``Enum`` members are accepted as event types too
    (seed 003, "自定义事件").
    """

    AGENT_STARTED = "agent_started"
    AGENT_COMPLETED = "agent_completed"
    ERROR_OCCURRED = "error_occurred"

    SESSION_CREATED = "session_created"
    SESSION_EXPIRED = "session_expired"
    CHECKPOINT_SAVED = "checkpoint_saved"
    CHECKPOINT_RESTORED = "checkpoint_restored"

    MIDDLEWARE_EXECUTED = "middleware_executed"
    MIDDLEWARE_FAILED = "middleware_failed"

    CUSTOM = "custom"
    ANY = "*"

    # Members compare by identity (Enum defines no __eq__), so the C-level identity hash is
    # consistent with equality; Enum's own __hash__ is a Python function (hash(self._name_))
    # that every routes-dict / frozenset lookup on the publish path would pay (issue 6).
    __hash__ = object.__hash__


class SubAgentEventType(Enum):
    """Events of asynchronous sub-agent delegation (seeds 000 / 002: the car-hailing flow).

    Published by the parent's executor: ``agent_id`` is the parent agent, the sub-agent's id
    is in ``attributes["agentbus.subagent"]``. ``causation_id``: the parent run's id on
    SPAWNED; the sub-run's last event on COMPLETED / FAILED (see :mod:`agentbus.subagents`).
    """

    SUBAGENT_SPAWNED = "subagent_spawned"
    SUBAGENT_COMPLETED = "subagent_completed"
    SUBAGENT_FAILED = "subagent_failed"

    __hash__ = object.__hash__  # identity hash, as EventType (a C-level call; issue 6)


_rand = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_event_id() -> str:
    """A random 128-bit event id as 32 lowercase hex characters."""
    return f"{_rand.getrandbits(128):032x}"


def new_trace_id() -> str:
    """A random, valid (non-zero) W3C/OpenTelemetry trace id: 32 lowercase hex characters."""
    return f"{_rand.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """A random, valid (non-zero) W3C/OpenTelemetry span id: 16 lowercase hex characters."""
    return f"{_rand.getrandbits(64) or 1:016x}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


_HEX = frozenset("0123456789abcdef")


def _check_hex(value: str | None, length: int, field: str) -> str | None:
    if value is None:
        return None
    if len(value) != length or not set(value) <= _HEX or set(value) == {"0"}:
        raise ValueError(
            f"{field} must be {length} lowercase hex characters and not all zero, got {value!r}"
        )
    return value


class SystemEvent(BaseModel):
    """One event on the bus (seed 003 ``SystemEvent``).

    Fields:
        event_type: an :class:`EventType` member or a member of any user ``Enum``; a string
            equal to an ``EventType`` value is converted. ``EventType.ANY`` is rejected.
        agent_id: the agent that emitted the event; non-empty.
        user_id, session_id: optional; they go on spans and logs, never on metric labels.
        timestamp: when it happened, timezone-aware UTC (naive values are read as local time).
        metadata: free-form JSON-like values. Treated as content: not exported to spans or
            logs unless content capture is switched on.
        execution_time_ms: duration in milliseconds, ``>= 0`` (AGENT_COMPLETED, MIDDLEWARE_*).
        error_message, error_type: for ERROR_OCCURRED / MIDDLEWARE_FAILED.
        event_id: unique id (32 hex chars), generated when omitted.
        causation_id: ``event_id`` of the event that caused this one (seed 001).
        correlation_id: id shared by every event of one logical operation (a run and the
            sub-agent runs it starts).
        trace_id, span_id, parent_span_id: W3C trace context of the run the event belongs to
            (32 / 16 / 16 hex chars).
        attributes: structured telemetry set by instrumentation, not content: model, token
            counts, tool names and timings, middleware name (keys in
            :mod:`agentbus.semconv`). Exported to spans and metrics.

    Raises:
        pydantic.ValidationError: naming the offending field, for a bad value.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=False,
        extra="forbid",
    )

    event_type: Enum
    agent_id: str = Field(min_length=1)
    user_id: str | None = None
    session_id: str | None = None
    timestamp: datetime = Field(default_factory=_utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)
    execution_time_ms: float | None = Field(default=None, ge=0)
    error_message: str | None = None
    error_type: str | None = None
    event_id: str = Field(default_factory=new_event_id, min_length=1)
    causation_id: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event_type", mode="before")
    @classmethod
    def _coerce_event_type(cls, value: Any) -> Enum:
        if isinstance(value, str):
            try:
                value = EventType(value)
            except ValueError:
                raise ValueError(
                    f"unknown event type {value!r}; use an EventType member or an Enum member"
                ) from None
        if not isinstance(value, Enum):
            raise ValueError(
                f"event_type must be an Enum member (EventType or a custom Enum), "
                f"got {type(value).__name__}"
            )
        if value is EventType.ANY:
            raise ValueError("EventType.ANY is a subscription wildcard and cannot be published")
        return value

    @field_validator("timestamp", mode="after")
    @classmethod
    def _aware_timestamp(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.astimezone(UTC)
        return value

    @field_validator("trace_id", mode="after")
    @classmethod
    def _trace_id_hex(cls, value: str | None) -> str | None:
        return _check_hex(value, 32, "trace_id")

    @field_validator("span_id", "parent_span_id", mode="after")
    @classmethod
    def _span_id_hex(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_hex(value, 16, info.field_name or "span_id")

    @property
    def type_name(self) -> str:
        """The event type's value as a string (``"agent_started"``), for labels and logs."""
        value = self.event_type.value
        return value if isinstance(value, str) else str(self.event_type.name).lower()
