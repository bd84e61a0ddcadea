"""Tests of exporters.otel.OTelSpanHandler: spans from real executor runs (in-memory exporter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentbus import (
    AgentConfig,
    AgentExecutor,
    AgentOutput,
    CheckpointManager,
    EventBus,
    EventType,
    ExecutionResult,
    RunContext,
    SessionManager,
    SystemEvent,
    TokenUsage,
    ToolCall,
    new_span_id,
    new_trace_id,
)
from agentbus import semconv as sc
from exporters.otel import OTelSpanHandler

Runner = Callable[[RunContext], Awaitable[Any]]


class Harness:
    """A bus with the span handler (in-memory exporter) and an event recorder."""

    def __init__(self, **handler_kwargs: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.handler = OTelSpanHandler(SimpleSpanProcessor(self.exporter), **handler_kwargs)
        self.bus = EventBus()
        self.events: list[SystemEvent] = []

    async def start(self) -> Harness:
        await self.bus.subscribe(EventType.ANY, self.handler)

        async def record(event: SystemEvent) -> None:
            self.events.append(event)

        await self.bus.subscribe(EventType.ANY, record)
        return self

    def executor(self, runner: Runner, *, agent_id: str = "a1", name: str = "planner",
                 middleware: tuple[Any, ...] = ()) -> AgentExecutor:
        cfg = AgentConfig(name=name, model="test-model", provider="acme")
        return AgentExecutor(agent_id, cfg, runner, middleware=middleware, event_bus=self.bus)

    async def spans(self) -> list[ReadableSpan]:
        await self.bus.close()
        return list(self.exporter.get_finished_spans())


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.context
    assert ctx is not None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent is not None else None


async def tool_runner(run: RunContext) -> AgentOutput:
    """Two tool calls that really run concurrently (``search`` spans ``weather``), plus
    token usage."""
    search_started = asyncio.Event()
    weather_done = asyncio.Event()
    calls: list[ToolCall] = []

    async def search() -> None:
        start = time.time_ns()
        search_started.set()
        await weather_done.wait()
        calls.append(ToolCall("search", "c1", start, time.time_ns()))

    async def weather() -> None:
        await search_started.wait()
        start = time.time_ns()
        await asyncio.sleep(0.005)
        calls.append(ToolCall("weather", "c2", start, time.time_ns()))
        weather_done.set()

    await asyncio.gather(search(), weather())
    return AgentOutput(
        output="done",
        usage=TokenUsage(input_tokens=120, output_tokens=30, requests=2),
        tool_calls=sorted(calls, key=lambda c: c.call_id or ""),
        response_model="test-model-2025",
    )


class Timing:
    """An executor middleware (class with a name)."""

    name = "timing"

    async def __call__(self, run: RunContext, call_next: Any) -> Any:
        return await call_next(run)


async def test_run_span_with_genai_attributes() -> None:
    """One invoke_agent span per run, INTERNAL, with the events' ids and GenAI attributes."""
    h = await Harness().start()
    result = await h.executor(tool_runner).execute(
        {"input": "hi", "user_id": "u1", "session_id": "sess-1"}
    )
    spans = await h.spans()
    [run] = by_name(spans, "invoke_agent planner")
    assert run.kind is SpanKind.INTERNAL
    assert ids(run) == (result.trace_id, result.span_id)
    assert run.parent is None
    attrs = dict(run.attributes or {})
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert attrs[sc.GEN_AI_AGENT_NAME] == "planner"
    assert attrs[sc.GEN_AI_AGENT_ID] == "a1"
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "test-model"
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "test-model-2025"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "acme"
    assert attrs[sc.GEN_AI_CONVERSATION_ID] == "sess-1"
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert attrs[sc.AB_RUN_ID] == result.run_id
    assert sc.ERROR_TYPE not in attrs and sc.USER_ID not in attrs
    assert run.status.status_code is StatusCode.UNSET
    done = next(e for e in h.events if e.event_type is EventType.AGENT_COMPLETED)
    assert run.start_time == done.attributes[sc.AB_START_TIME_NS]
    assert run.end_time == done.attributes[sc.AB_END_TIME_NS]
    assert run.instrumentation_scope is not None
    assert run.instrumentation_scope.name == "agentbus"
    assert run.resource.attributes["service.name"] == "agentbus"


