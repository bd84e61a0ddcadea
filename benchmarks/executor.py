"""The full executor path: a real pydantic-ai ``Agent(TestModel())`` with two tools.

Per agent run, in the same process and loop:

* ``bare``: ``await agent.run(prompt)`` (reference);
* ``pydantic-ai-otel``: the same agent with pydantic-ai's own OpenTelemetry instrumentation
  (``agent.instrument = InstrumentationSettings(tracer_provider=...)``, SDK tracer provider,
  ``BatchSpanProcessor`` to a no-op exporter, ``force_flush()`` at the end of the sample);
* ``execute-plain``: ``AgentExecutor.execute`` with a plain runner (``agent.run`` on the
  input, nothing else), no bus: the executor's own cost;
* ``execute-nobus``: ``AgentExecutor.execute`` through ``PydanticAIRunner``, no bus; the
  agent is built with ``capabilities=[AgentbusCapability()]`` (the adapter's documented fast
  path: exact tool timing without a per-run capability), the reference agent without it;
* ``execute-bus``: the same with a bus and no handlers;
* ``execute-prometheus`` / ``execute-otel`` / ``execute-logging``: one handler each;
* ``execute-all``: Prometheus (``PrometheusMetricsHandler`` on its own registry), OTel
  (``OTelSpanHandler`` with a ``BatchSpanProcessor`` to a no-op exporter) and logging
  (``LoggingHandler`` with structlog's JSON pipeline writing to ``os.devnull``), all
  subscribed to ``EventType.ANY``.

Bus cases end the sample with ``await bus.drain()`` (the handlers run in bus workers, so
their cost lands there), OTel cases with ``force_flush()``: the figure is end to end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from pydantic_ai import Agent
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel

from agentbus import (
    AgentConfig,
    AgentExecutor,
    AgentOutput,
    AgentRunner,
    EventBus,
    EventType,
    RunContext,
    TokenUsage,
    ToolCall,
)
from agentbus.adapters.pydantic_ai import AgentbusCapability, PydanticAIRunner
from exporters.logs import add_trace_context
from exporters.otel import OTelSpanHandler
from middleware.logging import LoggingHandler
from middleware.prometheus import PrometheusMetricsHandler

from .harness import BenchConfig, Case, Group, Probe

__all__ = ["NullSpanExporter", "build_agent", "executor_group", "instrumentation_group"]

PROMPT = "What is the weather in Paris, and what is 2 + 3?"


class NullSpanExporter(SpanExporter):
    """Accepts and discards spans (counts them), so export I/O is not what is measured."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count ``spans`` and report success."""
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing buffered."""
        return True


def build_agent(*, agentbus_capability: bool = False) -> Agent[None, str]:
    """A pydantic-ai agent on ``TestModel`` with two tools (TestModel calls both); with
    ``agentbus_capability`` it registers :class:`AgentbusCapability` (what PydanticAIRunner
    uses to time tool calls)."""
    agent: Agent[None, str] = Agent(
        TestModel(),
        name="bench",
        capabilities=[AgentbusCapability()] if agentbus_capability else None,
    )

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Weather in ``city``."""
        return f"sunny in {city}"

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Sum of two integers."""
        return a + b

    return agent


def _null_logger(sink: TextIO) -> Any:
    """structlog with the JSON pipeline of ``exporters.logs.configure_logging``, writing to
    ``sink`` (not configured globally, so nothing else in the process changes)."""
    return structlog.wrap_logger(
        structlog.WriteLogger(sink),
        processors=[
            structlog.processors.add_log_level,
            add_trace_context,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def _bare(instrumented: bool) -> Callable[[int, Probe], Any]:
    async def case(n: int, probe: Probe) -> int:
        agent = build_agent()
        provider: TracerProvider | None = None
        exporter = NullSpanExporter()
        if instrumented:
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(exporter))
            agent.instrument = InstrumentationSettings(tracer_provider=provider)
        with probe:
            for _ in range(n):
                result = await agent.run(PROMPT)
            if provider is not None:
                provider.force_flush()
        if provider is not None:
            provider.shutdown()
            if exporter.exported < n:
                raise RuntimeError(f"pydantic-ai exported {exporter.exported} spans for {n} runs")
        if not result.output:
            raise RuntimeError("agent produced no output")
        return n

    return case


def _plain_runner(agent: Agent[None, str]) -> AgentRunner:
    async def plain(run: RunContext) -> Any:
        return (await agent.run(run.context.input)).output

    return plain


_START = 1_700_000_000_000_000_000


async def _fixed_runner(run: RunContext | None) -> AgentOutput:
    """What ``PydanticAIRunner`` reports for the benchmark agent's run, without running it:
    token usage, two tool calls, the response model."""
    return AgentOutput(
        output='{"get_weather":"sunny in a","add":0}',
        usage=TokenUsage(input_tokens=103, output_tokens=19, requests=2),
        tool_calls=[
            ToolCall("get_weather", "call-1", _START, _START + 40_000),
            ToolCall("add", "call-2", _START + 10_000, _START + 50_000),
        ],
        response_model="test",
    )


def _execute(handlers: str, *, runner: str = "pydantic-ai") -> Callable[[int, Probe], Any]:
    """``handlers``: ``"none"`` (no bus), ``""`` (bus, no handler) or letters p, o, l;
    ``runner``: ``"pydantic-ai"`` (PydanticAIRunner), ``"plain"`` (``agent.run``) or
    ``"fixed"`` (no agent: :func:`_fixed_runner`)."""

    async def case(n: int, probe: Probe) -> int:
        agent = build_agent(agentbus_capability=runner == "pydantic-ai")
        bus: EventBus | None = None
        processor: BatchSpanProcessor | None = None
        exporter = NullSpanExporter()
        if handlers != "none":
            bus = EventBus()
            if "p" in handlers:
                await bus.subscribe(
                    EventType.ANY, PrometheusMetricsHandler(CollectorRegistry()), name="prom"
                )
            if "o" in handlers:
                processor = BatchSpanProcessor(exporter)
                await bus.subscribe(EventType.ANY, OTelSpanHandler(processor), name="otel")
        sink = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - set-up, closed after the sample
        if bus is not None and "l" in handlers:
            await bus.subscribe(EventType.ANY, LoggingHandler(_null_logger(sink)), name="log")
        executor = AgentExecutor(
            "bench-agent",
            AgentConfig(name="bench", model="test"),
            {"plain": _plain_runner(agent), "fixed": _fixed_runner}.get(runner)
            or PydanticAIRunner(agent),
            event_bus=bus,
        )
        with probe:
            for _ in range(n):
                result = await executor.execute(PROMPT)
            if bus is not None:
                await bus.drain()
            if processor is not None:
                processor.force_flush()
        if bus is not None:
            await bus.close()
        sink.close()
        if bus is not None:
            stats = bus.stats()
            if stats.handler_errors or sum(stats.dropped.values()):
                raise RuntimeError(f"executor bench: handler errors or drops: {stats}")
        if processor is not None:
            processor.shutdown()  # type: ignore[no-untyped-call]
            if exporter.exported < n:
                raise RuntimeError(f"OTel handler exported {exporter.exported} spans, {n} runs")
        if not result.success:
            raise RuntimeError(f"run failed: {result.error_type}: {result.error_message}")
        return n

    return case


SPLIT = 4
"""Samples per case per round: the runs of a round are split in 4 alternating samples."""


def _runs(cfg: BenchConfig) -> int:
    return max(1, cfg.runs // SPLIT)


def executor_group() -> Group:
    """One agent run, bare vs instrumented by pydantic-ai vs through the executor + bus."""
    return Group(
        key="executor",
        title="one pydantic-ai `TestModel` agent run (2 tool calls)",
        unit="run",
        reference="bare",
        samples_per_round=SPLIT,
        cases=[
            Case("bare", "`agent.run` bare (reference)", _bare(False),
                 size=_runs),
            Case("pydantic-ai-otel", "`agent.run` + pydantic-ai's own OTel instrumentation",
                 _bare(True), size=_runs,
                 note="SDK TracerProvider, BatchSpanProcessor → no-op exporter, flushed"),
            Case("execute-plain", "`execute` (plain runner: `agent.run`), no bus",
                 _execute("none", runner="plain"), size=_runs),
            Case("execute-nobus", "`execute` (PydanticAIRunner), no bus", _execute("none"),
                 size=_runs),
            Case("execute-bus", "`execute` + bus, no handlers", _execute(""),
                 size=_runs),
            Case("execute-prometheus", "`execute` + bus + Prometheus handler", _execute("p"),
                 size=_runs),
            Case("execute-otel", "`execute` + bus + OTel span handler", _execute("o"),
                 size=_runs),
            Case("execute-logging", "`execute` + bus + structlog logging handler",
                 _execute("l"), size=_runs),
            Case("execute-all", "`execute` + bus + Prometheus + OTel + logging",
                 _execute("pol"), size=_runs,
                 note="includes drain() and span flush; 2 events per run (started, completed)"),
        ],
    )


async def _fixed_direct(n: int, probe: Probe) -> int:
    with probe:
        for _ in range(n):
            result = await _fixed_runner(None)
    if not result.output:
        raise RuntimeError("fixed runner produced no output")
    return n


def instrumentation_group() -> Group:
    """The instrumentation's own cost per run, without the agent (precise: no 7 ms of agent
    work whose noise would swamp a few hundred µs)."""

    def size(cfg: BenchConfig) -> int:
        return max(1, cfg.n // 50)

    return Group(
        key="instrumentation",
        title="instrumentation cost per run without the agent (runner returns a fixed result)",
        unit="run",
        reference="runner",
        cases=[
            Case("runner", "the runner called directly (reference)", _fixed_direct, size=size),
            Case("execute-nobus", "`execute`, no bus", _execute("none", runner="fixed"),
                 size=size),
            Case("execute-bus", "`execute` + bus, no handlers", _execute("", runner="fixed"),
                 size=size),
            Case("execute-prometheus", "`execute` + bus + Prometheus handler",
                 _execute("p", runner="fixed"), size=size),
            Case("execute-otel", "`execute` + bus + OTel span handler",
                 _execute("o", runner="fixed"), size=size),
            Case("execute-logging", "`execute` + bus + structlog logging handler",
                 _execute("l", runner="fixed"), size=size),
            Case("execute-all", "`execute` + bus + Prometheus + OTel + logging",
                 _execute("pol", runner="fixed"), size=size,
                 note="the result the benchmark agent's PydanticAIRunner reports (usage, 2 "
                 "tool calls); includes drain() and span flush; 2 events per run"),
        ],
    )
