"""Exemplars on /metrics point at exported spans: metrics handler + span handler on one bus."""

from __future__ import annotations

import time

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

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
from exporters.otel import OTelSpanHandler
from exporters.prometheus import MetricsServer
from middleware.prometheus import PrometheusMetricsHandler


async def _answer(run: RunContext) -> AgentOutput:
    now = time.time_ns()
    return AgentOutput("ok", usage=TokenUsage(20, 5, 1),
                       tool_calls=[ToolCall("search", "c1", now - 2_000_000, now - 1_000_000)])


async def _broken(run: RunContext) -> AgentOutput:
    raise ConnectionError("upstream down")


async def test_exemplar_trace_ids_are_invoke_agent_spans() -> None:
    """Every exemplar trace id on the scrape is the trace of an exported invoke_agent span,
    and every run's trace shows up as an exemplar."""
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    bus = EventBus()
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry))
    await bus.subscribe(EventType.ANY, OTelSpanHandler(SimpleSpanProcessor(exporter)))
    results = []
    for i, runner in enumerate((_answer, _answer, _answer, _broken)):
        ex = AgentExecutor(f"agent{i}", AgentConfig(name=f"agent{i}", model="m"), runner,
                           event_bus=bus)
        results.append(await ex.execute("hi"))
    await bus.drain(timeout=5)

    with MetricsServer(registry, port=0) as server:
        async with httpx.AsyncClient() as client:
            response = await client.get(
                server.url, headers={"Accept": "application/openmetrics-text"}, timeout=10)
    await bus.close()
    assert response.status_code == 200

    exemplar_traces: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.exemplar is not None and "trace_id" in sample.exemplar.labels:
                exemplar_traces.add(sample.exemplar.labels["trace_id"])
    span_traces = {
        f"{s.context.trace_id:032x}" for s in exporter.get_finished_spans()
        if s.context is not None and s.name.startswith("invoke_agent ")
    }
    assert len(span_traces) == 4
    assert span_traces == {r.trace_id for r in results}
    assert exemplar_traces, "no exemplars on the OpenMetrics scrape"
    assert exemplar_traces <= span_traces
    assert exemplar_traces == span_traces  # distinct agents: every run's series has one
