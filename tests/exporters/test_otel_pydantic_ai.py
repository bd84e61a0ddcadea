"""Span handler with real pydantic-ai agents (TestModel, offline) through PydanticAIRunner."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel

from agentbus import (
    AgentConfig,
    AgentContext,
    AgentExecutor,
    EventBus,
    EventType,
    ExecutionResult,
)
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
               capture: bool = False, session_id: str | None = None) -> ExecutionResult:
    bus = EventBus()
    handler = OTelSpanHandler(SimpleSpanProcessor(exporter), capture_content=capture)
    await bus.subscribe(EventType.ANY, handler)
    ex = AgentExecutor("assistant", AgentConfig(name="assistant", model="test"),
                       PydanticAIRunner(agent, capture_content=capture), event_bus=bus)
    result = await ex.execute(AgentContext(input=PROMPT, session_id=session_id))
    await bus.close()
    assert result.success, result.error_message
    return result


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _instrumented(exporter: InMemorySpanExporter) -> tuple[Agent[None, str], TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = _agent()
    agent.instrument = InstrumentationSettings(tracer_provider=provider, include_content=False)
    return agent, provider


def _operation(span: ReadableSpan) -> object:
    return dict(span.attributes or {}).get(sc.GEN_AI_OPERATION_NAME)


async def test_framework_spans_nest_under_run_span_without_duplicates() -> None:
    """With pydantic-ai's instrumentation on: one invoke_agent span per run (pydantic-ai's,
    child of our agentbus.run wrapper), one execute_tool span per tool call, one trace, and
    the framework's conversation id is our session id."""
    exporter = InMemorySpanExporter()
    agent, provider = _instrumented(exporter)
    result = await _run(agent, exporter, session_id="sess-42")
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    assert {f"{s.context.trace_id:032x}" for s in spans if s.context} == {result.trace_id}
    [ours] = [s for s in spans if _span_id(s) == int(result.span_id, 16)]
    assert ours.name == "agentbus.run assistant"
    assert _operation(ours) is None
    assert dict(ours.attributes or {})[sc.GEN_AI_CONVERSATION_ID] == "sess-42"
    [invoke] = [s for s in spans if _operation(s) == sc.OP_INVOKE_AGENT]
    assert invoke is not ours and invoke.name == "invoke_agent assistant"
    assert invoke.parent is not None and invoke.parent.span_id == _span_id(ours)
    assert dict(invoke.attributes or {})[sc.GEN_AI_CONVERSATION_ID] == "sess-42"
    tools = [s for s in spans if _operation(s) == sc.OP_EXECUTE_TOOL]
    assert sorted(s.name for s in tools) == ["execute_tool add", "execute_tool lookup"]
    assert len(tools) == len(result.tool_calls) == 2
    by_id = {_span_id(s): s for s in spans}
    for span in spans:  # every span's ancestry reaches our run span, through invoke_agent
        node, chain = span, [span]
        while node.parent is not None and node.parent.span_id in by_id:
            node = by_id[node.parent.span_id]
            chain.append(node)
        assert node is ours
        if span is not ours and span is not invoke:
            assert invoke in chain


async def test_one_invoke_agent_span_per_run_over_several_runs() -> None:
    """Several instrumented runs (no session) give exactly one invoke_agent span each, each
    in its own run's trace under that run's wrapper span."""
    exporter = InMemorySpanExporter()
    agent, provider = _instrumented(exporter)
    results = [await _run(agent, exporter) for _ in range(3)]
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    invokes = [s for s in spans if _operation(s) == sc.OP_INVOKE_AGENT]
    assert len(invokes) == 3
    for result in results:
        [invoke] = [s for s in invokes if s.context is not None
                    and f"{s.context.trace_id:032x}" == result.trace_id]
        assert invoke.parent is not None and invoke.parent.span_id == int(result.span_id, 16)
    assert len([s for s in spans if _operation(s) == sc.OP_EXECUTE_TOOL]) == 6


async def test_invoke_agent_span_carries_the_models_provider_name() -> None:
    """Without AgentConfig.provider, our invoke_agent span has the provider of the model
    that ran (pydantic-ai's own value: "test" for TestModel, "function" for FunctionModel)."""
    for model, expected in ((TestModel(), "test"),
                            (FunctionModel(lambda messages, info: ModelResponse(
                                parts=[TextPart("done")])), "function")):
        exporter = InMemorySpanExporter()
        agent: Agent[None, str] = Agent(model, name="assistant")
        result = await _run(agent, exporter)
        [run] = [s for s in exporter.get_finished_spans()
                 if _span_id(s) == int(result.span_id, 16)]
        assert run.name == "invoke_agent assistant"
        assert dict(run.attributes or {})[sc.GEN_AI_PROVIDER_NAME] == expected


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
