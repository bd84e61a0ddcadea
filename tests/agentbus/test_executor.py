"""Tests of :class:`agentbus.AgentExecutor`: event sequence, errors, middleware, timeouts,
cancellation, contexts, trace ids, model registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from agentbus import (
    AgentConfig,
    AgentContext,
    AgentExecutor,
    AgentOutput,
    EventBus,
    EventType,
    RunContext,
    SystemEvent,
    TokenUsage,
    ToolCall,
    current_run,
    register_model,
)
from agentbus import semconv as sc
from agentbus.testing import CapturingHandler

MW_TYPES = (EventType.MIDDLEWARE_EXECUTED, EventType.MIDDLEWARE_FAILED)




def config(**kw: Any) -> AgentConfig:
    """An AgentConfig for tests."""
    kw.setdefault("name", "tester")
    kw.setdefault("description", "test agent")
    kw.setdefault("model", "test-model")
    return AgentConfig(**kw)


async def echo(run: RunContext) -> Any:
    """Runner returning the input."""
    return run.context.input


def executor(agent: Any = echo, bus: EventBus | None = None, **kw: Any) -> AgentExecutor:
    """An executor with the given runner and bus."""
    mw = kw.pop("middleware", ())
    ex = AgentExecutor(agent_id=kw.pop("agent_id", "agent-1"), config=config(**kw),
                       agent=agent, middleware=mw)
    if bus is not None:
        ex.set_event_bus(bus)
    return ex


# ---------------------------------------------------------------------------- success


async def test_successful_run_event_sequence(bus: EventBus, rec: CapturingHandler) -> None:
    """A successful run publishes AGENT_STARTED then AGENT_COMPLETED and returns the output."""
    ex = executor(bus=bus, provider="openai")
    result = await ex.execute(AgentContext(input="hi", user_id="u1", session_id="s1",
                                           metadata={"channel": "web"}))
    await bus.drain()
    assert result.success is True and result.output == "hi"
    assert result.error_type is None and result.error_message is None
    assert rec.event_types == [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED]
    started, completed = rec.events
    assert started.event_id == result.run_id
    assert started.causation_id is None
    assert started.agent_id == "agent-1" and completed.agent_id == "agent-1"
    assert started.user_id == "u1" and started.session_id == "s1"
    assert completed.user_id == "u1" and completed.session_id == "s1"
    assert started.metadata == {"model": "test-model", "channel": "web"}
    assert started.attributes[sc.GEN_AI_AGENT_NAME] == "tester"
    assert started.attributes[sc.GEN_AI_REQUEST_MODEL] == "test-model"
    assert started.attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert completed.causation_id == result.run_id
    assert completed.correlation_id == started.correlation_id == result.run_id
    assert completed.execution_time_ms is not None and completed.execution_time_ms >= 0
    assert completed.execution_time_ms == pytest.approx(result.execution_time_ms)
    start_ns = completed.attributes[sc.AB_START_TIME_NS]
    assert start_ns == started.attributes[sc.AB_START_TIME_NS]
    assert completed.attributes[sc.AB_END_TIME_NS] >= start_ns
    assert sc.ERROR_TYPE not in completed.attributes
    assert bus.get_causation_chain(completed.event_id) == [started, completed]


async def test_runner_output_reports_usage_and_tools(bus: EventBus, rec: CapturingHandler) -> None:
    """An AgentOutput's usage, tool calls, cost and response model reach the result and the
    AGENT_COMPLETED attributes."""
    call = ToolCall("search", "c1", 1_000, 2_000)

    async def runner(run: RunContext) -> AgentOutput:
        return AgentOutput("done", usage=TokenUsage(10, 4, 2), tool_calls=[call],
                           cost_usd=0.25, response_model="test-model-2024")

    result = await executor(runner, bus).execute("go")
    await bus.drain()
    assert result.output == "done"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (10, 4)
    assert result.tool_calls == [call] and result.cost_usd == 0.25
    attrs = rec.of_type(EventType.AGENT_COMPLETED)[0].attributes
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 10
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    assert attrs[sc.AB_REQUESTS] == 2
    assert attrs[sc.AB_COST_USD] == 0.25
    assert attrs[sc.AB_TOOL_CALLS] == [call.as_dict()]
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "test-model-2024"


# ---------------------------------------------------------------------------- errors


async def test_failing_agent_gives_error_result(bus: EventBus, rec: CapturingHandler) -> None:
    """A raising agent: ERROR_OCCURRED with error_type/error_message; success False; the
    exception is not raised to the caller."""

    async def broken(run: RunContext) -> Any:
        raise ValueError("model said no")

    result = await executor(broken, bus).execute("x")
    await bus.drain()
    assert result.success is False and result.output is None
    assert result.error_type == "ValueError" and result.error_message == "model said no"
    assert rec.event_types == [EventType.AGENT_STARTED, EventType.ERROR_OCCURRED]
    err = rec.events[1]
    assert err.error_type == "ValueError" and err.error_message == "model said no"
    assert err.execution_time_ms is not None and err.execution_time_ms >= 0
    assert err.attributes[sc.ERROR_TYPE] == "ValueError"
    assert err.causation_id == result.run_id


async def test_error_without_message_uses_type_name(bus: EventBus, rec: CapturingHandler) -> None:
    """An exception with an empty message still gives a non-empty error_message."""

    async def broken(run: RunContext) -> Any:
        raise KeyError

    result = await executor(broken, bus).execute()
    assert result.error_type == "KeyError" and result.error_message == "KeyError"


async def test_failing_middleware(bus: EventBus, rec: CapturingHandler) -> None:
    """A middleware that raises: MIDDLEWARE_FAILED for it (with its error), the outer one
    still MIDDLEWARE_EXECUTED, the agent is not called, the run fails."""
    called: list[str] = []

    async def outer(run: RunContext, call_next: Any) -> Any:
        return await call_next(run)

    async def guard(run: RunContext, call_next: Any) -> Any:
        raise PermissionError("blocked by guard")

    async def agent(run: RunContext) -> Any:
        called.append("agent")
        return "nope"

    result = await executor(agent, bus, middleware=[outer, guard]).execute("x")
    await bus.drain()
    assert called == []
    assert result.success is False and result.error_type == "PermissionError"
    assert rec.event_types == [
        EventType.AGENT_STARTED,
        EventType.MIDDLEWARE_FAILED,
        EventType.MIDDLEWARE_EXECUTED,
        EventType.ERROR_OCCURRED,
    ]
    failed = rec.of_type(EventType.MIDDLEWARE_FAILED)[0]
    assert failed.attributes[sc.AB_MIDDLEWARE] == "test_failing_middleware.guard"
    assert failed.error_type == "PermissionError"
    assert failed.error_message == "blocked by guard"
    executed = rec.of_type(EventType.MIDDLEWARE_EXECUTED)[0]
    assert executed.attributes[sc.AB_MIDDLEWARE] == "test_failing_middleware.outer"
    assert rec.of_type(EventType.ERROR_OCCURRED)[0].error_message == "blocked by guard"


async def test_middleware_passes_agent_error_through(bus: EventBus, rec: CapturingHandler) -> None:
    """When the agent fails inside a middleware that does not catch it, the middleware is
    reported as executed (it did not fail itself) and the run fails with the agent's error."""

    async def passthrough(run: RunContext, call_next: Any) -> Any:
        return await call_next(run)

    async def broken(run: RunContext) -> Any:
        raise RuntimeError("agent broke")

    result = await executor(broken, bus, middleware=[passthrough]).execute()
    await bus.drain()
    assert result.error_type == "RuntimeError"
    assert rec.event_types == [EventType.AGENT_STARTED, EventType.MIDDLEWARE_EXECUTED,
                           EventType.ERROR_OCCURRED]


