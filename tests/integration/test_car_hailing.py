"""The car-hailing scenario (seeds 000 / 002) with real pydantic-ai agents, offline models,
and the exported spans (OTelSpanHandler -> InMemorySpanExporter)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent
from pydantic_ai import RunContext as PydanticRunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from agentbus import (
    AgentConfig,
    AgentContext,
    AgentExecutor,
    EventBus,
    EventType,
    SubAgentEventType,
)
from agentbus import semconv as sc
from agentbus.adapters.pydantic_ai import PydanticAIRunner
from agentbus.subagents import SubAgentHandle
from exporters.otel import OTelSpanHandler


@dataclass
class Conversation:
    """What the main agent's tools can reach: the executors and the sub-agent handles."""

    main: AgentExecutor
    helpers: dict[str, AgentExecutor]
    handles: list[SubAgentHandle] = field(default_factory=list)


def _car_agent(gate: asyncio.Event, name: str = "car_hailing") -> Agent[None, str]:
    """The sub-agent: TestModel calls its tool, which waits like a long network call."""
    agent: Agent[None, str] = Agent(TestModel(), name=name)

    @agent.tool_plain
    async def book_ride(destination: str) -> str:
        await asyncio.wait_for(gate.wait(), 60)  # the slow car-hailing service
        return f"car booked to {destination}"

    return agent


def _last_prompt(messages: list[ModelMessage]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, ModelRequest):
            for part in msg.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _main_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The main agent's scripted model: calls a tool when the user's turn asks for it."""
    last = messages[-1]
    if isinstance(last, ModelRequest) and any(isinstance(p, ToolReturnPart) for p in last.parts):
        results = [str(p.content) for p in last.parts if isinstance(p, ToolReturnPart)]
        return ModelResponse(parts=[TextPart("; ".join(results))])
    prompt = _last_prompt(messages)
    if "car" in prompt and "status" not in prompt:
        return ModelResponse(parts=[ToolCallPart("hail_car", {"destination": "airport"})])
    if "status" in prompt:
        return ModelResponse(parts=[ToolCallPart("car_status", {})])
    if "trip" in prompt:  # two tool calls in one response: pydantic-ai runs them in parallel
        return ModelResponse(parts=[
            ToolCallPart("hail_car", {"destination": "station"}),
            ToolCallPart("plan_trip", {}),
        ])
    return ModelResponse(parts=[TextPart(f"Happy to chat about: {prompt}")])


def _main_agent() -> Agent[Conversation, str]:
    agent: Agent[Conversation, str] = Agent(FunctionModel(_main_model), name="main",
                                            deps_type=Conversation)

    @agent.tool
    async def hail_car(ctx: PydanticRunContext[Conversation], destination: str) -> str:
        conv = ctx.deps
        handle = await conv.main.spawn(conv.helpers["car_hailing"], f"car to {destination}")
        conv.handles.append(handle)
        return f"car requested to {destination} ({handle.status})"

    @agent.tool
    async def car_status(ctx: PydanticRunContext[Conversation]) -> str:
        return ", ".join(h.status for h in ctx.deps.handles)

    @agent.tool
    async def plan_trip(ctx: PydanticRunContext[Conversation]) -> str:
        conv = ctx.deps
        handles = await asyncio.gather(
            conv.main.spawn(conv.helpers["train"], "book a train"),
            conv.main.spawn(conv.helpers["hotel"], "book a hotel"),
        )
        conv.handles.extend(handles)
        return "train and hotel requested"

    return agent


def _setup(bus: EventBus, gate: asyncio.Event) -> Conversation:
    def make(agent_id: str, agent: Agent[None, str]) -> AgentExecutor:
        return AgentExecutor(agent_id, AgentConfig(name=agent_id, model="test"),
                             PydanticAIRunner(agent), event_bus=bus)

    main = AgentExecutor("main", AgentConfig(name="main", model="function"),
                         PydanticAIRunner(_main_agent()), event_bus=bus)
    helpers = {name: make(name, _car_agent(gate, name))
               for name in ("car_hailing", "train", "hotel")}
    return Conversation(main=main, helpers=helpers)


def _by_id(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def _parent_name(span: ReadableSpan, index: dict[int, ReadableSpan]) -> str | None:
    if span.parent is None:
        return None
    parent = index.get(span.parent.span_id)
    return parent.name if parent is not None else "<missing>"


async def test_car_hailing_main_agent_keeps_talking() -> None:
    """The main agent spawns the car sub-agent, answers two more turns while it works, can
    ask its status, and is notified on completion; spans form one trace of the right shape."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    bus = EventBus()
    await bus.subscribe(EventType.ANY, OTelSpanHandler(SimpleSpanProcessor(exporter)))
    gate = asyncio.Event()
    conv = _setup(bus, gate)

    def turn(text: str) -> AgentContext:
        return AgentContext(input=text, user_id="alice", session_id="chat-1", deps=conv)

    with tracer.start_as_current_span("conversation") as root:
        first = await conv.main.execute(turn("please get me a car to the airport"))
        assert first.success, first.error_message
        assert "car requested to airport (running)" in first.output
        [handle] = conv.handles
        completed = asyncio.ensure_future(bus.wait_for(
            SubAgentEventType.SUBAGENT_COMPLETED,
            lambda e: e.attributes.get(sc.AB_SUBAGENT) == "car_hailing",
            timeout=60,
        ))

        second = await conv.main.execute(turn("meanwhile, tell me a joke"))
        assert second.success and "joke" in second.output
        assert handle.status == "running"  # the sub-agent still works after turn two

        third = await conv.main.execute(turn("what is the car status?"))
        assert third.output == "running"
        assert handle.status == "running" and not handle.done()

        gate.set()  # the car-hailing service answers
        notice = await completed
        assert notice.agent_id == "main"
        result = await handle.wait(timeout=60)
        assert result.success and "car booked" in result.output  # the tool's answer
        assert handle.result is result
        assert notice.attributes[sc.AB_SUBAGENT_RUN_ID] == result.run_id

        fourth = await conv.main.execute(turn("what is the car status?"))
        assert fourth.output == "completed"

    await conv.main.wait_subagents(timeout=60)
    await bus.drain()
    await bus.close()

    # Events: the notification is caused by the sub-run, which the first turn caused.
    chain = bus.get_causation_chain(notice.event_id)
    assert [(e.type_name, e.agent_id) for e in chain] == [
        ("agent_started", "main"), ("agent_started", "car_hailing"),
        ("agent_completed", "car_hailing"), ("subagent_completed", "main")]
    assert chain[0].event_id == first.run_id
    assert notice.trace_id == first.trace_id and notice.span_id == first.span_id

    # Spans: one trace; the sub-agent's run is a child of the turn that spawned it.
    spans = exporter.get_finished_spans()
    index = _by_id(spans)
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    turns = [index[int(r.span_id, 16)] for r in (first, second, third, fourth)]
    assert all(_parent_name(t, index) == "conversation" for t in turns)
    assert all(t.name == "invoke_agent main" for t in turns)
    car = index[int(result.span_id, 16)]
    assert car.name == "invoke_agent car_hailing"
    assert car.parent is not None and car.parent.span_id == turns[0].context.span_id
    assert car.end_time is not None and turns[0].end_time is not None
    assert car.end_time > turns[0].end_time  # outlived the turn that spawned it
    assert turns[2].end_time is not None and car.end_time > turns[2].end_time
    tools = [s for s in spans if s.name.startswith("execute_tool")]
    assert sorted((s.name, _parent_name(s, index)) for s in tools) == [
        ("execute_tool book_ride", "invoke_agent car_hailing"),
        ("execute_tool car_status", "invoke_agent main"),
        ("execute_tool car_status", "invoke_agent main"),
        ("execute_tool hail_car", "invoke_agent main"),
    ]
    hail = next(s for s in tools if s.name == "execute_tool hail_car")
    assert hail.parent is not None and hail.parent.span_id == turns[0].context.span_id
    provider.shutdown()


