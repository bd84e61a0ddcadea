"""PydanticAIRunner: real pydantic-ai agents (TestModel / FunctionModel, offline) in an executor."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent, ModelRetry
from pydantic_ai import RunContext as PydanticRunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, SystemEvent
from agentbus import semconv as sc
from agentbus.adapters.pydantic_ai import TOOL_CONTENT_STATE_KEY, PydanticAIRunner


@dataclass
class Deps:
    """Dependencies passed through AgentContext.deps."""

    city: str


def _executor(agent: Any, bus: EventBus | None = None, **kw: Any) -> AgentExecutor:
    runner = PydanticAIRunner(agent, **kw)
    return AgentExecutor("assistant", AgentConfig(name="assistant", model="test"), runner,
                         event_bus=bus)


def _two_tools_agent() -> Agent[None, str]:
    agent: Agent[None, str] = Agent(TestModel(), name="assistant")

    @agent.tool_plain
    async def weather(city: str) -> str:
        return f"sunny in {city}"

    @agent.tool_plain
    async def add(a: int, b: int) -> int:
        return a + b

    return agent


def _last(bus: EventBus, etype: EventType) -> SystemEvent:
    events = bus.history(event_types=[etype])
    assert events, f"no {etype} event"
    return events[-1]


def _parallel_model(first: list[ToolCallPart]) -> FunctionModel:
    """A scripted model: the first response asks for all ``first`` calls at once."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=list(first))
        return ModelResponse(parts=[TextPart("done")])

    return FunctionModel(respond)


async def test_usage_equals_pydantic_ai_own_usage() -> None:
    """Token usage and request count reported equal pydantic-ai's own result.usage."""
    agent = _two_tools_agent()
    direct = await agent.run("what is the weather?")
    bus = EventBus()
    result = await _executor(agent, bus).execute("what is the weather?")
    assert result.success, result.error_message
    own = direct.usage
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.requests) == (
        own.input_tokens, own.output_tokens, own.requests)
    assert own.requests >= 2 and own.input_tokens > 0
    done = _last(bus, EventType.AGENT_COMPLETED)
    assert done.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == own.input_tokens
    assert done.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == own.output_tokens
    assert done.attributes[sc.AB_REQUESTS] == own.requests
    assert done.attributes[sc.GEN_AI_RESPONSE_MODEL] == direct.response.model_name
    assert result.output == direct.output
    await bus.close()


async def test_every_tool_call_reported_with_times() -> None:
    """TestModel calls every tool: each is reported once with its name and start <= end."""
    agent = _two_tools_agent()
    bus = EventBus()
    result = await _executor(agent, bus).execute("go")
    assert sorted(t.name for t in result.tool_calls) == ["add", "weather"]
    for call in result.tool_calls:
        assert call.call_id
        assert 0 < call.start_time_unix_nano <= call.end_time_unix_nano
        assert call.error_type is None
    done = _last(bus, EventType.AGENT_COMPLETED)
    assert [d["name"] for d in done.attributes[sc.AB_TOOL_CALLS]] == [
        t.name for t in result.tool_calls]
    assert sc.AB_FRAMEWORK_INSTRUMENTED not in done.attributes
    await bus.close()


async def test_parallel_tool_calls_overlap() -> None:
    """Two tool calls in one model response run concurrently; their intervals overlap."""
    gate = asyncio.Event()
    model = _parallel_model([
        ToolCallPart("wait_for_gate", {}, tool_call_id="c-wait"),
        ToolCallPart("open_gate", {}, tool_call_id="c-open"),
    ])
    agent: Agent[None, str] = Agent(model, name="assistant")

    @agent.tool_plain
    async def wait_for_gate() -> str:
        await gate.wait()  # only returns if open_gate runs while this call is pending
        return "passed"

    @agent.tool_plain
    async def open_gate() -> str:
        gate.set()
        return "opened"

    result = await asyncio.wait_for(_executor(agent).execute("go"), 30)
    assert result.success, result.error_message
    calls = {t.call_id: t for t in result.tool_calls}
    assert set(calls) == {"c-wait", "c-open"}
    waiting, opening = calls["c-wait"], calls["c-open"]
    assert waiting.start_time_unix_nano <= opening.start_time_unix_nano
    assert opening.end_time_unix_nano <= waiting.end_time_unix_nano


async def test_tool_error_fails_run_with_error_type() -> None:
    """A tool that raises fails the run with that type; the call, and usage so far, are kept."""
    agent: Agent[None, str] = Agent(TestModel(), name="assistant")

    @agent.tool_plain
    async def explode(x: int) -> int:
        raise LookupError(f"no such thing: {x}")

    bus = EventBus()
    result = await _executor(agent, bus).execute("boom")
    assert not result.success
    assert result.error_type == "LookupError"
    assert [(t.name, t.error_type) for t in result.tool_calls] == [("explode", "LookupError")]
    assert result.usage.requests == 1 and result.usage.input_tokens > 0
    err = _last(bus, EventType.ERROR_OCCURRED)
    assert err.error_type == "LookupError"
    assert err.attributes[sc.AB_TOOL_CALLS][0]["error_type"] == "LookupError"
    await bus.close()


