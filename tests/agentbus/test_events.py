"""Tests of the event model: :class:`agentbus.EventType` and :class:`agentbus.SystemEvent`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

import pytest
from pydantic import ValidationError

from agentbus import EventType, SubAgentEventType, SystemEvent
from agentbus.events import new_event_id, new_span_id, new_trace_id


class OrderEvent(Enum):
    """A user-defined event type (seed 003 "自定义事件")."""

    ORDER_PLACED = "order_placed"
    ORDER_SHIPPED = 2


def _error_locs(exc: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(err["loc"]) for err in exc.errors()]


def test_seed_members_and_values() -> None:
    """EventType has the seed's members with the seed's string values, plus ANY."""
    expected = {
        "AGENT_STARTED": "agent_started",
        "AGENT_COMPLETED": "agent_completed",
        "ERROR_OCCURRED": "error_occurred",
        "SESSION_CREATED": "session_created",
        "SESSION_EXPIRED": "session_expired",
        "CHECKPOINT_SAVED": "checkpoint_saved",
        "CHECKPOINT_RESTORED": "checkpoint_restored",
        "MIDDLEWARE_EXECUTED": "middleware_executed",
        "MIDDLEWARE_FAILED": "middleware_failed",
        "CUSTOM": "custom",
    }
    for name, value in expected.items():
        assert EventType[name].value == value
    assert EventType.ANY in EventType


def test_seed_example_event_fields() -> None:
    """The seed's SystemEvent example builds and keeps every field it sets."""
    event = SystemEvent(
        event_type=EventType.AGENT_STARTED,
        agent_id="chatbot",
        user_id="user_123",
        session_id="sess_abc",
        timestamp=datetime.now(),
        metadata={"model": "gpt-3.5-turbo", "task": "Hello"},
        execution_time_ms=1234,
        error_message="Error details",
        error_type="ValidationError",
    )
    assert event.event_type is EventType.AGENT_STARTED
    assert event.agent_id == "chatbot"
    assert event.user_id == "user_123"
    assert event.session_id == "sess_abc"
    assert event.metadata == {"model": "gpt-3.5-turbo", "task": "Hello"}
    assert event.execution_time_ms == 1234
    assert event.error_message == "Error details"
    assert event.error_type == "ValidationError"
    assert event.type_name == "agent_started"


def test_defaults() -> None:
    """Optional fields default to None / empty, and ids are generated and unique."""
    a = SystemEvent(event_type=EventType.CUSTOM, agent_id="a")
    b = SystemEvent(event_type=EventType.CUSTOM, agent_id="a")
    for name in (
        "user_id", "session_id", "execution_time_ms", "error_message", "error_type",
        "causation_id", "correlation_id", "trace_id", "span_id", "parent_span_id",
    ):
        assert getattr(a, name) is None, name
    assert a.metadata == {} and a.attributes == {}
    assert a.metadata is not b.metadata
    assert len(a.event_id) == 32 and a.event_id != b.event_id


def test_default_timestamp_is_aware_utc() -> None:
    """A defaulted timestamp is timezone-aware UTC and close to now."""
    before = datetime.now(UTC)
    event = SystemEvent(event_type=EventType.CUSTOM, agent_id="a")
    after = datetime.now(UTC)
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset() == timedelta(0)
    assert before <= event.timestamp <= after


def test_naive_timestamp_read_as_local_time() -> None:
    """A naive timestamp (the seed's datetime.now()) becomes the same instant, aware."""
    naive = datetime(2024, 5, 1, 12, 30, 0)
    event = SystemEvent(event_type=EventType.CUSTOM, agent_id="a", timestamp=naive)
    assert event.timestamp.tzinfo is not None
    assert event.timestamp == naive.astimezone()


def test_aware_timestamp_kept() -> None:
    """An aware timestamp in another zone keeps its instant."""
    ts = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=8)))
    event = SystemEvent(event_type=EventType.CUSTOM, agent_id="a", timestamp=ts)
    assert event.timestamp == ts
    assert event.timestamp - datetime(2024, 5, 1, 4, 0, tzinfo=UTC) == timedelta(0)