async def test_middleware_can_recover(bus: EventBus, rec: CapturingHandler) -> None:
    """A middleware that catches the agent's error and returns a fallback makes the run
    succeed with the fallback."""

    async def fallback(run: RunContext, call_next: Any) -> Any:
        try:
            return await call_next(run)
        except RuntimeError:
            return "fallback"

    async def broken(run: RunContext) -> Any:
        raise RuntimeError("agent broke")

    result = await executor(broken, bus, middleware=[fallback]).execute()
    await bus.drain()
    assert result.success is True and result.output == "fallback"
    assert rec.event_types[-1] is EventType.AGENT_COMPLETED


# ---------------------------------------------------------------------------- middleware


async def test_middleware_order_and_events(bus: EventBus, rec: CapturingHandler) -> None:
    """Middleware run outermost first around the agent; the inner one finishes (and is
    reported) first; each MIDDLEWARE_EXECUTED has its own span under the run span."""
    trail: list[str] = []

    class Step:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, run: RunContext, call_next: Any) -> Any:
            trail.append(f"{self.name}>")
            out = await call_next(run)
            trail.append(f"<{self.name}")
            return f"{self.name}({out})"

    async def agent(run: RunContext) -> Any:
        trail.append("agent")
        return "x"

    ex = executor(agent, bus, middleware=[Step("a"), Step("b")])
    ex.add_middleware(Step("c"))
    assert [m.name for m in ex.middleware] == ["a", "b", "c"]
    result = await ex.execute()
    await bus.drain()
    assert trail == ["a>", "b>", "c>", "agent", "<c", "<b", "<a"]
    assert result.output == "a(b(c(x)))"
    mw = [e for e in rec.events if e.event_type in MW_TYPES]
    assert [e.attributes[sc.AB_MIDDLEWARE] for e in mw] == ["c", "b", "a"]
    run_span = rec.events[0].span_id
    assert len({e.span_id for e in mw}) == 3 and run_span not in {e.span_id for e in mw}
    for e in mw:
        assert e.parent_span_id == run_span
        assert e.trace_id == result.trace_id
        assert e.causation_id == result.run_id


