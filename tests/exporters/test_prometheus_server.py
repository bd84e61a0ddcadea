"""MetricsServer: real HTTP scrapes of /metrics in both formats, exemplars, promtool."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from enum import Enum
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

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
    SubAgentEventType,
    SystemEvent,
    TokenUsage,
    ToolCall,
)
from agentbus import semconv as sc
from exporters.prometheus import MetricsServer, register_bus_metrics
from middleware.prometheus import PrometheusMetricsHandler
from tests.conftest import free_port

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


async def answer(run: RunContext) -> AgentOutput:
    """A runner reporting usage, cost and a tool call."""
    now = time.time_ns()
    return AgentOutput(
        output="ok",
        usage=TokenUsage(input_tokens=50, output_tokens=12, requests=1),
        tool_calls=[ToolCall("search", "c1", now - 2_000_000, now - 500_000)],
        cost_usd=0.001,
    )


async def broken(run: RunContext) -> AgentOutput:
    """A runner that raises."""
    raise TimeoutError("model took too long")


class Timing:
    name = "timing"

    async def __call__(self, run: RunContext, call_next: Any) -> Any:
        return await call_next(run)


class Shop(Enum):
    ORDER_PLACED = "order_placed"


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    yield b
    await b.close(timeout=5)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    s = MetricsServer(registry, port=0)
    s.start()
    yield s
    s.stop()


async def realistic_mix(bus: EventBus, registry: CollectorRegistry) -> list[ExecutionResult]:
    """Runs (ok and failing, with middleware), sessions, checkpoints, delegations, a custom
    event, and a handler error, all observed by the metrics handler and bus collector."""
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry), name="prometheus")
    register_bus_metrics(bus, registry)

    async def flaky(ev: SystemEvent) -> None:
        if ev.event_type is Shop.ORDER_PLACED:
            raise RuntimeError("flaky consumer")

    await bus.subscribe(EventType.ANY, flaky, name="flaky")
    cfg = AgentConfig(name="Concierge", model="test-model", provider="openai")
    good = AgentExecutor("concierge", cfg, answer, middleware=[Timing()], event_bus=bus)
    bad = AgentExecutor("concierge", cfg, broken, event_bus=bus)
    sessions = SessionManager(bus, ttl_seconds=60)
    checkpoints = CheckpointManager(bus)
    results = []
    for i in range(3):
        await sessions.touch(f"s{i}", "concierge", user_id=f"user-{i}")
        results.append(await good.execute({"input": "book a table", "session_id": f"s{i}"}))
    results.append(await bad.execute("and a taxi"))
    cp = await checkpoints.save("concierge", {"step": 2})
    await checkpoints.restore(cp.checkpoint_id)
    for etype in (SubAgentEventType.SUBAGENT_SPAWNED, SubAgentEventType.SUBAGENT_COMPLETED):
        await bus.publish(SystemEvent(event_type=etype, agent_id="concierge",
                                      attributes={sc.AB_SUBAGENT: "taxi_finder"}))
    await bus.publish(SystemEvent(event_type=Shop.ORDER_PLACED, agent_id="shop"))
    await bus.drain(timeout=5)
    return results


async def scrape(url: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url, headers=headers)
    response.raise_for_status()
    return response


async def test_scrape_prometheus_text_format(
    bus: EventBus, registry: CollectorRegistry, server: MetricsServer
) -> None:
    """A plain scrape returns the Prometheus text format with agent and bus metrics."""
    await realistic_mix(bus, registry)
    response = await scrape(server.url)
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'agentbus_agent_runs_total{agent="Concierge",model="test-model",status="success"} 3.0' \
        in text
    assert "agentbus_bus_events_published_total " in text
    assert 'agentbus_bus_handler_errors_total{handler="flaky"} 1.0' in text
    assert "# EOF" not in text
    assert " # {" not in text  # exemplars are OpenMetrics-only


async def test_scrape_openmetrics_has_exemplars_with_the_runs_trace_ids(
    bus: EventBus, registry: CollectorRegistry, server: MetricsServer
) -> None:
    """Accept: application/openmetrics-text yields exemplars whose trace ids are the runs'."""
    results = await realistic_mix(bus, registry)
    response = await scrape(server.url, OPENMETRICS)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    exemplar_ids: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        if family.name == "agentbus_agent_run_duration_seconds":
            exemplar_ids |= {s.exemplar.labels["trace_id"] for s in family.samples
                             if s.exemplar is not None}
    assert exemplar_ids
    assert exemplar_ids <= {r.trace_id for r in results}
    # each status series keeps its latest exemplar per bucket: the failed run is among them
    assert results[-1].trace_id in exemplar_ids


async def test_every_run_trace_id_appears_as_an_exemplar(
    bus: EventBus, registry: CollectorRegistry, server: MetricsServer
) -> None:
    """Runs with distinct agents land in distinct series, so every trace id is scraped."""
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry))
    results = []
    for i in range(4):
        ex = AgentExecutor(f"agent{i}", AgentConfig(name=f"agent{i}", model="m"), answer,
                           event_bus=bus)
        results.append(await ex.execute("hi"))
    await bus.drain(timeout=5)
    response = await scrape(server.url, "application/openmetrics-text")
    found = {s.exemplar.labels["trace_id"]
             for f in text_string_to_metric_families(response.text)
             if f.name == "agentbus_agent_run_duration_seconds"
             for s in f.samples if s.exemplar is not None}
    assert found == {r.trace_id for r in results}


async def test_promtool_check_metrics_finds_no_problems(
    bus: EventBus, registry: CollectorRegistry, server: MetricsServer
) -> None:
    """`promtool check metrics` on a scrape after a realistic mix prints nothing, exits 0."""
    await realistic_mix(bus, registry)
    text = (await scrape(server.url)).text
    assert "gen_ai_client_token_usage_bucket" in text
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/promtool", "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    assert (out + err).decode().strip() == ""
    assert proc.returncode == 0


def test_server_binds_loopback_and_reports_its_port(registry: CollectorRegistry) -> None:
    """Default host is 127.0.0.1; port=0 picks a free port reported in .port and .url."""
    server = MetricsServer(registry, port=0)
    assert server.host == "127.0.0.1"
    with server:
        assert server.running
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        response = httpx.get(server.url, timeout=10)
        assert response.status_code == 200
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


def test_server_on_a_given_port_and_port_in_use(registry: CollectorRegistry) -> None:
    """An explicit port is used; a second server on it fails with OSError."""
    port = free_port()
    first = MetricsServer(registry, port=port)
    first.start()
    try:
        assert first.port == port
        with pytest.raises(OSError):
            MetricsServer(registry, port=port).start()
        with pytest.raises(RuntimeError, match="already serving"):
            first.start()
    finally:
        first.stop()
    first.stop()  # idempotent


def test_server_rejects_a_bad_port(registry: CollectorRegistry) -> None:
    """A port outside 0..65535 raises ValueError naming it."""
    with pytest.raises(ValueError, match="port"):
        MetricsServer(registry, port=70_000)


def test_default_port_is_the_documented_one(registry: CollectorRegistry) -> None:
    """Without a port the server is configured for 9464."""
    assert MetricsServer(registry).port == 9464


def test_loopback_only(registry: CollectorRegistry) -> None:
    """The default server's socket is bound to 127.0.0.1, not all interfaces."""
    with MetricsServer(registry, port=0) as server:
        assert server.address == ("127.0.0.1", server.port)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    assert server.address is None
