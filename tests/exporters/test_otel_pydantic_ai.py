"""Span handler with real pydantic-ai agents (TestModel, offline) through PydanticAIRunner."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, ExecutionResult
from agentbus import semconv as sc
from agentbus.adapters.pydantic_ai import PydanticAIRunner
from exporters.otel import OTelSpanHandler

PROMPT = "book a ride for carol@example.com to the zoo-gate-77"


def _agent() -> Agent[None, str]:
    agent: Agent[None, str] = Agent(TestModel(), name="assistant")

    @agent.tool_plain
    async def lookup(place: str) -> str:
        return f"{place} is open"

    @agent.tool_plain
    async def add(a: int, b: int) -> int:
        return a + b

    return agent


async def _run(agent: Agent[None, str], exporter: InMemorySpanExporter, *,
               capture: bool = False) -> ExecutionResult:
    bus = EventBus()
    handler = OTelSpanHandler(SimpleSpanProcessor(exporter), capture_content=capture)
    await bus.subscribe(EventType.ANY, handler)
    ex = AgentExecutor("assistant", AgentConfig(name="assistant", model="test"),
                       PydanticAIRunner(agent, capture_content=capture), event_bus=bus)
    result = await ex.execute(PROMPT)
    await bus.close()
    assert result.success, result.error_message
    return result


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


async def test_framework_spans_nest_under_run_span_without_duplicates() -> None:
    """With pydantic-ai's instrumentation on, its spans are in our trace under our run span,
    and each tool call has exactly one execute_tool span (the framework's)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = _agent()
    agent.instrument = InstrumentationSettings(tracer_provider=provider, include_content=False)
    result = await _run(agent, exporter)
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    assert {f"{s.context.trace_id:032x}" for s in spans if s.context} == {result.trace_id}
    tool_spans = [s for s in spans if s.name.startswith("execute_tool")]
    assert sorted(s.name for s in tool_spans) == ["execute_tool add", "execute_tool lookup"]
    assert len(result.tool_calls) == 2
    [ours] = [s for s in spans if _span_id(s) == int(result.span_id, 16)]
    assert ours.name == "invoke_agent assistant"
    framework = [s for s in spans if s is not ours]
    assert framework, "pydantic-ai emitted no spans"
    by_id = {_span_id(s): s for s in spans}
    for span in framework:  # every framework span's ancestry reaches our run span
        node = span
        while node.parent is not None and node.parent.span_id in by_id:
            node = by_id[node.parent.span_id]
        assert node is ours


async def test_tool_spans_from_adapter_and_content_off_by_default() -> None:
    """Without framework instrumentation our handler emits the tool spans; the prompt and
    tool arguments are not on any span by default."""
    exporter = InMemorySpanExporter()
    result = await _run(_agent(), exporter)
    spans = list(exporter.get_finished_spans())
    tools = [s for s in spans if s.name.startswith("execute_tool")]
    assert len(tools) == len(result.tool_calls) == 2
    assert all(s.parent is not None and s.parent.span_id == int(result.span_id, 16)
               for s in tools)
    text = "\n".join(s.to_json(indent=None) for s in spans)
    assert "zoo-gate-77" not in text and "carol@example.com" not in text
    assert sc.GEN_AI_TOOL_CALL_ARGUMENTS not in text


async def test_adapter_content_redacted_on_spans_when_opted_in() -> None:
    """With capture on in both adapter and handler, the prompt and tool arguments reach the
    spans, redacted."""
    exporter = InMemorySpanExporter()
    await _run(_agent(), exporter, capture=True)
    spans = list(exporter.get_finished_spans())
    [run] = [s for s in spans if s.name == "invoke_agent assistant"]
    prompt = str(dict(run.attributes or {})[sc.GEN_AI_INPUT_MESSAGES])
    assert "zoo-gate-77" in prompt and "[REDACTED:email]" in prompt
    assert "carol@example.com" not in prompt
    tools = {s.name: dict(s.attributes or {}) for s in spans if s.name.startswith("execute_tool")}
    assert sc.GEN_AI_TOOL_CALL_ARGUMENTS in tools["execute_tool add"]
    assert sc.GEN_AI_TOOL_CALL_RESULT in tools["execute_tool lookup"]
