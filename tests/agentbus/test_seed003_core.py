"""Seed 003's core examples, run as tests.

Every code example of the sections "EventBus 基础" (创建 / 订阅 / 发布 / 取消订阅) and
"与 Executor 集成" (设置 EventBus, 事件流, 错误事件流) is copied verbatim between the
``seed 003 ... (verbatim)`` markers; only the import lines changed, to
``from agentbus import EventBus, EventType, SystemEvent, AgentExecutor, AgentConfig``.
What the seed leaves undefined (``log_all_events``, ``handler``, ``context``, a runner for
model ``"gpt-3.5-turbo"``) is defined outside the markers, with real pydantic-ai agents
(``TestModel`` / ``FunctionModel``, offline) behind the model name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

import agentbus.executor
from agentbus import AgentContext, RunContext, register_model
from agentbus.adapters.pydantic_ai import PydanticAIRunner

# isort: off
# The seed's import lines (``from src.agent_runtime.event_bus import ...``), changed to:
from agentbus import EventBus, EventType, SystemEvent, AgentExecutor, AgentConfig
# isort: on

SEED_MODEL = "gpt-3.5-turbo"


class Recorder:
    """Records events (stands in for the seed's handlers)."""

    def __init__(self) -> None:
        self.events: list[SystemEvent] = []

    async def __call__(self, event: SystemEvent) -> None:
        self.events.append(event)

    def types(self) -> list[Any]:
        """Event types in delivery order."""
        return [e.event_type for e in self.events]


@pytest.fixture
def seed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register a real pydantic-ai agent (TestModel) as the runner of "gpt-3.5-turbo";
    the previous registration is restored afterwards."""
    monkeypatch.delitem(agentbus.executor._MODELS, SEED_MODEL, raising=False)
    register_model(
        SEED_MODEL,
        lambda cfg: PydanticAIRunner(
            Agent(TestModel(custom_output_text="Hi from TestModel"), name=cfg.name)
        ),
    )


@pytest.fixture
def failing_seed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register, for "gpt-3.5-turbo", a real pydantic-ai agent whose model call fails."""

    def unavailable(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ConnectionError("model endpoint unavailable")

    monkeypatch.delitem(agentbus.executor._MODELS, SEED_MODEL, raising=False)
    register_model(
        SEED_MODEL, lambda cfg: PydanticAIRunner(Agent(FunctionModel(unavailable), name=cfg.name))
    )


@pytest.fixture
async def event_bus() -> AsyncIterator[EventBus]:
    """The seed's ``event_bus``, closed after the test."""
    bus = EventBus()
    yield bus
    await bus.close()


# ---------------------------------------------------------------------------- EventBus 基础


async def test_create_event_bus() -> None:
    """创建 EventBus: both constructions of the seed work and keep their settings."""
    # --- seed 003 "创建 EventBus" (verbatim) ---
    # 创建基本的事件总线
    event_bus = EventBus()

    # 或者使用依赖注入
    event_bus = EventBus(
        max_queue_size=1000,     # 最大队列大小
        enable_metrics=True,     # 启用指标收集
    )
    # --- end of seed ---
    assert event_bus.max_queue_size == 1000 and event_bus.enable_metrics is True
    assert EventBus().max_queue_size == 1000
    await event_bus.close()


async def test_subscribe_events(capsys: pytest.CaptureFixture[str]) -> None:
    """订阅事件: the single-type handler prints for AGENT_STARTED, the ANY handler sees
    every event."""
    event_bus = EventBus()
    log_all = Recorder()
    log_all_events = log_all

    # --- seed 003 "订阅事件" (verbatim) ---
    # 定义事件处理器
    async def on_agent_started(event: SystemEvent):
        print(f"Agent {event.agent_id} started at {event.timestamp}")

    # 订阅单个事件类型
    await event_bus.subscribe(
        EventType.AGENT_STARTED,
        on_agent_started,
    )

    # 订阅所有事件
    await event_bus.subscribe(
        EventType.ANY,
        log_all_events,
    )
    # --- end of seed ---

    started = SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="chatbot")
    completed = SystemEvent(event_type=EventType.AGENT_COMPLETED, agent_id="chatbot")
    await event_bus.publish(started)
    await event_bus.publish(completed)
    await event_bus.close()
    assert capsys.readouterr().out == f"Agent chatbot started at {started.timestamp}\n"
    assert log_all.events == [started, completed]


async def test_publish_events(event_bus: EventBus) -> None:
    """发布事件: the seed's event is published asynchronously and synchronously, and a
    subscriber receives it twice."""
    rec = Recorder()
    await event_bus.subscribe(EventType.AGENT_STARTED, rec)

    # --- seed 003 "发布事件" (verbatim) ---
    # 创建事件
    event = SystemEvent(
        event_type=EventType.AGENT_STARTED,
        agent_id="chatbot",
        timestamp=datetime.now(),
    )

    # 发布事件（异步）
    await event_bus.publish(event)

    # 发布事件（同步）
    event_bus.publish_sync(event)
    # --- end of seed ---

    await event_bus.drain()
    assert rec.events == [event, event]
    assert event.timestamp.tzinfo is not None
    assert event_bus.stats().published == 2


async def test_unsubscribe(event_bus: EventBus) -> None:
    """取消订阅: after unsubscribe(id) and unsubscribe_handler(handler) the handler gets
    nothing more."""
    rec = Recorder()
    handler = rec
    await event_bus.subscribe(EventType.ANY, handler)  # a second subscription of it

    # --- seed 003 "取消订阅" (verbatim) ---
    # 保存订阅 ID
    subscription_id = await event_bus.subscribe(
        EventType.AGENT_STARTED,
        handler,
    )

    # 取消订阅
    await event_bus.unsubscribe(subscription_id)

    # 取消特定处理器的所有订阅
    await event_bus.unsubscribe_handler(handler)
    # --- end of seed ---

    assert event_bus.subscription_count == 0
    await event_bus.publish(SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="x"))
    await event_bus.drain()
    assert rec.events == []


