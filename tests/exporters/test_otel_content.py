"""Content capture on spans: nothing by default; redacted text when the user opts in."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentbus import (
    AgentConfig,
    AgentExecutor,
    AgentOutput,
    CheckpointManager,
    EventBus,
    EventType,
    RunContext,
    TokenUsage,
    ToolCall,
)
from agentbus import semconv as sc
from exporters.otel import OTelSpanHandler

PROMPT = "prompt-text-zebra-42"
META = "meta-value-giraffe-7"
TOOL_ARG = "tool-arg-okapi-9"
TOOL_RESULT = "tool-result-tapir-3"
OUTPUT = "answer-text-lemur-5"
ERROR_TEXT = "failure-detail-quokka-1"
EMAIL = "alice.secret@example.com"
API_KEY = "sk-proj-AbCdEfGhIjKlMnOp1234"
USER = "user-ibex-8"


async def _runner(run: RunContext) -> AgentOutput:
    """Like an adapter with capture on: content goes on a run event's metadata only."""
    await run.emit(EventType.CUSTOM, metadata={
        sc.GEN_AI_INPUT_MESSAGES: [{"role": "user", "content": run.context.input}],
        sc.GEN_AI_OUTPUT_MESSAGES: [{"role": "assistant", "content": f"{OUTPUT} {EMAIL}"}],
        sc.GEN_AI_TOOL_CALL_ARGUMENTS: {"c1": {"q": TOOL_ARG, "key": API_KEY}},
        sc.GEN_AI_TOOL_CALL_RESULT: {"c1": f"{TOOL_RESULT} mail {EMAIL}"},
    })
    await CheckpointManager(run.executor.event_bus).save(run.agent_id, {"s": 1})
    return AgentOutput(OUTPUT, usage=TokenUsage(3, 4, 1),
                       tool_calls=[ToolCall("search", "c1", 10, 20)])


async def _failing(run: RunContext) -> Any:
    raise RuntimeError(f"{ERROR_TEXT} for {EMAIL}")


async def _spans(**handler_kwargs: Any) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    bus = EventBus()
    await bus.subscribe(EventType.ANY,
                        OTelSpanHandler(SimpleSpanProcessor(exporter), **handler_kwargs))
    for runner in (_runner, _failing):
        ex = AgentExecutor("a1", AgentConfig(name="agent"), runner, event_bus=bus)
        await ex.execute({
            "input": f"{PROMPT} from {EMAIL}",
            "user_id": USER,
            "session_id": "s1",
            "metadata": {"note": f"{META} {EMAIL} token={API_KEY}"},
        })
    await bus.close()
    return list(exporter.get_finished_spans())


def _dump(spans: list[ReadableSpan]) -> str:
    return "\n".join(s.to_json(indent=None) for s in spans)


async def test_no_content_on_spans_by_default() -> None:
    """No prompt, output, tool argument/result, metadata value, error text or user id is
    exported by default."""
    spans = await _spans()
    text = _dump(spans)
    assert "invoke_agent agent" in text and "execute_tool search" in text
    for secret in (PROMPT, OUTPUT, TOOL_ARG, TOOL_RESULT, META, ERROR_TEXT, EMAIL, API_KEY,
                   USER):
        assert secret not in text, secret
    for span in spans:
        assert not any(k.startswith(sc.AB_METADATA_PREFIX) for k in span.attributes or {})
        assert span.status.description is None


async def test_capture_on_exports_redacted_content() -> None:
    """With capture on, content is exported, but emails and API keys are redacted."""
    spans = await _spans(capture_content=True)
    text = _dump(spans)
    for kept in (PROMPT, OUTPUT, TOOL_ARG, TOOL_RESULT, META, ERROR_TEXT, USER):
        assert kept in text, kept
    assert EMAIL not in text and API_KEY not in text
    assert "[REDACTED:email]" in text and "[REDACTED:api_key]" in text

    ok_run, failed_run = [s for s in spans if s.name == "invoke_agent agent"]
    attrs = dict(ok_run.attributes or {})
    assert attrs[sc.USER_ID] == USER
    assert META in str(attrs[f"{sc.AB_METADATA_PREFIX}note"])
    assert PROMPT in str(attrs[sc.GEN_AI_INPUT_MESSAGES])
    assert json.loads(str(attrs[sc.GEN_AI_OUTPUT_MESSAGES]))[0]["content"] == (
        f"{OUTPUT} [REDACTED:email]")
    [tool] = [s for s in spans if s.name == "execute_tool search"]
    tool_attrs = dict(tool.attributes or {})
    assert json.loads(str(tool_attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS])) == {
        "q": TOOL_ARG, "key": "[REDACTED:api_key]"}
    assert tool_attrs[sc.GEN_AI_TOOL_CALL_RESULT] == f"{TOOL_RESULT} mail [REDACTED:email]"

    assert failed_run.status.description == f"{ERROR_TEXT} for [REDACTED:email]"
    [exc] = [e for e in failed_run.events if e.name == sc.EXCEPTION_EVENT]
    assert dict(exc.attributes or {})[sc.EXCEPTION_TYPE] == "RuntimeError"


async def test_failing_redactor_never_leaks_raw_content() -> None:
    """A redactor that raises replaces the value with a marker and is counted."""

    def broken(value: Any) -> Any:
        raise ValueError("bad redactor")

    exporter = InMemorySpanExporter()
    handler = OTelSpanHandler(SimpleSpanProcessor(exporter), capture_content=True,
                              redactor=broken)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler)
    ex = AgentExecutor("a1", AgentConfig(name="agent"), _runner, event_bus=bus)
    await ex.execute({"input": PROMPT, "user_id": USER, "metadata": {"note": META}})
    await bus.close()
    text = _dump(list(exporter.get_finished_spans()))
    assert "[REDACTION_FAILED]" in text
    for secret in (PROMPT, META, USER, TOOL_ARG):
        assert secret not in text
    assert handler.errors > 0