def test_custom_enum_event_type() -> None:
    """Members of a user Enum are accepted and kept as-is; type_name gives a string."""
    placed = SystemEvent(event_type=OrderEvent.ORDER_PLACED, agent_id="shop")
    shipped = SystemEvent(event_type=OrderEvent.ORDER_SHIPPED, agent_id="shop")
    assert placed.event_type is OrderEvent.ORDER_PLACED
    assert placed.type_name == "order_placed"
    assert shipped.type_name == "order_shipped"
    sub = SystemEvent(event_type=SubAgentEventType.SUBAGENT_SPAWNED, agent_id="main")
    assert sub.type_name == "subagent_spawned"


def test_string_event_type_coerced() -> None:
    """A string equal to an EventType value becomes that member."""
    event = SystemEvent(event_type="agent_completed", agent_id="a")  # type: ignore[arg-type]
    assert event.event_type is EventType.AGENT_COMPLETED


def test_unknown_string_event_type_rejected() -> None:
    """An unknown event-type string is a ValidationError naming event_type and the value."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type="agent_exploded", agent_id="a")  # type: ignore[arg-type]
    assert _error_locs(info.value) == [("event_type",)]
    assert "agent_exploded" in str(info.value)


def test_any_rejected() -> None:
    """EventType.ANY cannot be an event's type (it is a subscription wildcard)."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.ANY, agent_id="a")
    assert _error_locs(info.value) == [("event_type",)]
    assert "ANY" in str(info.value)
    with pytest.raises(ValidationError):
        SystemEvent(event_type="*", agent_id="a")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [3, 1.5, None, object()])
def test_non_enum_event_type_rejected(bad: Any) -> None:
    """A non-Enum, non-string event type is a ValidationError naming event_type."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=bad, agent_id="a")
    assert ("event_type",) in _error_locs(info.value)


def test_empty_agent_id_rejected() -> None:
    """An empty agent_id is a ValidationError naming agent_id."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.CUSTOM, agent_id="")
    assert _error_locs(info.value) == [("agent_id",)]


def test_missing_agent_id_rejected() -> None:
    """A missing agent_id is a ValidationError naming agent_id."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.CUSTOM)  # type: ignore[call-arg]
    assert _error_locs(info.value) == [("agent_id",)]


def test_negative_execution_time_rejected() -> None:
    """A negative execution_time_ms is a ValidationError naming the field."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.AGENT_COMPLETED, agent_id="a", execution_time_ms=-1)
    assert _error_locs(info.value) == [("execution_time_ms",)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_id", "abc"),
        ("trace_id", "0" * 32),
        ("trace_id", "G" * 32),
        ("trace_id", "A" * 32),
        ("span_id", "0" * 16),
        ("span_id", "x" * 16),
        ("parent_span_id", "1" * 15),
    ],
)
def test_bad_trace_ids_rejected(field: str, value: str) -> None:
    """Malformed W3C ids are a ValidationError naming the field."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.CUSTOM, agent_id="a", **{field: value})
    assert _error_locs(info.value) == [(field,)]
    assert field in str(info.value)


def test_valid_trace_ids_accepted() -> None:
    """Generated ids have the W3C shape and are accepted."""
    trace_id, span_id, parent = new_trace_id(), new_span_id(), new_span_id()
    event = SystemEvent(
        event_type=EventType.CUSTOM, agent_id="a",
        trace_id=trace_id, span_id=span_id, parent_span_id=parent,
    )
    assert (event.trace_id, event.span_id, event.parent_span_id) == (trace_id, span_id, parent)
    assert len(trace_id) == 32 and len(span_id) == 16
    assert int(trace_id, 16) != 0 and int(span_id, 16) != 0
    assert len(new_event_id()) == 32


def test_unknown_extra_field_rejected() -> None:
    """An unknown field is a ValidationError naming it (no silent typos)."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.CUSTOM, agent_id="a", sesion_id="s")  # type: ignore[call-arg]
    assert _error_locs(info.value) == [("sesion_id",)]


def test_json_round_trip() -> None:
    """An event with a seed EventType survives model_dump_json / model_validate_json."""
    event = SystemEvent(
        event_type=EventType.AGENT_COMPLETED, agent_id="a", execution_time_ms=1.5,
        metadata={"k": [1, 2]}, trace_id=new_trace_id(), span_id=new_span_id(),
    )
    back = SystemEvent.model_validate_json(event.model_dump_json())
    assert back == event