async def test_middleware_self_time(bus: EventBus, rec: CapturingHandler) -> None:
    """A middleware's execution_time_ms is its self time: its own duration minus the time
    spent in the layers inside it."""

    async def outer(run: RunContext, call_next: Any) -> Any:
        return await call_next(run)

    async def inner(run: RunContext, call_next: Any) -> Any:
        await asyncio.sleep(0.02)
        return await call_next(run)

    async def agent(run: RunContext) -> Any:
        await asyncio.sleep(0.02)
        return "ok"

    await executor(agent, bus, middleware=[outer, inner]).execute()
    await bus.drain()
    by_name = {
        e.attributes[sc.AB_MIDDLEWARE].rsplit(".", 1)[-1]: e
        for e in rec.of_type(EventType.MIDDLEWARE_EXECUTED)
    }

    def total_ms(e: SystemEvent) -> float:
        return float(e.attributes[sc.AB_END_TIME_NS] - e.attributes[sc.AB_START_TIME_NS]) / 1e6

    o, i = by_name["outer"], by_name["inner"]
    assert o.execution_time_ms is not None and i.execution_time_ms is not None
    assert 0 <= o.execution_time_ms <= total_ms(o) - total_ms(i) + 1e-3
    assert 0 <= i.execution_time_ms <= total_ms(i)
    # inner's own sleep is part of its self time; the agent's sleep is not
    assert o.attributes[sc.AB_START_TIME_NS] <= i.attributes[sc.AB_START_TIME_NS]
    assert o.attributes[sc.AB_END_TIME_NS] >= i.attributes[sc.AB_END_TIME_NS]
    completed = rec.of_type(EventType.AGENT_COMPLETED)[0]
    assert completed.execution_time_ms is not None
    assert completed.execution_time_ms >= total_ms(o) - 1e-3


async def test_middleware_shares_state_with_runner() -> None:
    """Middleware and runner share run.state; current_run() is the run inside both."""
    seen: list[Any] = []

    async def mw(run: RunContext, call_next: Any) -> Any:
        run.state["tenant"] = "acme"
        seen.append(current_run() is run)
        return await call_next(run)

    async def agent(run: RunContext) -> Any:
        seen.append(current_run() is run)
        return run.state["tenant"]

    result = await executor(agent, middleware=[mw]).execute()
    assert result.output == "acme" and seen == [True, True]
    assert current_run() is None


# ---------------------------------------------------------------------------- timeouts


async def test_timeout(bus: EventBus, rec: CapturingHandler) -> None:
    """A run longer than timeout_s ends with ERROR_OCCURRED error_type TimeoutError and an
    error result."""
    forever = asyncio.Event()

    async def stuck(run: RunContext) -> Any:
        await forever.wait()

    result = await executor(stuck, bus, timeout_s=0.01).execute()
    await bus.drain()
    assert result.success is False and result.error_type == "TimeoutError"
    assert rec.event_types == [EventType.AGENT_STARTED, EventType.ERROR_OCCURRED]
    assert rec.events[1].error_type == "TimeoutError"


async def test_cancellation_publishes_error_and_propagates(
    bus: EventBus, rec: CapturingHandler
) -> None:
    """Cancelling a running execute publishes ERROR_OCCURRED (CancelledError) and the
    CancelledError propagates to the caller."""
    entered = asyncio.Event()

    async def stuck(run: RunContext) -> Any:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(executor(stuck, bus).execute())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await bus.drain()
    assert rec.event_types == [EventType.AGENT_STARTED, EventType.ERROR_OCCURRED]
    assert rec.events[1].error_type == "CancelledError"
    assert rec.events[1].attributes[sc.ERROR_TYPE] == "CancelledError"


