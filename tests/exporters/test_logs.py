"""Tests of exporters.logs.configure_logging: one JSON object per line, trace ids, levels."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, RunContext
from exporters.logs import configure_logging
from middleware.logging import LoggingHandler


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo the global structlog configuration after each test."""
    yield
    structlog.reset_defaults()


async def _user_runner(run: RunContext) -> str:
    structlog.get_logger("user").info("inside the agent", step=1)
    return "ok"


async def test_json_lines_with_trace_ids() -> None:
    """Handler lines and a user's own lines inside a run are JSON objects with the run's ids."""
    out = io.StringIO()
    configure_logging(stream=out)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, LoggingHandler())
    ex = AgentExecutor("a1", AgentConfig(name="n"), _user_runner, event_bus=bus)
    result = await ex.execute({"input": "line one\nline two", "user_id": "u1"})
    await bus.close()
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    by_event = {r["event"]: r for r in records}
    assert set(by_event) == {"inside the agent", "agent_started", "agent_completed"}
    for r in records:
        assert r["trace_id"] == result.trace_id
        assert r["level"] == "info"
        assert r["timestamp"].endswith("Z")
    assert by_event["inside the agent"]["span_id"] == result.span_id
    assert by_event["inside the agent"]["step"] == 1


def test_level_filters_lines() -> None:
    """Lines below the configured level are not written."""
    out = io.StringIO()
    configure_logging(stream=out, level="warning")
    log = structlog.get_logger("t")
    log.info("quiet")
    log.error("loud", detail="multi\nline")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in records] == [("loud", "error")]
    assert records[0]["detail"] == "multi\nline"
    assert "trace_id" not in records[0]


def test_path_appends_to_file(tmp_path: Path) -> None:
    """With ``path`` lines are appended to the file, which the caller closes."""
    target = tmp_path / "logs" / "agentbus.jsonl"
    target.parent.mkdir()
    target.write_text('{"event": "earlier"}\n', encoding="utf-8")
    stream = configure_logging(path=target)
    structlog.get_logger("t").info("now", n=2)
    stream.close()
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["event"] for r in records] == ["earlier", "now"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"level": "LOUD"}, "level"),
        ({"level": True}, "level"),
        ({"stream": io.StringIO(), "path": "x.log"}, "either stream or path"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    """Unknown levels and conflicting sinks raise a ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        configure_logging(**kwargs)