async def test_tool_spans_are_overlapping_children() -> None:
    """Each tool call is an execute_tool child of the run span with its own times."""
    h = await Harness().start()
    result = await h.executor(tool_runner).execute("hi")
    spans = await h.spans()
    [search] = by_name(spans, "execute_tool search")
    [weather] = by_name(spans, "execute_tool weather")
    for span, call in zip((search, weather), result.tool_calls, strict=True):
        assert span.kind is SpanKind.INTERNAL
        assert ids(span)[0] == result.trace_id
        assert parent_id(span) == result.span_id
        assert ids(span)[1] != result.span_id
        assert (span.start_time, span.end_time) == (
            call.start_time_unix_nano, call.end_time_unix_nano)
        attrs = dict(span.attributes or {})
        assert attrs[sc.GEN_AI_OPERATION_NAME] == "execute_tool"
        assert attrs[sc.GEN_AI_TOOL_NAME] == call.name
        assert attrs[sc.GEN_AI_TOOL_CALL_ID] == call.call_id
    assert search.start_time is not None and weather.start_time is not None
    assert search.end_time is not None and weather.end_time is not None
    # The two intervals overlap (the calls ran concurrently).
    assert max(search.start_time, weather.start_time) < min(search.end_time, weather.end_time)


async def test_middleware_spans_use_event_ids() -> None:
    """Each middleware is a child span whose id is its MIDDLEWARE_EXECUTED event's span_id."""

    async def audit(run: RunContext, call_next: Any) -> Any:
        return await call_next(run)

    h = await Harness().start()
    result = await h.executor(tool_runner, middleware=(Timing(), audit)).execute("hi")
    spans = await h.spans()
    mw_events = {e.attributes[sc.AB_MIDDLEWARE]: e for e in h.events
                 if e.event_type is EventType.MIDDLEWARE_EXECUTED}
    assert len(mw_events) == 2
    for name, event in mw_events.items():
        [span] = by_name(spans, f"middleware {name}")
        assert ids(span) == (result.trace_id, event.span_id)
        assert parent_id(span) == result.span_id
        assert span.start_time == event.attributes[sc.AB_START_TIME_NS]
        assert span.end_time == event.attributes[sc.AB_END_TIME_NS]
        assert span.status.status_code is StatusCode.UNSET


async def test_failing_run_records_error_type_without_message() -> None:
    """A failed run: status ERROR and error.type, but the message (content) is not exported."""

    async def boom(run: RunContext) -> Any:
        raise KeyError("customer 42 not found")

    h = await Harness().start()
    result = await h.executor(boom).execute("hi")
    spans = await h.spans()
    [run] = spans
    assert ids(run) == (result.trace_id, result.span_id)
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description is None
    assert dict(run.attributes or {})[sc.ERROR_TYPE] == "KeyError"
    assert "customer 42" not in run.to_json()
    assert run.events == ()


async def test_failing_middleware_span_gets_error_type() -> None:
    """A failing middleware span carries error.type and ERROR status, as does the run."""

    async def guard(run: RunContext, call_next: Any) -> Any:
        await call_next(run)
        raise PermissionError("blocked for bob@example.com")

    h = await Harness().start()
    await h.executor(tool_runner, middleware=(guard,)).execute("hi")
    spans = await h.spans()
    [mw] = [s for s in spans if s.name.startswith("middleware ")]
    assert dict(mw.attributes or {})[sc.ERROR_TYPE] == "PermissionError"
    assert mw.status.status_code is StatusCode.ERROR and mw.status.description is None
    [run] = by_name(spans, "invoke_agent planner")
    assert dict(run.attributes or {})[sc.ERROR_TYPE] == "PermissionError"
    assert all("bob@example.com" not in s.to_json() for s in spans)


async def test_failed_tool_call_gets_error_type() -> None:
    """A tool call that failed (in a successful run) is an ERROR span with error.type."""

    async def runner(run: RunContext) -> AgentOutput:
        return AgentOutput("x", tool_calls=[ToolCall("fetch", "c9", 10, 20, "TimeoutError")])

    h = await Harness().start()
    await h.executor(runner).execute("hi")
    spans = await h.spans()
    [tool] = by_name(spans, "execute_tool fetch")
    assert dict(tool.attributes or {})[sc.ERROR_TYPE] == "TimeoutError"
    assert tool.status.status_code is StatusCode.ERROR
    [run] = by_name(spans, "invoke_agent planner")
    assert run.status.status_code is StatusCode.UNSET