# ---------------------------------------------------------------------------- contexts


async def test_no_bus_runs_and_publishes_nothing() -> None:
    """Without a bus the run still returns a result; detaching the bus stops publishing."""
    bus = EventBus()
    rec = CapturingHandler()
    await bus.subscribe(EventType.ANY, rec)
    ex = executor(bus=bus)
    ex.set_event_bus(None)
    result = await ex.execute("hello")
    await bus.drain()
    assert result.success and result.output == "hello"
    assert rec.events == [] and bus.stats().published == 0
    failing = await executor(_raise).execute()
    assert failing.success is False and failing.error_type == "RuntimeError"


async def _raise(run: RunContext) -> Any:
    raise RuntimeError("fails")


@pytest.mark.parametrize(
    ("context", "expected_input", "user"),
    [
        ("just text", "just text", None),
        ({"input": "from dict", "user_id": "u9"}, "from dict", "u9"),
        (AgentContext(input={"q": 1}, user_id="u7"), {"q": 1}, "u7"),
        (None, None, None),
    ],
)
async def test_execute_accepts_str_dict_and_context(
    bus: EventBus, rec: CapturingHandler, context: Any, expected_input: Any, user: str | None
) -> None:
    """execute takes a str, a dict of AgentContext fields, an AgentContext or None."""
    result = await executor(bus=bus).execute(context)
    await bus.drain()
    assert result.output == expected_input
    assert [e.user_id for e in rec.events] == [user, user]


async def test_bad_context_dict_is_validation_error(bus: EventBus, rec: CapturingHandler) -> None:
    """A context mapping with an unknown key raises ValidationError naming it; nothing is
    published."""
    with pytest.raises(ValidationError) as info:
        await executor(bus=bus).execute({"input": "x", "usr_id": "u"})
    assert "usr_id" in str(info.value)
    with pytest.raises(ValidationError) as info2:
        await executor(bus=bus).execute({"metadata": "not a dict"})
    assert "metadata" in str(info2.value)
    await bus.drain()
    assert rec.events == []