# ---------------------------------------------------------------------------- 与 Executor 集成


async def test_executor_success_flow(seed_model: None, event_bus: EventBus) -> None:
    """设置 EventBus / 事件流: execute publishes AGENT_STARTED (to every subscribed handler)
    then AGENT_COMPLETED, and returns the agent's result."""
    handler1, handler2 = Recorder(), Recorder()
    await event_bus.subscribe(EventType.AGENT_STARTED, handler1)
    await event_bus.subscribe(EventType.AGENT_STARTED, handler2)
    collect_metrics = Recorder()
    await event_bus.subscribe(EventType.AGENT_COMPLETED, collect_metrics)
    everything = Recorder()
    await event_bus.subscribe(EventType.ANY, everything)
    context = AgentContext(input="Hello", user_id="user_123", session_id="sess_abc")

    # --- seed 003 "设置 EventBus" (verbatim) ---
    executor = AgentExecutor(
        agent_id="my_agent",
        config=AgentConfig(
            name="my_agent",
            description="My Agent",
            model="gpt-3.5-turbo",
        ),
    )

    # 设置事件总线
    executor.set_event_bus(event_bus)

    # 现在 executor 会自动发布事件
    result = await executor.execute(context)
    # 发布: AGENT_STARTED, AGENT_COMPLETED
    # --- end of seed ---

    await event_bus.drain()
    assert result.success is True
    assert result.output == "Hi from TestModel"
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert everything.types() == [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED]
    started, completed = everything.events
    assert handler1.events == [started] and handler2.events == [started]
    assert collect_metrics.events == [completed]
    assert started.agent_id == completed.agent_id == "my_agent"
    assert (started.user_id, started.session_id) == ("user_123", "sess_abc")
    assert started.metadata["model"] == "gpt-3.5-turbo"
    assert completed.execution_time_ms is not None and completed.execution_time_ms >= 0


async def test_executor_error_flow_agent_fails(
    failing_seed_model: None, event_bus: EventBus
) -> None:
    """错误事件流: the model call fails, ERROR_OCCURRED reaches the alerting and logging
    handlers, and execute returns an error result."""
    send_alert, log_error = Recorder(), Recorder()
    await event_bus.subscribe(EventType.ERROR_OCCURRED, send_alert)
    await event_bus.subscribe(EventType.ERROR_OCCURRED, log_error)
    everything = Recorder()
    await event_bus.subscribe(EventType.ANY, everything)
    context = "Hello"

    # --- seed 003 "设置 EventBus" (verbatim) ---
    executor = AgentExecutor(
        agent_id="my_agent",
        config=AgentConfig(
            name="my_agent",
            description="My Agent",
            model="gpt-3.5-turbo",
        ),
    )

    # 设置事件总线
    executor.set_event_bus(event_bus)

    # 现在 executor 会自动发布事件
    result = await executor.execute(context)
    # --- end of seed ---

    await event_bus.drain()
    assert result.success is False and result.output is None
    assert result.error_type == "ConnectionError"
    assert result.error_message == "model endpoint unavailable"
    assert everything.types() == [EventType.AGENT_STARTED, EventType.ERROR_OCCURRED]
    error = everything.events[1]
    assert send_alert.events == [error] and log_error.events == [error]
    assert (error.error_type, error.error_message) == (
        "ConnectionError", "model endpoint unavailable")


async def test_executor_error_flow_middleware_fails(
    seed_model: None, event_bus: EventBus
) -> None:
    """错误事件流 with the error in the middleware pipeline: MIDDLEWARE_FAILED, then
    ERROR_OCCURRED, and an error result; the agent is never called."""
    everything = Recorder()
    await event_bus.subscribe(EventType.ANY, everything)
    context = {"input": "Hello", "user_id": "user_123"}

    async def rate_limit(run: RunContext, call_next: Any) -> Any:
        raise PermissionError("rate limit exceeded for user_123")

    # --- seed 003 "设置 EventBus" (verbatim) ---
    executor = AgentExecutor(
        agent_id="my_agent",
        config=AgentConfig(
            name="my_agent",
            description="My Agent",
            model="gpt-3.5-turbo",
        ),
    )

    # 设置事件总线
    executor.set_event_bus(event_bus)
    # --- end of seed ---

    executor.add_middleware(rate_limit)

    # --- seed 003 "设置 EventBus" (verbatim) ---
    result = await executor.execute(context)
    # --- end of seed ---

    await event_bus.drain()
    assert result.success is False and result.error_type == "PermissionError"
    assert everything.types() == [
        EventType.AGENT_STARTED, EventType.MIDDLEWARE_FAILED, EventType.ERROR_OCCURRED]
    assert result.usage.requests == 0  # the model was never called
    assert everything.events[2].error_message == "rate limit exceeded for user_123"
