"""``RunContext.emit`` validates what the user passes (event type, fields, metadata,
attributes) like ``SystemEvent(...)``; nothing invalid reaches the bus."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from pydantic import ValidationError

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, RunContext, SystemEvent


class Custom(enum.Enum):
    """A user-defined event type (seed 003 custom events)."""

    PLAN_READY = "plan_ready"


async def emit_in_run(**emit_kwargs: Any) -> tuple[list[BaseException], list[SystemEvent]]:
    """Run an agent that calls ``run.emit(**emit_kwargs)``; return what emit raised and the
    events every ANY handler received."""
    bus = EventBus()
    seen: list[SystemEvent] = []
    names: list[str] = []

    async def record(event: SystemEvent) -> None:
        names.append(event.type_name)  # breaks if event_type is not an Enum
        seen.append(event)

    await bus.subscribe(EventType.ANY, record)
    raised: list[BaseException] = []

    async def agent(run: RunContext) -> str:
        try:
            await run.emit(**emit_kwargs)
        except Exception as exc:
            raised.append(exc)
        return "ok"

    ex = AgentExecutor(
        "emitter", AgentConfig(name="emitter", description="d", model="m"), agent,
        event_bus=bus,
    )
    result = await ex.execute("hi")
    await bus.close()
    assert result.success
    assert bus.stats().handler_errors == 0
    assert len(names) == len(seen)
    return raised, seen


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_type": EventType.CUSTOM, "execution_time_ms": -5}, "execution_time_ms"),
        ({"event_type": EventType.CUSTOM, "trace_id": "nothex"}, "trace_id"),
        ({"event_type": EventType.CUSTOM, "span_id": "xyz"}, "span_id"),
        ({"event_type": "not-an-enum"}, "event_type"),
        ({"event_type": 42}, "event_type"),
        ({"event_type": EventType.ANY}, "event_type"),
        ({"event_type": EventType.CUSTOM, "bogus_field": 1}, "bogus_field"),
        ({"event_type": EventType.CUSTOM, "metadata": ["not", "a", "dict"]}, "metadata"),
        ({"event_type": EventType.CUSTOM, "attributes": "text"}, "attributes"),
        ({"event_type": EventType.CUSTOM, "agent_id": ""}, "agent_id"),
    ],
)
async def test_emit_rejects_bad_input_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    """A bad event type, field value or unknown field raises ValidationError naming the
    field, and no such event is published."""
    raised, seen = await emit_in_run(**kwargs)
    assert len(raised) == 1
    err = raised[0]
    assert isinstance(err, ValidationError)
    assert field in {str(loc) for e in err.errors() for loc in e["loc"]}
    assert [e.event_type for e in seen] == [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED]


async def test_emit_accepts_valid_input_and_converts_string_types() -> None:
    """Valid fields are kept, a string naming an EventType value becomes the member, a
    custom Enum member is accepted, and the run's ids are filled in."""
    raised, seen = await emit_in_run(
        event_type="custom", execution_time_ms=2.5, metadata={"k": 1},
        attributes={"agentbus.x": 1},
    )
    assert raised == []
    custom = [e for e in seen if e.event_type is EventType.CUSTOM]
    assert len(custom) == 1
    assert custom[0].execution_time_ms == 2.5
    assert custom[0].metadata == {"k": 1} and custom[0].attributes == {"agentbus.x": 1}
    started = seen[0]
    assert custom[0].trace_id == started.trace_id and custom[0].causation_id == started.event_id

    raised, seen = await emit_in_run(event_type=Custom.PLAN_READY)
    assert raised == []
    assert [e.type_name for e in seen][1] == "plan_ready"
