"""SystemEvent id validation: errors name the field that is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentbus import EventType, SystemEvent, new_span_id


def test_bad_parent_span_id_error_names_parent_span_id() -> None:
    """A malformed parent_span_id is reported as parent_span_id, not span_id."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.CUSTOM, agent_id="a", span_id=new_span_id(),
                    parent_span_id="not-hex")
    [error] = info.value.errors()
    assert error["loc"] == ("parent_span_id",)
    assert "parent_span_id must be 16 lowercase hex" in error["msg"]


def test_bad_span_id_error_names_span_id() -> None:
    """A malformed span_id is reported as span_id."""
    with pytest.raises(ValidationError) as info:
        SystemEvent(event_type=EventType.CUSTOM, agent_id="a", span_id="0" * 16)
    [error] = info.value.errors()
    assert error["loc"] == ("span_id",)
    assert error["msg"].startswith("Value error, span_id must be 16 lowercase hex")
