"""Tests of middleware.logging.LoggingHandler with real executor runs and structlog."""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from agentbus import (
    AgentConfig,
    AgentExecutor,
    AgentOutput,
    EventBus,
    EventType,
    RunContext,
    TokenUsage,
    ToolCall,
)
from agentbus import semconv as sc
from middleware.logging import LoggingHandler

PROMPT_SECRET = "prompt-text-zebra-42"
META_SECRET = "meta-value-giraffe-7"
TOOL_ARG_SECRET = "tool-arg-okapi-9"
EMAIL = "alice.secret@example.com"


async def _runner(run: RunContext) -> AgentOutput:
    """A runner that reports tokens and one tool call, and emits tool args as an adapter
    with content capture would (under metadata)."""
    await run.emit(
        EventType.CUSTOM,
        metadata={sc.GEN_AI_TOOL_CALL_ARGUMENTS: {"c1": {"q": TOOL_ARG_SECRET, "to": EMAIL}}},
    )
    return AgentOutput(
        output=f"echo {run.context.input}",
        usage=TokenUsage(input_tokens=11, output_tokens=5, requests=1),
        tool_calls=[ToolCall("search", "c1", 1, 2)],
    )


async def _failing(run: RunContext) -> Any:
    raise RuntimeError(f"failed on {run.context.input} for {EMAIL}")


async def _run_logged(handler: LoggingHandler, runner: Any) -> list[MutableMapping[str, Any]]:
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler)
    ex = AgentExecutor("a1", AgentConfig(name="agent-one", model="m1"), runner, event_bus=bus)
    with capture_logs() as logs:
        await ex.execute({
            "input": PROMPT_SECRET,
            "user_id": "u1",
            "session_id": "s1",
            "metadata": {"note": f"{META_SECRET} {EMAIL}"},
        })
        await bus.close()
    return logs


async def test_every_event_logged_with_ids() -> None:
    """Each run event gives one info line carrying the event's ids and telemetry."""
    bus = EventBus()
    await bus.subscribe(EventType.ANY, LoggingHandler())
    ex = AgentExecutor("a1", AgentConfig(name="agent-one", model="m1"), _runner, event_bus=bus)
    with capture_logs() as logs:
        result = await ex.execute({"input": "hi", "user_id": "u1", "session_id": "s1"})
        await bus.close()
    events = {line["event"]: line for line in logs}
    assert set(events) == {"agent_started", "custom", "agent_completed"}
    done = events["agent_completed"]
    assert done["log_level"] == "info"
    assert done["trace_id"] == result.trace_id and done["span_id"] == result.span_id
    assert done["causation_id"] == result.run_id
    assert events["agent_started"]["event_id"] == result.run_id
    assert done["user_id"] == "u1" and done["session_id"] == "s1"
    assert done["input_tokens"] == 11 and done["output_tokens"] == 5
    assert done["tools"] == ["search"] and done["model"] == "m1"
    assert done["execution_time_ms"] == pytest.approx(result.execution_time_ms)


async def test_no_content_in_logs_by_default() -> None:
    """Prompt, metadata values, tool arguments and error messages are not logged by default."""
    logs = await _run_logged(LoggingHandler(), _runner)
    logs += await _run_logged(LoggingHandler(), _failing)
    text = json.dumps(logs, default=str)
    assert "error_occurred" in text
    for secret in (PROMPT_SECRET, META_SECRET, TOOL_ARG_SECRET, EMAIL, "failed on"):
        assert secret not in text
    assert all("metadata" not in line and "error_message" not in line for line in logs)


async def test_capture_on_logs_redacted_content() -> None:
    """With capture on, metadata and error messages are logged, emails redacted."""
    logs = await _run_logged(LoggingHandler(capture_content=True), _runner)
    logs += await _run_logged(LoggingHandler(capture_content=True), _failing)
    text = json.dumps(logs, default=str)
    assert META_SECRET in text and TOOL_ARG_SECRET in text and "failed on" in text
    assert EMAIL not in text and "[REDACTED:email]" in text


async def test_custom_redactor_used_when_capture_on() -> None:
    """A user redactor replaces the default one."""
    handler = LoggingHandler(capture_content=True, redactor=lambda v: "<hidden>")
    logs = await _run_logged(handler, _runner)
    started = next(line for line in logs if line["event"] == "agent_started")
    assert started["metadata"] == "<hidden>"


async def test_log_error_only_for_error_events() -> None:
    """log_error writes an error-level line for ERROR_OCCURRED and ignores others."""
    handler = LoggingHandler()
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler.log_error)
    ex = AgentExecutor("a1", AgentConfig(name="agent-one"), _failing, event_bus=bus)
    with capture_logs() as logs:
        await ex.execute("x")
        await bus.close()
    assert [(line["event"], line["log_level"]) for line in logs] == [("error_occurred", "error")]
    assert logs[0]["error_type"] == "RuntimeError"


async def test_middleware_failure_logged_as_error() -> None:
    """A failing executor middleware yields an error line naming the middleware."""

    async def broken(run: RunContext, call_next: Any) -> Any:
        raise ValueError("nope")

    handler = LoggingHandler()
    bus = EventBus()
    await bus.subscribe(EventType.MIDDLEWARE_FAILED, handler.log_error)
    ex = AgentExecutor("a1", AgentConfig(name="n"), _runner, middleware=[broken], event_bus=bus)
    with capture_logs() as logs:
        await ex.execute("x")
        await bus.close()
    assert len(logs) == 1
    assert logs[0]["middleware"].endswith("broken") and logs[0]["error_type"] == "ValueError"


async def test_failing_logger_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A logger that raises never breaks the bus; the failure is counted and reported."""

    class Broken:
        def info(self, *a: Any, **k: Any) -> None:
            raise OSError("disk full")

        def error(self, *a: Any, **k: Any) -> None:
            raise OSError("disk full")

    handler = LoggingHandler(Broken())
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler)
    ex = AgentExecutor("a1", AgentConfig(name="n"), _runner, event_bus=bus)
    with caplog.at_level(logging.ERROR, logger="middleware.logging"):
        result = await ex.execute("x")
        await bus.drain()
    assert result.success
    assert handler.errors == 3
    assert [s.errors for s in bus.stats().subscriptions] == [0]
    assert [s.delivered for s in bus.stats().subscriptions] == [3]
    assert "could not log" in caplog.text
    await bus.close()


async def test_stdlib_logger_accepted(caplog: pytest.LogCaptureFixture) -> None:
    """A stdlib logging.Logger is wrapped and receives one record per event."""
    structlog.reset_defaults()
    std = logging.getLogger("tests.agentbus.stdlib")
    bus = EventBus()
    await bus.subscribe(EventType.ANY, LoggingHandler(std))
    ex = AgentExecutor("a1", AgentConfig(name="n"), _runner, event_bus=bus)
    with caplog.at_level(logging.INFO, logger="tests.agentbus.stdlib"):
        await ex.execute("x")
        await bus.close()
    records = [r for r in caplog.records if r.name == "tests.agentbus.stdlib"]
    assert len(records) == 3
    assert "agent_completed" in records[-1].getMessage()


def test_bad_arguments_rejected() -> None:
    """A logger without info/error or a non-callable redactor is rejected clearly."""
    with pytest.raises(TypeError, match="info\\(\\) and error\\(\\)"):
        LoggingHandler(object())
    with pytest.raises(TypeError, match="redactor"):
        LoggingHandler(redactor="x")  # type: ignore[arg-type]
