"""PrometheusMetricsHandler: metrics from real executor runs on a real EventBus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from agentbus import (
    AgentConfig,
    AgentExecutor,
    AgentOutput,
    CheckpointManager,
    EventBus,
    EventType,
    RunContext,
    SessionManager,
    SubAgentEventType,
    SystemEvent,
    TokenUsage,
    ToolCall,
)
from agentbus import semconv as sc
from middleware.prometheus import PrometheusMetricsHandler

AGENT = "Support Agent"
MODEL = "test-model"


async def tool_runner(run: RunContext) -> AgentOutput:
    """A runner reporting usage, cost and two tool calls (one failed)."""
    now = time.time_ns()
    return AgentOutput(
        output=f"answer to {run.context.input}",
        usage=TokenUsage(input_tokens=120, output_tokens=30, requests=2),
        tool_calls=[
            ToolCall("lookup_order", "call-1", now - 3_000_000, now - 1_000_000),
            ToolCall("refund", "call-2", now - 900_000, now - 100_000, error_type="ValueError"),
        ],
        cost_usd=0.0025,
    )


async def failing_runner(run: RunContext) -> AgentOutput:
    """A runner that raises."""
    raise ConnectionError("model endpoint unreachable")


def make_executor(bus: EventBus, runner: object = tool_runner, **kwargs: object) -> AgentExecutor:
    config = AgentConfig(name=AGENT, description="helps", model=MODEL, provider="openai")
    return AgentExecutor("support", config, runner, event_bus=bus, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    yield b
    await b.close()


@pytest.fixture
async def handler(registry: CollectorRegistry, bus: EventBus) -> PrometheusMetricsHandler:
    h = PrometheusMetricsHandler(registry)
    await bus.subscribe(EventType.ANY, h, name="prometheus")
    return h


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0.0 when the series does not exist."""
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_successful_runs_record_runs_duration_tokens_cost_and_tools(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """Two successful runs count runs, durations, tokens, cost and each tool call."""
    ex = make_executor(bus)
    results = [await ex.execute("where is my order?") for _ in range(2)]
    await bus.drain()
    assert all(r.success for r in results)
    run = {"agent": AGENT, "model": MODEL, "status": "success"}
    assert value(registry, "agentbus_agent_runs_total", **run) == 2
    assert value(registry, "agentbus_agent_run_duration_seconds_count", **run) == 2
    expected_sum = sum(r.execution_time_ms for r in results) / 1000
    assert value(registry, "agentbus_agent_run_duration_seconds_sum", **run) == pytest.approx(
        expected_sum
    )
    assert value(registry, "agentbus_agent_tokens_total", agent=AGENT, model=MODEL,
                 type="input") == 240
    assert value(registry, "agentbus_agent_tokens_total", agent=AGENT, model=MODEL,
                 type="output") == 60
    assert value(registry, "agentbus_agent_cost_usd_total", agent=AGENT,
                 model=MODEL) == pytest.approx(0.005)
    assert value(registry, "agentbus_tool_calls_total", agent=AGENT, tool="lookup_order",
                 status="success") == 2
    assert value(registry, "agentbus_tool_calls_total", agent=AGENT, tool="refund",
                 status="error") == 2
    assert value(registry, "agentbus_tool_call_duration_seconds_count", agent=AGENT,
                 tool="lookup_order") == 2
    assert value(registry, "agentbus_tool_call_duration_seconds_sum", agent=AGENT,
                 tool="lookup_order") == pytest.approx(0.004)
    assert value(registry, "agentbus_events_total", event_type="agent_started") == 2
    assert value(registry, "agentbus_events_total", event_type="agent_completed") == 2
    assert value(registry, "agentbus_agent_runs_in_progress", agent=AGENT) == 0


async def test_genai_metrics_use_semconv_names_and_buckets(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """A run feeds gen_ai_client_token_usage and gen_ai_client_operation_duration_seconds."""
    result = await make_executor(bus).execute("hi")
    await bus.drain()
    base = {"gen_ai_operation_name": sc.OP_INVOKE_AGENT, "gen_ai_provider_name": "openai",
            "gen_ai_request_model": MODEL}
    assert value(registry, "gen_ai_client_token_usage_sum", **base,
                 gen_ai_token_type="input") == 120
    assert value(registry, "gen_ai_client_token_usage_count", **base,
                 gen_ai_token_type="output") == 1
    # 120 input tokens fall in the 256 bucket and not in the 64 one (semconv boundaries)
    assert value(registry, "gen_ai_client_token_usage_bucket", **base,
                 gen_ai_token_type="input", le="256.0") == 1
    assert value(registry, "gen_ai_client_token_usage_bucket", **base,
                 gen_ai_token_type="input", le="64.0") == 0
    assert value(registry, "gen_ai_client_operation_duration_seconds_sum", **base,
                 error_type="") == pytest.approx(result.execution_time_ms / 1000)
    bounds = {s.labels["le"] for m in registry.collect()
              if m.name == "gen_ai_client_operation_duration_seconds"
              for s in m.samples if s.name.endswith("_bucket")}
    assert bounds == {str(b) for b in sc.OPERATION_DURATION_BUCKETS_SECONDS} | {"+Inf"}


async def test_failed_run_records_error_status_and_error_type(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """A raising runner yields status=error runs and errors by error_type."""
    result = await make_executor(bus, failing_runner).execute("hi")
    await bus.drain()
    assert not result.success
    run = {"agent": AGENT, "model": MODEL, "status": "error"}
    assert value(registry, "agentbus_agent_runs_total", **run) == 1
    assert value(registry, "agentbus_agent_run_duration_seconds_count", **run) == 1
    assert value(registry, "agentbus_agent_errors_total", agent=AGENT,
                 error_type="ConnectionError") == 1
    assert value(registry, "gen_ai_client_operation_duration_seconds_count",
                 gen_ai_operation_name=sc.OP_INVOKE_AGENT, gen_ai_provider_name="openai",
                 gen_ai_request_model=MODEL, error_type="ConnectionError") == 1
    assert value(registry, "agentbus_agent_runs_in_progress", agent=AGENT) == 0


async def test_in_progress_gauge_follows_open_runs(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """The in-progress gauge counts runs started and not finished."""
    release = asyncio.Event()
    all_entered = asyncio.Event()
    entered = []

    async def slow(run: RunContext) -> str:
        entered.append(run.run_id)
        if len(entered) == 3:
            all_entered.set()
        await release.wait()
        return "done"

    ex = make_executor(bus, slow)
    tasks = [asyncio.create_task(ex.execute("x")) for _ in range(3)]
    await asyncio.wait_for(all_entered.wait(), 5)
    await bus.drain()
    assert value(registry, "agentbus_agent_runs_in_progress", agent=AGENT) == 3
    release.set()
    await asyncio.gather(*tasks)
    await bus.drain()
    assert value(registry, "agentbus_agent_runs_in_progress", agent=AGENT) == 0


async def test_in_progress_never_negative_when_start_was_missed(
    registry: CollectorRegistry, bus: EventBus
) -> None:
    """A handler subscribed mid-run does not decrement for a start it never saw."""
    release = asyncio.Event()

    async def slow(run: RunContext) -> str:
        await release.wait()
        return "done"

    ex = make_executor(bus, slow)
    task = asyncio.create_task(ex.execute("x"))
    await bus.wait_for(EventType.AGENT_STARTED, timeout=5)
    late = PrometheusMetricsHandler(registry)
    await bus.subscribe(EventType.ANY, late)
    release.set()
    await task
    await bus.drain()
    assert value(registry, "agentbus_agent_runs_total", agent=AGENT, model=MODEL,
                 status="success") == 1
    assert value(registry, "agentbus_agent_runs_in_progress", agent=AGENT) == 0


async def test_in_progress_pairs_spanless_seed_style_events(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """Hand-made start/complete events without span or causation ids still pair up."""
    await bus.publish(SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="seed_agent",
                                  metadata={"model": "gpt-4"}))
    await bus.drain()
    assert value(registry, "agentbus_agent_runs_in_progress", agent="seed_agent") == 1
    await bus.publish(SystemEvent(event_type=EventType.AGENT_COMPLETED, agent_id="seed_agent",
                                  metadata={"model": "gpt-4", "cost": 0.5},
                                  execution_time_ms=1500))
    await bus.publish(SystemEvent(event_type=EventType.AGENT_COMPLETED, agent_id="seed_agent",
                                  execution_time_ms=10))
    await bus.drain()
    assert value(registry, "agentbus_agent_runs_in_progress", agent="seed_agent") == 0
    assert value(registry, "agentbus_agent_run_duration_seconds_sum", agent="seed_agent",
                 model="gpt-4", status="success") == 1.5
    assert value(registry, "agentbus_agent_cost_usd_total", agent="seed_agent",
                 model="gpt-4") == 0.5
    assert value(registry, "agentbus_agent_runs_total", agent="seed_agent", model="unknown",
                 status="success") == 1


async def test_middleware_duration_and_failures(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """Executor middleware self time is observed; a raising middleware is a failure."""

    class Audit:
        name = "audit"

        async def __call__(self, run: RunContext, call_next: Any) -> Any:
            return await call_next(run)

    class Guardrail:
        name = "guardrail"

        async def __call__(self, run: RunContext, call_next: Any) -> Any:
            if run.context.input == "forbidden":
                raise PermissionError("blocked by guardrail")
            return await call_next(run)

    ex = make_executor(bus, middleware=[Audit(), Guardrail()])
    await ex.execute("fine")
    await ex.execute("forbidden")
    await bus.drain()
    assert value(registry, "agentbus_middleware_duration_seconds_count", agent=AGENT,
                 middleware="audit") == 2
    assert value(registry, "agentbus_middleware_duration_seconds_count", agent=AGENT,
                 middleware="guardrail") == 2
    assert value(registry, "agentbus_middleware_failures_total", agent=AGENT,
                 middleware="guardrail", error_type="PermissionError") == 1
    assert value(registry, "agentbus_middleware_failures_total", agent=AGENT,
                 middleware="audit", error_type="PermissionError") == 0
    assert value(registry, "agentbus_agent_errors_total", agent=AGENT,
                 error_type="PermissionError") == 1


async def test_sessions_and_checkpoints_use_the_agents_name(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """Session and checkpoint events count by agent; active sessions never go negative."""
    now = [0.0]
    sessions = SessionManager(bus, ttl_seconds=10, clock=lambda: now[0])
    checkpoints = CheckpointManager(bus)
    await make_executor(bus).execute("hi")  # teaches the handler support -> "Support Agent"
    for sid in ("s1", "s2", "s3"):
        await sessions.touch(sid, "support", user_id="u-42")
    await sessions.touch("s1", "support")  # existing: no new event
    cp = await checkpoints.save("support", {"step": 1})
    await checkpoints.restore(cp.checkpoint_id)
    await bus.drain()
    assert value(registry, "agentbus_sessions_created_total", agent=AGENT) == 3
    assert value(registry, "agentbus_sessions_active", agent=AGENT) == 3
    assert value(registry, "agentbus_checkpoints_total", agent=AGENT, operation="saved") == 1
    assert value(registry, "agentbus_checkpoints_total", agent=AGENT, operation="restored") == 1
    now[0] = 11.0
    expired = await sessions.expire_idle()
    await bus.publish(SystemEvent(event_type=EventType.SESSION_EXPIRED, agent_id="support",
                                  session_id="never-created"))
    await bus.drain()
    assert len(expired) == 3
    assert value(registry, "agentbus_sessions_expired_total", agent=AGENT) == 4
    assert value(registry, "agentbus_sessions_active", agent=AGENT) == 0


async def test_subagent_delegations_by_status(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """SubAgentEventType events count delegations by sub-agent and status."""
    for etype, sub in [(SubAgentEventType.SUBAGENT_SPAWNED, "driver_finder"),
                       (SubAgentEventType.SUBAGENT_SPAWNED, "pricing"),
                       (SubAgentEventType.SUBAGENT_COMPLETED, "driver_finder"),
                       (SubAgentEventType.SUBAGENT_FAILED, "pricing")]:
        await bus.publish(SystemEvent(event_type=etype, agent_id="dispatcher",
                                      attributes={sc.AB_SUBAGENT: sub}))
    await bus.drain()
    for sub, status, n in [("driver_finder", "spawned", 1), ("pricing", "spawned", 1),
                           ("driver_finder", "completed", 1), ("pricing", "failed", 1),
                           ("pricing", "completed", 0)]:
        assert value(registry, "agentbus_subagent_delegations_total", agent="dispatcher",
                     subagent=sub, status=status) == n
    assert value(registry, "agentbus_events_total", event_type="subagent_spawned") == 2


async def test_real_spawned_subagents_count_delegations_and_their_own_runs(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """executor.spawn publishes delegations labelled by parent name and sub-agent id."""
    taxi = AgentExecutor("car_hailing", AgentConfig(name="Car Hailing", model=MODEL),
                         tool_runner, event_bus=bus)
    pricing = AgentExecutor("pricing", AgentConfig(name="Pricing", model=MODEL),
                            failing_runner, event_bus=bus)

    async def dispatcher(run: RunContext) -> str:
        await run.executor.spawn(taxi, "find a car")
        await run.executor.spawn(pricing, "quote")
        return "delegated"

    parent = make_executor(bus, dispatcher)
    await parent.execute("get me to the airport")
    await parent.wait_subagents(timeout=5)
    await bus.drain()
    for sub, status, n in [("car_hailing", "spawned", 1), ("pricing", "spawned", 1),
                           ("car_hailing", "completed", 1), ("pricing", "failed", 1)]:
        assert value(registry, "agentbus_subagent_delegations_total", agent=AGENT,
                     subagent=sub, status=status) == n
    assert value(registry, "agentbus_agent_runs_total", agent="Car Hailing", model=MODEL,
                 status="success") == 1
    assert value(registry, "agentbus_agent_errors_total", agent="Pricing",
                 error_type="ConnectionError") == 1
    for agent in (AGENT, "Car Hailing", "Pricing"):
        assert value(registry, "agentbus_agent_runs_in_progress", agent=agent) == 0


async def test_custom_enum_event_types_are_counted(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """Events of a user Enum are counted in agentbus_events_total by their value."""

    class OrderEvents(Enum):
        ORDER_PLACED = "order_placed"

    for _ in range(3):
        await bus.publish(SystemEvent(event_type=OrderEvents.ORDER_PLACED, agent_id="shop"))
    await bus.drain()
    assert value(registry, "agentbus_events_total", event_type="order_placed") == 3


async def test_user_and_session_ids_never_become_labels(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """No sample carries a user id, session id or trace id as a label value."""
    result = await make_executor(bus).execute(
        {"input": "hi", "user_id": "user-123", "session_id": "sess-456"}
    )
    await bus.drain()
    values = {v for m in registry.collect() for s in m.samples for v in s.labels.values()}
    assert values
    assert not {"user-123", "sess-456", result.trace_id, result.span_id} & values


async def test_duration_histograms_carry_trace_id_exemplars(
    registry: CollectorRegistry, bus: EventBus, handler: PrometheusMetricsHandler
) -> None:
    """The OpenMetrics exposition has run-duration exemplars with the runs' trace ids."""
    ex = make_executor(bus)
    results = [await ex.execute("a"), await make_executor(bus, failing_runner).execute("b")]
    await bus.drain()
    text = openmetrics_latest(registry).decode()
    exemplar_ids: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.exemplar is not None:
                exemplar_ids.setdefault(family.name, set()).add(s.exemplar.labels["trace_id"])
    assert exemplar_ids["agentbus_agent_run_duration_seconds"] == {r.trace_id for r in results}
    assert exemplar_ids["gen_ai_client_operation_duration_seconds"] == {
        r.trace_id for r in results
    }
    assert exemplar_ids["agentbus_tool_call_duration_seconds"] == {results[0].trace_id}


async def test_exemplars_can_be_switched_off(
    registry: CollectorRegistry, bus: EventBus
) -> None:
    """With exemplars=False the OpenMetrics output has no exemplars."""
    await bus.subscribe(EventType.ANY, PrometheusMetricsHandler(registry, exemplars=False))
    await make_executor(bus).execute("a")
    await bus.drain()
    text = openmetrics_latest(registry).decode()
    assert "agentbus_agent_run_duration_seconds_bucket" in text
    assert " # {" not in text


async def test_handler_never_raises_and_counts_its_failures(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed attributes are ignored; an unrecordable object is logged and counted."""
    h = PrometheusMetricsHandler(registry)
    weird = SystemEvent(
        event_type=EventType.AGENT_COMPLETED, agent_id="a",
        attributes={sc.GEN_AI_USAGE_INPUT_TOKENS: "many", sc.AB_TOOL_CALLS: "not a list",
                    sc.AB_COST_USD: -3, sc.GEN_AI_USAGE_OUTPUT_TOKENS: float("nan")},
    )
    await h(weird)
    assert value(registry, "agentbus_agent_runs_total", agent="a", model="unknown",
                 status="success") == 1
    assert value(registry, "agentbus_agent_tokens_total", agent="a", model="unknown",
                 type="input") == 0
    await h(None)  # type: ignore[arg-type]
    assert value(registry, "agentbus_metrics_handler_errors_total") == 1
    assert "could not record" in caplog.text


def test_bad_arguments_are_rejected_with_a_clear_error(registry: CollectorRegistry) -> None:
    """A bad label_limit or registry raises ValueError naming it."""
    with pytest.raises(ValueError, match="label_limit"):
        PrometheusMetricsHandler(registry, label_limit=0)
    with pytest.raises(ValueError, match="registry"):
        PrometheusMetricsHandler(object())  # type: ignore[arg-type]


def test_one_handler_per_registry(registry: CollectorRegistry) -> None:
    """A second handler on the same registry is refused (duplicate metric names)."""
    PrometheusMetricsHandler(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetricsHandler(registry)