async def test_parallel_tools_and_gathered_sub_agents_keep_the_shape() -> None:
    """Two tool calls in one model response (run in parallel) spawn three sub-agents, two of
    them under asyncio.gather; every sub-run is a child of the main run, in one trace."""
    exporter = InMemorySpanExporter()
    bus = EventBus()
    await bus.subscribe(EventType.ANY, OTelSpanHandler(SimpleSpanProcessor(exporter)))
    gate = asyncio.Event()
    conv = _setup(bus, gate)

    main = await conv.main.execute(AgentContext(input="plan my trip", deps=conv))
    assert main.success, main.error_message
    assert {h.agent_id for h in conv.handles} == {"car_hailing", "train", "hotel"}
    assert all(h.status == "running" for h in conv.handles)
    assert sorted(t.name for t in main.tool_calls) == ["hail_car", "plan_trip"]
    gate.set()
    results = await conv.main.wait_subagents(timeout=60)
    assert len(results) == 3 and all(r.success for r in results)
    await bus.drain()
    await bus.close()

    assert len(bus.history(event_types=[SubAgentEventType.SUBAGENT_SPAWNED])) == 3
    assert len(bus.history(event_types=[SubAgentEventType.SUBAGENT_COMPLETED])) == 3
    spans = exporter.get_finished_spans()
    index = _by_id(spans)
    assert {s.context.trace_id for s in spans} == {int(main.trace_id, 16)}
    main_span = index[int(main.span_id, 16)]
    assert main_span.parent is None
    for r in results:
        sub = index[int(r.span_id, 16)]
        assert sub.name == f"invoke_agent {r.agent_id}"
        assert sub.parent is not None and sub.parent.span_id == main_span.context.span_id
        [tool] = [s for s in spans if s.parent is not None
                  and s.parent.span_id == sub.context.span_id
                  and s.name.startswith("execute_tool")]
        assert tool.name == "execute_tool book_ride"
    main_tools = sorted(s.name for s in spans if s.name.startswith("execute_tool")
                        and _parent_name(s, index) == "invoke_agent main")
    assert main_tools == ["execute_tool hail_car", "execute_tool plan_trip"]