async def test_error_without_type_falls_back_to_other() -> None:
    """An ERROR_OCCURRED event without error_type gets error.type=_OTHER."""
    exporter = InMemorySpanExporter()
    handler = OTelSpanHandler(SimpleSpanProcessor(exporter))
    trace_id, span_id = new_trace_id(), new_span_id()
    await handler(SystemEvent(event_type=EventType.ERROR_OCCURRED, agent_id="x",
                              trace_id=trace_id, span_id=span_id, execution_time_ms=5.0))
    [span] = exporter.get_finished_spans()
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "_OTHER"
    assert span.name == "invoke_agent x"
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 5_000_000


async def test_checkpoint_and_session_events_become_span_events() -> None:
    """Checkpoints and sessions inside a run are span events on that run's span."""
    h = await Harness().start()
    checkpoints = CheckpointManager(h.bus)
    sessions = SessionManager(h.bus)

    async def runner(run: RunContext) -> str:
        await sessions.touch("sess-9", run.agent_id)
        cp = await checkpoints.save(run.agent_id, {"step": 1})
        await checkpoints.restore(cp.checkpoint_id)
        await run.emit(EventType.CUSTOM, attributes={"app.phase": "plan"})
        return "ok"

    await h.executor(runner).execute("hi")
    await sessions.touch("outside-any-run", "a1")
    spans = await h.spans()
    [run] = spans
    names = [e.name for e in run.events]
    assert names == ["session_created", "checkpoint_saved", "checkpoint_restored", "custom"]
    saved = next(e for e in h.events if e.event_type is EventType.CHECKPOINT_SAVED)
    span_event = run.events[1]
    assert dict(span_event.attributes or {})[sc.AB_CHECKPOINT_ID] == (
        saved.attributes[sc.AB_CHECKPOINT_ID])
    assert dict(run.events[3].attributes or {})["app.phase"] == "plan"
    assert h.handler.unattached_events == 1


async def test_framework_instrumented_run_is_a_plain_wrapper_without_tool_spans() -> None:
    """When the framework owns the GenAI spans, the run span is a plain agentbus.run wrapper
    (same ids, no GenAI operation or usage) and no tool span is emitted (no duplicates)."""

    async def runner(run: RunContext) -> AgentOutput:
        run.usage.add(TokenUsage(input_tokens=5, output_tokens=2, requests=1))
        return AgentOutput("x", tool_calls=[ToolCall("search", "c1", 1, 2)],
                           framework_instrumented=True, provider_name="openai")

    h = await Harness().start()
    result = await h.executor(runner).execute("hi")
    spans = await h.spans()
    assert [s.name for s in spans] == ["agentbus.run planner"]
    [run] = spans
    assert run.context is not None and f"{run.context.span_id:016x}" == result.span_id
    attrs = dict(run.attributes or {})
    assert sc.GEN_AI_OPERATION_NAME not in attrs
    assert not {sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_PROVIDER_NAME,
                sc.GEN_AI_REQUEST_MODEL} & attrs.keys()
    assert attrs[sc.GEN_AI_AGENT_NAME] == "planner"
    assert attrs[sc.AB_RUN_ID] == result.run_id and attrs[sc.AB_REQUESTS] == 1
    assert result.tool_calls  # the tool call is still reported (for metrics)


async def test_framework_instrumented_failed_run_wrapper_keeps_error_type() -> None:
    """A failed run with framework instrumentation keeps error.type and ERROR status."""

    async def runner(run: RunContext) -> AgentOutput:
        run.state[sc.AB_FRAMEWORK_INSTRUMENTED] = True
        raise TimeoutError("slow")

    h = await Harness().start()
    result = await h.executor(runner).execute("hi")
    [run] = await h.spans()
    assert not result.success and run.name == "agentbus.run planner"
    assert dict(run.attributes or {})[sc.ERROR_TYPE] == "TimeoutError"
    assert run.status.status_code is StatusCode.ERROR