async def test_model_retry_recorded_and_run_recovers() -> None:
    """A tool raising ModelRetry is recorded with that error type; the retried call succeeds."""
    attempts: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) < 4:
            return ModelResponse(parts=[ToolCallPart("flaky", {"n": len(messages)})])
        return ModelResponse(parts=[TextPart("ok")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="assistant")

    @agent.tool_plain(retries=2)
    async def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise ModelRetry("try again")
        return n

    result = await _executor(agent).execute("x")
    assert result.success, result.error_message
    assert [t.error_type for t in result.tool_calls] == ["ModelRetry", None]


async def test_deps_reach_tools() -> None:
    """context.deps is passed to agent.run as deps."""

    agent: Agent[Deps, str] = Agent(TestModel(), name="assistant", deps_type=Deps)
    seen: list[str] = []

    @agent.tool
    async def where(ctx: PydanticRunContext[Deps]) -> str:
        seen.append(ctx.deps.city)
        return ctx.deps.city

    result = await _executor(agent).execute({"input": "where?", "deps": Deps("Lyon")})
    assert result.success, result.error_message
    assert seen == ["Lyon"]


async def test_framework_instrumentation_detected_and_nested() -> None:
    """With pydantic-ai's own instrumentation on, the flag is set and its spans nest under
    the run span (same trace), so the span handler can skip its own execute_tool spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = _two_tools_agent()
    agent.instrument = InstrumentationSettings(tracer_provider=provider)
    bus = EventBus()
    result = await _executor(agent, bus).execute("go")
    assert result.success, result.error_message
    done = _last(bus, EventType.AGENT_COMPLETED)
    assert done.attributes[sc.AB_FRAMEWORK_INSTRUMENTED] is True
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {int(result.trace_id, 16)}
    roots = [s for s in spans if s.parent is not None and s.parent.span_id == int(
        result.span_id, 16)]
    assert [s.name for s in roots] == ["invoke_agent assistant"]
    tool_spans = sorted(s.name for s in spans if s.name.startswith("execute_tool"))
    assert tool_spans == ["execute_tool add", "execute_tool weather"]
    provider.shutdown()
    await bus.close()


async def test_framework_flag_kept_when_run_fails() -> None:
    """A failing instrumented run still reports framework_instrumented on ERROR_OCCURRED."""
    provider = TracerProvider()
    agent: Agent[None, str] = Agent(TestModel(), name="assistant")
    agent.instrument = InstrumentationSettings(tracer_provider=provider)

    @agent.tool_plain
    async def explode() -> int:
        raise ValueError("bad")

    bus = EventBus()
    result = await _executor(agent, bus).execute("boom")
    assert result.error_type == "ValueError"
    err = _last(bus, EventType.ERROR_OCCURRED)
    assert err.attributes[sc.AB_FRAMEWORK_INSTRUMENTED] is True
    provider.shutdown()
    await bus.close()


async def test_no_duplicate_tool_spans_with_span_handler() -> None:
    """OTelSpanHandler + pydantic-ai instrumentation: one execute_tool span per call, one
    invoke_agent span (pydantic-ai's), ours a plain agentbus.run wrapper."""
    from exporters.otel import OTelSpanHandler

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = _two_tools_agent()
    agent.instrument = InstrumentationSettings(tracer_provider=provider)
    bus = EventBus()
    await bus.subscribe(EventType.ANY, OTelSpanHandler(SimpleSpanProcessor(exporter)))
    result = await _executor(agent, bus).execute("go")
    await bus.drain()
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("execute_tool weather") == 1
    assert names.count("execute_tool add") == 1
    ours = [s for s in spans if s.context.span_id == int(result.span_id, 16)]
    assert [s.name for s in ours] == ["agentbus.run assistant"]
    assert names.count("invoke_agent assistant") == 1
    provider.shutdown()
    await bus.close()


async def test_provider_name_of_the_model_on_completion_event() -> None:
    """Without AgentConfig.provider the completion event carries the model's provider name
    (pydantic-ai's Model.system); a configured provider wins."""
    bus = EventBus()
    await _executor(_two_tools_agent(), bus).execute("go")
    assert _last(bus, EventType.AGENT_COMPLETED).attributes[sc.GEN_AI_PROVIDER_NAME] == "test"
    configured = AgentExecutor(
        "assistant", AgentConfig(name="assistant", model="test", provider="acme"),
        PydanticAIRunner(_two_tools_agent()), event_bus=bus)
    await configured.execute("go")
    assert _last(bus, EventType.AGENT_COMPLETED).attributes[sc.GEN_AI_PROVIDER_NAME] == "acme"
    await bus.close()


async def test_provider_name_kept_when_run_fails() -> None:
    """A failing run still reports the model's provider name on ERROR_OCCURRED."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise RuntimeError("model down")

    bus = EventBus()
    result = await _executor(Agent(FunctionModel(respond), name="assistant"), bus).execute("x")
    assert result.error_type == "RuntimeError"
    err = _last(bus, EventType.ERROR_OCCURRED)
    assert err.attributes[sc.GEN_AI_PROVIDER_NAME] == "function"
    await bus.close()


async def test_session_id_is_pydantic_ai_conversation_id() -> None:
    """The context's session_id is passed as pydantic-ai's conversation_id, unless
    run_kwargs sets one."""
    seen: list[str | None] = []
    agent: Agent[None, str] = Agent(TestModel(), name="assistant")

    @agent.tool
    def probe(ctx: PydanticRunContext[None]) -> str:
        seen.append(ctx.conversation_id)
        return "ok"

    await _executor(agent).execute({"input": "go", "session_id": "sess-7"})
    await _executor(agent, conversation_id="mine").execute(
        {"input": "go", "session_id": "sess-7"})
    assert seen == ["sess-7", "mine"]


async def test_content_not_captured_by_default() -> None:
    """Without capture_content no tool content is kept and no content event is published."""
    agent = _two_tools_agent()
    bus = EventBus()
    seen_state: list[dict[str, Any]] = []

    async def peek(run: Any, call_next: Any) -> Any:
        out = await call_next(run)
        seen_state.append(dict(run.state))
        return out

    executor = _executor(agent, bus)
    executor.add_middleware(peek)
    await executor.execute("go")
    assert TOOL_CONTENT_STATE_KEY not in seen_state[0]
    assert bus.history(event_types=[EventType.CUSTOM]) == []
    await bus.close()


async def test_content_captured_when_opted_in() -> None:
    """capture_content=True keeps tool arguments/results in run.state and in one CUSTOM
    event's metadata keyed by call id."""
    agent = _two_tools_agent()
    bus = EventBus()
    seen_state: list[dict[str, Any]] = []

    async def peek(run: Any, call_next: Any) -> Any:
        out = await call_next(run)
        seen_state.append(dict(run.state))
        return out

    executor = _executor(agent, bus, capture_content=True)
    executor.add_middleware(peek)
    result = await executor.execute("go")
    contents = seen_state[0][TOOL_CONTENT_STATE_KEY]
    by_name = {c["name"]: c for c in contents}
    assert set(by_name) == {"weather", "add"}
    assert by_name["add"]["result"] == by_name["add"]["arguments"]["a"] + by_name["add"][
        "arguments"]["b"]
    custom = bus.history(event_types=[EventType.CUSTOM])
    assert len(custom) == 1
    meta = custom[0].metadata
    ids = {t.call_id for t in result.tool_calls}
    assert set(meta[sc.GEN_AI_TOOL_CALL_ARGUMENTS]) == ids
    assert meta[sc.GEN_AI_TOOL_CALL_RESULT][by_name["add"]["call_id"]] == by_name["add"][
        "result"]
    assert custom[0].span_id == result.span_id and custom[0].causation_id == result.run_id
    await bus.close()


async def test_bad_arguments_rejected() -> None:
    """A non-agent, reserved run kwargs and an unusable input get clear errors."""
    with pytest.raises(TypeError, match=r"pydantic_ai\.Agent"):
        PydanticAIRunner(object())
    with pytest.raises(ValueError, match="deps"):
        PydanticAIRunner(_two_tools_agent(), deps=1)
    result = await _executor(_two_tools_agent()).execute({"input": {"not": "a prompt"}})
    assert result.error_type == "TypeError"
    assert "context.input" in (result.error_message or "")


def test_agentbus_imports_without_pydantic_ai() -> None:
    """agentbus (and agentbus.adapters) import with pydantic-ai absent; the adapter says
    which extra is missing."""
    code = (
        "import sys\n"
        "sys.modules['pydantic_ai'] = None\n"
        "import agentbus, agentbus.adapters, agentbus.subagents\n"
        "try:\n"
        "    from agentbus.adapters import PydanticAIRunner\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert "IMPORT-ERROR" in out.stdout
    assert "agentbus[pydantic-ai]" in out.stdout


async def test_one_runner_serves_concurrent_runs() -> None:
    """Concurrent runs through one runner each report only their own tool calls."""
    executor = _executor(_two_tools_agent())
    results = await asyncio.gather(*(executor.execute(f"q{i}") for i in range(3)))
    for result in results:
        assert result.success, result.error_message
        assert sorted(t.name for t in result.tool_calls) == ["add", "weather"]
    ids = [t.call_id for r in results for t in r.tool_calls]
    assert len(ids) == 6


async def test_explicit_instrumentation_capability_detected() -> None:
    """An Instrumentation capability given at construction also counts as instrumented."""
    from pydantic_ai.capabilities import Instrumentation

    provider = TracerProvider()
    agent: Agent[None, str] = Agent(
        TestModel(), name="assistant",
        capabilities=[Instrumentation(settings=InstrumentationSettings(
            tracer_provider=provider))])
    bus = EventBus()
    await _executor(agent, bus).execute("hi")
    assert _last(bus, EventType.AGENT_COMPLETED).attributes[sc.AB_FRAMEWORK_INSTRUMENTED]
    provider.shutdown()
    await bus.close()
