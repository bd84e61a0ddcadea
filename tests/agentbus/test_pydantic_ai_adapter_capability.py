"""PydanticAIRunner with AgentbusCapability registered on the agent vs passed per run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.capabilities import AbstractCapability, CombinedCapability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, SystemEvent
from agentbus import semconv as sc
from agentbus.adapters.pydantic_ai import (
    TOOL_CONTENT_STATE_KEY,
    AgentbusCapability,
    PydanticAIRunner,
)

MODES = ["installed", "per-run"]


def _caps(mode: str) -> list[AbstractCapability[Any]]:
    """The agent's constructor capabilities for ``mode``."""
    return [AgentbusCapability()] if mode == "installed" else []


def _executor(agent: Any, bus: EventBus | None = None, **kw: Any) -> AgentExecutor:
    return AgentExecutor("assistant", AgentConfig(name="assistant", model="test"),
                         PydanticAIRunner(agent, **kw), event_bus=bus)


def _two_tools_agent(mode: str) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(TestModel(), name="assistant", capabilities=_caps(mode))

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


@pytest.mark.parametrize("mode", MODES)
async def test_each_tool_call_reported_once_with_usage_and_provider(mode: str) -> None:
    """Each tool call is reported exactly once (never by two capabilities), usage equals
    pydantic-ai's own, and the provider is the model's."""
    agent = _two_tools_agent(mode)
    own = await agent.run("go")
    bus = EventBus()
    result = await _executor(agent, bus).execute("go")
    assert result.success, result.error_message
    assert sorted(t.name for t in result.tool_calls) == ["add", "weather"]
    assert len({t.call_id for t in result.tool_calls}) == 2
    for call in result.tool_calls:
        assert 0 < call.start_time_unix_nano <= call.end_time_unix_nano
    assert result.usage.input_tokens == own.usage.input_tokens
    assert result.usage.output_tokens == own.usage.output_tokens
    assert result.usage.requests == own.usage.requests
    done = _last(bus, EventType.AGENT_COMPLETED)
    assert done.attributes[sc.GEN_AI_PROVIDER_NAME] == "test"
    assert sc.AB_FRAMEWORK_INSTRUMENTED not in done.attributes
    await bus.close()