async def test_sub_agent_runs_are_children_across_tasks() -> None:
    """Sub-agent runs (awaited directly and in a separate task) nest under the parent span."""
    h = await Harness().start()
    sub = h.executor(tool_runner, agent_id="sub", name="researcher")
    sub_results: list[ExecutionResult] = []

    async def parent(run: RunContext) -> str:
        sub_results.append(await sub.execute("direct"))
        task = asyncio.create_task(sub.execute("in a task"))
        sub_results.append(await task)
        return "ok"

    result = await h.executor(parent).execute("hi")
    spans = await h.spans()
    subs = by_name(spans, "invoke_agent researcher")
    assert len(subs) == 2
    for span, sub_result in zip(subs, sub_results, strict=True):
        assert ids(span) == (result.trace_id, sub_result.span_id)
        assert parent_id(span) == result.span_id
        assert dict(span.attributes or {})[sc.AB_PARENT_AGENT_ID] == "a1"
        tools = [s for s in spans if s.name.startswith("execute_tool")
                 and parent_id(s) == sub_result.span_id]
        assert len(tools) == 2
    assert {ids(s)[0] for s in spans} == {result.trace_id}


async def test_late_event_becomes_child_span() -> None:
    """An event for an already-ended run becomes a zero-length child span, counted."""
    h = await Harness().start()

    async def runner(run: RunContext) -> str:
        return "ok"

    result = await h.executor(runner).execute("hi")
    await h.bus.publish(SystemEvent(
        event_type=EventType.CUSTOM, agent_id="a1", trace_id=result.trace_id,
        span_id=result.span_id, attributes={sc.AB_SUBAGENT: "sub"}))
    spans = await h.spans()
    [late] = by_name(spans, "custom")
    assert parent_id(late) == result.span_id and ids(late)[0] == result.trace_id
    assert late.start_time == late.end_time
    assert dict(late.attributes or {})[sc.AB_SUBAGENT] == "sub"
    assert h.handler.late_events == 1


async def test_open_runs_are_bounded() -> None:
    """Beyond max_open_runs the oldest open run is evicted and counted; spans still emitted."""
    exporter = InMemorySpanExporter()
    handler = OTelSpanHandler(SimpleSpanProcessor(exporter), max_open_runs=2)
    trace = new_trace_id()
    spans = [new_span_id() for _ in range(3)]
    for sid in spans:
        await handler(SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="x",
                                  trace_id=trace, span_id=sid))
    assert (handler.open_runs, handler.evicted_runs) == (2, 1)
    for sid in spans:
        await handler(SystemEvent(event_type=EventType.AGENT_COMPLETED, agent_id="x",
                                  trace_id=trace, span_id=sid, execution_time_ms=1.0))
    assert handler.open_runs == 0
    assert sorted(ids(s)[1] for s in exporter.get_finished_spans()) == sorted(spans)


async def test_span_events_per_run_are_bounded() -> None:
    """More than max_events_per_span events on one run are dropped and counted."""
    h = await Harness(max_events_per_span=2).start()

    async def runner(run: RunContext) -> str:
        for i in range(5):
            await run.emit(EventType.CUSTOM, attributes={"i": i})
        return "ok"

    await h.executor(runner).execute("hi")
    [run] = await h.spans()
    assert [dict(e.attributes or {})["i"] for e in run.events] == [0, 1]
    assert h.handler.dropped_events == 3


async def test_processor_failure_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A span processor that raises never breaks the bus or the agent."""

    class Broken(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("exporter down")

    handler = OTelSpanHandler(Broken(InMemorySpanExporter()))
    bus = EventBus()
    await bus.subscribe(EventType.ANY, handler)
    ex = AgentExecutor("a1", AgentConfig(name="n"), tool_runner, event_bus=bus)
    result = await ex.execute("hi")
    await bus.drain()
    assert result.success
    assert handler.errors == 1  # the run span; the tool spans are never reached
    assert [s.errors for s in bus.stats().subscriptions] == [0]
    assert "could not handle agent_completed" in caplog.text
    await bus.close()


def test_bad_arguments_rejected() -> None:
    """Wrong processor, redactor or bounds raise clear errors."""
    with pytest.raises(TypeError, match="SpanProcessor"):
        OTelSpanHandler(object())  # type: ignore[arg-type]
    proc = SimpleSpanProcessor(InMemorySpanExporter())
    with pytest.raises(TypeError, match="redactor"):
        OTelSpanHandler(proc, redactor=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_open_runs"):
        OTelSpanHandler(proc, max_open_runs=0)
    with pytest.raises(ValueError, match="max_events_per_span"):
        OTelSpanHandler(proc, max_events_per_span=-1)