def test_bad_constructor_arguments() -> None:
    """An empty agent_id or a non-AgentConfig config is rejected with a clear error."""
    with pytest.raises(ValueError, match="agent_id"):
        AgentExecutor(agent_id="", config=config())
    with pytest.raises(TypeError, match="AgentConfig"):
        AgentExecutor(agent_id="a", config={"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        AgentConfig(name="x", timeout_s=0)
    assert "timeout_s" in str(info.value)
    with pytest.raises(TypeError, match="EventBus"):
        executor().set_event_bus(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- trace ids


async def test_run_events_share_trace_and_span(bus: EventBus, rec: CapturingHandler) -> None:
    """All events of a run carry the run's trace id; run events carry the run span id;
    separate runs get separate traces."""

    async def mw(run: RunContext, call_next: Any) -> Any:
        return await call_next(run)

    ex = executor(bus=bus, middleware=[mw])
    r1 = await ex.execute()
    r2 = await ex.execute()
    await bus.drain()
    assert r1.trace_id != r2.trace_id
    first = [e for e in rec.events if e.causation_id == r1.run_id or e.event_id == r1.run_id]
    assert len(first) == 3
    assert {e.trace_id for e in first} == {r1.trace_id}
    for e in first:
        if e.event_type in MW_TYPES:
            assert e.parent_span_id == r1.span_id
        else:
            assert e.span_id == r1.span_id and e.parent_span_id is None
    assert len(r1.trace_id) == 32 and len(r1.span_id) == 16


async def test_nested_run_inherits_trace(bus: EventBus, rec: CapturingHandler) -> None:
    """A run started inside another run (even in a child task) uses the parent's trace id,
    the parent run span as parent, the parent's correlation id, and the parent run as
    cause of its AGENT_STARTED."""
    child = executor(bus=bus, agent_id="child", name="child")
    child_results: list[Any] = []

    async def parent_agent(run: RunContext) -> Any:
        child_results.append(await child.execute("inline"))
        child_results.append(await asyncio.create_task(child.execute("in a task")))
        return "parent done"

    parent = await executor(parent_agent, bus, agent_id="parent").execute()
    await bus.drain()
    assert len(child_results) == 2
    for cr in child_results:
        assert cr.trace_id == parent.trace_id
        assert cr.span_id != parent.span_id
        started = bus.get_event(cr.run_id)
        assert started is not None
        assert started.parent_span_id == parent.span_id
        assert started.causation_id == parent.run_id
        assert started.correlation_id == parent.run_id
        assert started.attributes[sc.AB_PARENT_AGENT_ID] == "parent"
        chain = bus.get_causation_chain(cr.run_id)
        assert [e.event_id for e in chain] == [parent.run_id, cr.run_id]


async def test_run_inside_foreign_otel_span_uses_it_as_parent(
    bus: EventBus, rec: CapturingHandler
) -> None:
    """A run inside a foreign OTel span (e.g. a web request) joins its trace with that span
    as parent; while the agent runs, the run span is the current OTel span, so framework
    spans nest under it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    inside: list[int] = []

    async def agent(run: RunContext) -> Any:
        inside.append(otel_trace.get_current_span().get_span_context().span_id)
        with tracer.start_as_current_span("framework.call"):
            pass
        return "ok"

    with tracer.start_as_current_span("http.request") as request_span:
        result = await executor(agent, bus).execute()
    req = request_span.get_span_context()
    await bus.drain()
    assert result.trace_id == f"{req.trace_id:032x}"
    started = rec.of_type(EventType.AGENT_STARTED)[0]
    assert started.parent_span_id == f"{req.span_id:016x}"
    assert inside == [int(result.span_id, 16)]
    framework = next(s for s in exporter.get_finished_spans() if s.name == "framework.call")
    assert framework.parent is not None
    assert framework.parent.span_id == int(result.span_id, 16)
    assert framework.context.trace_id == req.trace_id
    # after the run, the request span is current again
    provider.shutdown()


async def test_otel_context_restored_after_run() -> None:
    """After execute returns (or fails), the caller's OTel context is unchanged."""
    before = otel_trace.get_current_span()
    await executor().execute()
    await executor(_raise).execute()
    assert otel_trace.get_current_span() is before


# ---------------------------------------------------------------------------- models


async def test_register_model_runs_executor_without_agent(
    bus: EventBus, rec: CapturingHandler
) -> None:
    """An executor built without an agent uses the runner registered for its model."""
    configs: list[AgentConfig] = []

    def factory(cfg: AgentConfig) -> Callable[[RunContext], Any]:
        configs.append(cfg)

        async def runner(run: RunContext) -> Any:
            return f"{cfg.model}:{run.context.input}"

        return runner

    register_model("h-registered-model", factory)
    ex = AgentExecutor(agent_id="reg", config=config(model="h-registered-model"))
    ex.set_event_bus(bus)
    result = await ex.execute("ping")
    assert result.success and result.output == "h-registered-model:ping"
    assert configs and configs[0] is ex.config


async def test_unknown_model_without_runner_is_error_result(
    bus: EventBus, rec: CapturingHandler
) -> None:
    """An executor without agent whose model has no registered runner returns an error
    result naming the model (and how to fix it)."""
    ex = AgentExecutor(agent_id="lost", config=config(model="h-no-such-model"))
    ex.set_event_bus(bus)
    result = await ex.execute("x")
    await bus.drain()
    assert result.success is False
    assert result.error_message is not None and "h-no-such-model" in result.error_message
    assert "register_model" in result.error_message
    assert rec.event_types == [EventType.AGENT_STARTED, EventType.ERROR_OCCURRED]


async def test_publish_failure_does_not_break_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """If the bus refuses an event (closed), the run still completes and the failure is
    counted and logged."""
    bus = EventBus()
    await bus.close()
    ex = executor(bus=bus)
    result = await ex.execute("x")
    assert result.success and result.output == "x"
    assert ex.publish_failures == 2
    assert any("could not publish" in r.getMessage() for r in caplog.records)


async def test_run_emit_publishes_run_event(bus: EventBus, rec: CapturingHandler) -> None:
    """run.emit publishes an event carrying the run's ids."""

    async def agent(run: RunContext) -> Any:
        await run.emit(EventType.CUSTOM, metadata={"step": 1})
        return "ok"

    result = await executor(agent, bus).execute()
    await bus.drain()
    custom = rec.of_type(EventType.CUSTOM)[0]
    assert custom.metadata == {"step": 1}
    assert custom.trace_id == result.trace_id and custom.span_id == result.span_id
    assert custom.causation_id == result.run_id
    assert rec.event_types == [
        EventType.AGENT_STARTED, EventType.CUSTOM, EventType.AGENT_COMPLETED
    ]