@pytest.mark.parametrize("mode", MODES)
async def test_parallel_calls_overlap(mode: str) -> None:
    """Calls of one model response run concurrently and are timed one by one."""
    gate = asyncio.Event()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("wait_for_gate", {}, tool_call_id="w"),
                                        ToolCallPart("open_gate", {}, tool_call_id="o")])
        return ModelResponse(parts=[TextPart("done")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="assistant",
                                    capabilities=_caps(mode))

    @agent.tool_plain
    async def wait_for_gate() -> str:
        await gate.wait()
        return "passed"

    @agent.tool_plain
    async def open_gate() -> str:
        gate.set()
        return "opened"

    result = await asyncio.wait_for(_executor(agent).execute("go"), 30)
    assert result.success, result.error_message
    calls = {t.call_id: t for t in result.tool_calls}
    assert calls["w"].start_time_unix_nano <= calls["o"].start_time_unix_nano
    assert calls["o"].end_time_unix_nano <= calls["w"].end_time_unix_nano


@pytest.mark.parametrize("mode", MODES)
async def test_original_error_types(mode: str) -> None:
    """A retried call reports ModelRetry, a failing one its own type, and the failed run
    keeps its calls and usage."""
    attempts: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) < 6:
            return ModelResponse(parts=[ToolCallPart("flaky", {"n": len(messages)})])
        return ModelResponse(parts=[TextPart("ok")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="assistant",
                                    capabilities=_caps(mode))

    @agent.tool_plain(retries=3)
    async def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise ModelRetry("try again")
        if len(attempts) == 3:
            raise KeyError("gone")
        return n

    bus = EventBus()
    result = await _executor(agent, bus).execute("x")
    assert result.error_type == "KeyError"
    assert [t.error_type for t in result.tool_calls] == ["ModelRetry", None, "KeyError"]
    assert result.usage.requests == 3
    err = _last(bus, EventType.ERROR_OCCURRED)
    assert [c["error_type"] for c in err.attributes[sc.AB_TOOL_CALLS]] == [
        "ModelRetry", None, "KeyError"]
    await bus.close()


@pytest.mark.parametrize("mode", MODES)
async def test_instrumentation_set_after_construction_detected(mode: str) -> None:
    """agent.instrument set after the agent (and the runner) were built is detected."""
    provider = TracerProvider()
    agent = _two_tools_agent(mode)
    executor = _executor(agent)
    agent.instrument = InstrumentationSettings(tracer_provider=provider)
    bus = EventBus()
    executor.set_event_bus(bus)
    await executor.execute("go")
    assert _last(bus, EventType.AGENT_COMPLETED).attributes[sc.AB_FRAMEWORK_INSTRUMENTED]
    provider.shutdown()
    await bus.close()


@pytest.mark.parametrize("mode", MODES)
async def test_content_capture(mode: str) -> None:
    """capture_content=True keeps tool arguments/results in run.state, in start order."""
    agent = _two_tools_agent(mode)
    kept: list[Any] = []

    async def peek(run: Any, call_next: Any) -> Any:
        out = await call_next(run)
        kept.append(run.state.get(TOOL_CONTENT_STATE_KEY))
        return out

    executor = _executor(agent, capture_content=True)
    executor.add_middleware(peek)
    result = await executor.execute("go")
    assert result.success, result.error_message
    contents = kept[0]
    assert [c["call_id"] for c in contents] == [t.call_id for t in result.tool_calls]
    assert all(c["result"] is not None for c in contents)


@pytest.mark.parametrize("mode", MODES)
async def test_nested_agent_runs_report_only_their_own_calls(mode: str) -> None:
    """A tool that runs another agent (directly, and through its own runner) does not
    leak the inner run's tool calls into the outer run, and vice versa."""
    inner: Agent[None, str] = Agent(TestModel(), name="inner", capabilities=_caps(mode))

    @inner.tool_plain
    async def inner_tool() -> str:
        return "inner"

    inner_executor = _executor(inner)
    inner_results: list[Any] = []
    outer: Agent[None, str] = Agent(TestModel(), name="outer", capabilities=_caps(mode))

    @outer.tool_plain
    async def delegate() -> str:
        direct = await inner.run("plain")
        inner_results.append(await inner_executor.execute("via runner"))
        return direct.output

    result = await _executor(outer).execute("go")
    assert result.success, result.error_message
    assert [t.name for t in result.tool_calls] == ["delegate"]
    assert [t.name for t in inner_results[0].tool_calls] == ["inner_tool"]


async def test_agent_with_capability_runs_alone() -> None:
    """An agent built with the capability runs normally outside any runner, concurrently
    with runner runs that report only their own calls."""
    agent = _two_tools_agent("installed")
    executor = _executor(agent)
    outcomes = await asyncio.gather(agent.run("a"), executor.execute("b"), agent.run("c"),
                                    executor.execute("d"))
    for plain in (outcomes[0], outcomes[2]):
        assert plain.output
    for result in (outcomes[1], outcomes[3]):
        assert result.success, result.error_message
        assert sorted(t.name for t in result.tool_calls) == ["add", "weather"]


async def test_capability_found_inside_a_combined_capability() -> None:
    """An AgentbusCapability nested in a CombinedCapability given at construction counts
    as registered: each call is still reported exactly once."""
    agent: Agent[None, str] = Agent(
        TestModel(), name="assistant",
        capabilities=[CombinedCapability([AgentbusCapability()])])

    @agent.tool_plain
    async def ping() -> str:
        return "pong"

    result = await _executor(agent).execute("go")
    assert [t.name for t in result.tool_calls] == ["ping"]
