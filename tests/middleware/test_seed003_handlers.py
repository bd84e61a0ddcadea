"""Seed 003's handler examples, run as tests against our bus and handler classes.

Each test carries the seed's example code with only the import lines changed
(``src.agent_runtime.event_bus`` → ``agentbus`` / ``middleware``). Where the seed defines a
class that is ours (``MetricsCollector``, ``RetryHandler``, ...) the test imports ours and
runs the seed's *usage*; where the seed shows user code (``simple_handler``,
``CustomEventHandler``, ``safe_handler``) that code is kept verbatim and run on our bus.
Deviations from the seed text are marked ``# seed bug:`` where the seed code itself is broken.
"""

from __future__ import annotations

import asyncio
import logging
import os  # noqa: F401  - imported by the seed's transform example
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from enum import Enum
from typing import Any

import pytest

from agentbus import AgentConfig, AgentExecutor, EventBus, EventType, SystemEvent
from agentbus.testing import CapturingHandler, FakeClock
from middleware import (
    AlertingHandler,
    AsyncEventHandler,
    BatchEventHandler,
    EventAggregator,
    EventRouter,
    EventSourcingHandler,
    EventStatistics,
    EventTracer,
    EventTransformer,
    FilteredHandler,
    InMemoryEventStore,
    MetricsCollector,
    Priority,
    PriorityEventBus,
    RetryHandler,
)

logger = logging.getLogger(__name__)


@pytest.fixture
async def event_bus() -> AsyncIterator[EventBus]:
    bus = EventBus(max_queue_size=1000, enable_metrics=True)
    yield bus
    await bus.close()


def completed(agent_id: str, ms: float, **kw: Any) -> SystemEvent:
    return SystemEvent(
        event_type=EventType.AGENT_COMPLETED, agent_id=agent_id, timestamp=datetime.now(),
        execution_time_ms=ms, **kw,
    )


class RecordingAlertService:
    """A user's alert service (the seed leaves it to the user)."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, str, str]] = []

    async def send_alert(self, severity: str, title: str, message: str) -> None:
        self.alerts.append((severity, title, message))


# ---------------------------------------------------------------- 事件处理器


async def test_basic_handler(event_bus: EventBus, capsys: pytest.CaptureFixture[str]) -> None:
    """基本处理器: the seed's simple_handler runs on our bus for started and completed events."""

    async def simple_handler(event: SystemEvent):  # type: ignore[no-untyped-def]
        """简单的事件处理器"""
        if event.event_type == EventType.AGENT_STARTED:
            print(f"Agent started: {event.agent_id}")
        elif event.event_type == EventType.AGENT_COMPLETED:
            print(f"Agent completed in {event.execution_time_ms}ms")

    await event_bus.subscribe(EventType.ANY, simple_handler)
    await event_bus.publish(SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="chatbot"))
    await event_bus.publish(completed("chatbot", 1234))
    await event_bus.drain()
    out = capsys.readouterr().out
    assert out.splitlines() == ["Agent started: chatbot", "Agent completed in 1234.0ms"]


async def test_metrics_collector(event_bus: EventBus) -> None:
    """指标收集处理器: our MetricsCollector with the seed's usage; the seed's list += 1 bug
    is gone and get_stats has avg/min/max/count plus percentiles."""
    # 使用
    collector = MetricsCollector()
    await event_bus.subscribe(EventType.AGENT_COMPLETED, collector.collect_metrics)

    for ms in (100, 200, 300, 400):
        await event_bus.publish(completed("chatbot", ms))
    await event_bus.publish(completed("search", 50))
    await event_bus.publish(
        SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="chatbot")
    )
    await event_bus.drain()

    stats = collector.get_stats()
    assert set(stats) == {"chatbot_duration", "search_duration"}
    chat = stats["chatbot_duration"]
    assert (chat["avg"], chat["min"], chat["max"], chat["count"]) == (250, 100, 400, 4)
    assert chat["p50"] == 250
    assert stats["search_duration"]["count"] == 1


async def test_alerting_handler(event_bus: EventBus) -> None:
    """告警处理器: on_error and on_slow_execution send the seed's alerts to the service."""
    service = RecordingAlertService()
    alerting = AlertingHandler(service)
    await event_bus.subscribe(EventType.ERROR_OCCURRED, alerting.on_error)
    await event_bus.subscribe(EventType.AGENT_COMPLETED, alerting.on_slow_execution)

    await event_bus.publish(SystemEvent(
        event_type=EventType.ERROR_OCCURRED, agent_id="chatbot",
        error_message="Error details", error_type="ValidationError",
    ))
    await event_bus.publish(completed("chatbot", 6000))
    await event_bus.publish(completed("chatbot", 10))
    await event_bus.drain()

    assert service.alerts == [
        # The seed sent error_message; it can quote user input, so by default only the
        # error type and agent are sent (capture_content=True adds the redacted text).
        ("high", "Agent Error: chatbot", "ValidationError in agent chatbot"),
        ("warning", "Slow Agent: chatbot", "Execution took 6000ms"),
    ]


async def test_filtered_handler(event_bus: EventBus, capsys: pytest.CaptureFixture[str]) -> None:
    """过滤处理器: the seed's premium-user example prints only premium users' events."""

    # 使用示例
    async def premium_user_handler(event: SystemEvent):  # type: ignore[no-untyped-def]
        print(f"Premium user event: {event.user_id}")

    # 只处理 premium 用户的事件
    filtered = FilteredHandler(
        condition_func=lambda e: e.metadata.get("tier") == "premium",
        actual_handler=premium_user_handler,
    )

    await event_bus.subscribe(EventType.ANY, filtered)

    for user, tier in (("u1", "premium"), ("u2", "free"), ("u3", "premium")):
        await event_bus.publish(SystemEvent(
            event_type=EventType.AGENT_STARTED, agent_id="chatbot", user_id=user,
            metadata={"tier": tier},
        ))
    await event_bus.drain()
    assert capsys.readouterr().out.splitlines() == [
        "Premium user event: u1", "Premium user event: u3",
    ]
    assert (filtered.passed, filtered.rejected) == (2, 1)


async def test_error_event_flow_alerts_from_executor(event_bus: EventBus) -> None:
    """错误事件流: a failing agent run publishes ERROR_OCCURRED and AlertingHandler alerts."""
    service = RecordingAlertService()
    alerting = AlertingHandler(service)
    await event_bus.subscribe(EventType.ERROR_OCCURRED, alerting.on_error)

    async def failing_agent(run: Any) -> str:
        raise RuntimeError("model unavailable")

    executor = AgentExecutor(
        agent_id="my_agent",
        config=AgentConfig(name="my_agent", description="My Agent", model="gpt-3.5-turbo"),
        agent=failing_agent,
    )
    executor.set_event_bus(event_bus)
    result = await executor.execute({"input": "Hello", "user_id": "u1", "session_id": "s1"})
    await event_bus.drain()

    assert result.success is False
    assert service.alerts == [("high", "Agent Error: my_agent", "RuntimeError in agent my_agent")]


# ---------------------------------------------------------------- 高级模式


async def test_event_aggregator(event_bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """事件聚合: ten events of one type and agent within the window aggregate once."""
    caplog.set_level(logging.INFO, logger="agentbus.middleware")
    aggregator = EventAggregator(window_seconds=60)
    await event_bus.subscribe(EventType.ANY, aggregator.aggregate)

    for _ in range(12):
        await event_bus.publish(SystemEvent(
            event_type=EventType.ERROR_OCCURRED, agent_id="chatbot", timestamp=datetime.now(),
        ))
    await event_bus.drain()

    assert aggregator.aggregations == 1
    assert "Aggregated 10 events for error_occurred_chatbot" in caplog.messages
    assert len(aggregator.events["error_occurred_chatbot"]) == 2


async def test_retry_handler() -> None:
    """事件重试: handle_with_retry retries, then dead-letters the event and re-raises."""
    clock = FakeClock()
    retry = RetryHandler(max_attempts=3, delay=1.0, clock=clock)
    calls: list[str] = []

    async def flaky(event: SystemEvent) -> None:
        calls.append(event.event_id)
        if len(calls) < 3:
            raise ConnectionError("try again")

    event = completed("chatbot", 5)
    await clock.run(retry.handle_with_retry(flaky, event))
    assert calls == [event.event_id] * 3
    assert retry.failed_events == []

    async def broken(event: SystemEvent) -> None:
        raise ValueError("bad event")

    with pytest.raises(ValueError, match="bad event"):
        await clock.run(retry.handle_with_retry(broken, event))
    [dead] = retry.failed_events
    assert dead.event is event and dead.attempts == 3 and isinstance(dead.error, ValueError)


async def test_event_transformer(event_bus: EventBus) -> None:
    """事件转换: add_metadata enriches the event the wrapped handler sees, not the original."""
    my_handler = CapturingHandler()

    # 使用示例
    def add_metadata(event):  # type: ignore[no-untyped-def]
        """为事件添加元数据"""
        event.metadata["processed_at"] = datetime.now().isoformat()
        event.metadata["hostname"] = socket.gethostname()  # seed bug: os.hostname() does not exist
        return event

    transformer = EventTransformer(
        transform_func=add_metadata,
        actual_handler=my_handler,
    )
    other = CapturingHandler()
    await event_bus.subscribe(EventType.ANY, transformer)
    await event_bus.subscribe(EventType.ANY, other)
    await event_bus.publish(completed("chatbot", 1, metadata={"task": "Hello"}))
    await event_bus.drain()

    [seen] = my_handler.events
    assert seen.metadata["hostname"] == socket.gethostname()
    assert seen.metadata["task"] == "Hello" and "processed_at" in seen.metadata
    assert other.events[0].metadata == {"task": "Hello"}


async def test_event_router(event_bus: EventBus, capsys: pytest.CaptureFixture[str]) -> None:
    """事件路由: the seed's router example sends each type to its own handler."""
    # 使用示例
    router = EventRouter()

    @router.route(EventType.AGENT_STARTED)
    async def handle_started(event):  # type: ignore[no-untyped-def]
        print(f"Started: {event.agent_id}")

    @router.route(EventType.AGENT_COMPLETED)
    async def handle_completed(event):  # type: ignore[no-untyped-def]
        print(f"Completed: {event.agent_id}")

    # 订阅路由器
    await event_bus.subscribe(EventType.ANY, router.dispatch)

    await event_bus.publish(SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="a1"))
    await event_bus.publish(SystemEvent(event_type=EventType.ERROR_OCCURRED, agent_id="a1"))
    await event_bus.publish(completed("a1", 3))
    await event_bus.drain()
    assert capsys.readouterr().out.splitlines() == ["Started: a1", "Completed: a1"]


# ---------------------------------------------------------------- 自定义事件


class CustomEventType(Enum):
    # 业务特定事件
    USER_LOGIN = "user_login"
    USER_LOGOUT = "user_logout"
    PAYMENT_SUCCESS = "payment_success"
    PAYMENT_FAILED = "payment_failed"

    # 工作流事件
    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_STEP_COMPLETED = "workflow_step_completed"
    WORKFLOW_COMPLETED = "workflow_completed"


class CustomEventHandler:
    async def on_user_login(self, event: SystemEvent):  # type: ignore[no-untyped-def]
        """用户登录处理"""
        # 记录登录日志
        await self.log_login(event)

        # 更新用户状态
        await self.update_user_status(event.user_id, "online")

        # 发送欢迎消息
        await self.send_welcome_message(event.user_id)

    async def on_payment_success(self, event: SystemEvent):  # type: ignore[no-untyped-def]
        """支付成功处理"""
        # 更新订单状态
        await self.update_order_status(event.metadata["order_id"], "paid")

        # 发送确认邮件
        await self.send_confirmation_email(event.user_id)


class AppEventHandler(CustomEventHandler):
    """The helpers the seed's CustomEventHandler leaves to the application."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Any]] = []

    async def log_login(self, event: SystemEvent) -> None:
        self.actions.append(("log_login", event.metadata["ip_address"]))

    async def update_user_status(self, user_id: str, status: str) -> None:
        self.actions.append(("status", (user_id, status)))

    async def send_welcome_message(self, user_id: str) -> None:
        self.actions.append(("welcome", user_id))

    async def update_order_status(self, order_id: str, status: str) -> None:
        self.actions.append(("order", (order_id, status)))

    async def send_confirmation_email(self, user_id: str) -> None:
        self.actions.append(("email", user_id))


async def test_custom_events(event_bus: EventBus) -> None:
    """自定义事件: custom Enum events are published and routed to the seed's handler methods."""
    handler = AppEventHandler()
    router = EventRouter()
    router.route(CustomEventType.USER_LOGIN)(handler.on_user_login)
    router.route(CustomEventType.PAYMENT_SUCCESS)(handler.on_payment_success)
    await event_bus.subscribe(EventType.ANY, router)

    async def publish_custom_event():  # type: ignore[no-untyped-def]
        event = SystemEvent(
            event_type=CustomEventType.USER_LOGIN,
            agent_id="auth_agent",
            user_id="user_123",
            timestamp=datetime.now(),
            metadata={
                "ip_address": "192.168.1.1",
                "user_agent": "Mozilla/5.0...",
            },
        )

        await event_bus.publish(event)

    await publish_custom_event()
    await event_bus.publish(SystemEvent(
        event_type=CustomEventType.PAYMENT_SUCCESS, agent_id="pay_agent", user_id="user_123",
        metadata={"order_id": "o-9"},
    ))
    await event_bus.drain()
    assert handler.actions == [
        ("log_login", "192.168.1.1"),
        ("status", ("user_123", "online")),
        ("welcome", "user_123"),
        ("order", ("o-9", "paid")),
        ("email", "user_123"),
    ]


# ---------------------------------------------------------------- 性能考虑


async def test_async_event_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """异步事件处理: the seed's subclass processes events concurrently within the limit."""

    class SeedAsyncEventHandler(AsyncEventHandler):
        async def _process_event(self, event: SystemEvent):  # type: ignore[no-untyped-def]
            """实际处理逻辑"""
            # 可能很慢的操作
            await asyncio.sleep(1)
            print(f"Processed: {event.event_type}")

    handler = SeedAsyncEventHandler(max_concurrent=2)
    events = [completed("chatbot", i) for i in range(4)]
    await asyncio.gather(*(handler.handle_event(e) for e in events))
    assert capsys.readouterr().out.splitlines() == ["Processed: EventType.AGENT_COMPLETED"] * 4
    assert handler.max_active == 2


async def test_batch_event_handler() -> None:
    """批量处理: the seed's db-backed batcher flushes by size and, on close, the remainder."""

    class FakeDB:
        def __init__(self) -> None:
            self.rows: list[list[SystemEvent]] = []

        async def insert_many(self, events: list[SystemEvent]) -> None:
            self.rows.append(list(events))

    class DBBatchEventHandler(BatchEventHandler):
        def __init__(self, db: FakeDB, **kw: Any) -> None:
            super().__init__(**kw)
            self.db = db

        async def _process_batch(self, events):  # type: ignore[no-untyped-def]
            """批量处理逻辑"""
            # 例如：批量写入数据库
            await self.db.insert_many(events)

    db = FakeDB()
    bus = EventBus()
    handler = DBBatchEventHandler(db, batch_size=100, flush_interval=5)
    await bus.subscribe(EventType.ANY, handler.handle_event)
    sent = [completed("chatbot", i) for i in range(250)]
    for e in sent:
        await bus.publish(e)
    await bus.close()

    assert [len(b) for b in db.rows] == [100, 100, 50]
    assert [e for b in db.rows for e in b] == sent


async def test_priority_event_bus() -> None:
    """事件优先级: dispatch_events delivers HIGH, then MEDIUM, then LOW."""
    bus = PriorityEventBus(max_queue_size=1000)
    capture = CapturingHandler()
    await bus.subscribe(EventType.ANY, capture)
    low = completed("a", 1)
    medium = completed("a", 2)
    high = completed("a", 3)
    await bus.publish(low, priority=Priority.LOW)
    await bus.publish(medium)
    await bus.publish(high, priority=Priority.HIGH)
    assert capture.events == []
    await bus.dispatch_events()
    await bus.drain()
    assert capture.events == [high, medium, low]
    await bus.close()


# ---------------------------------------------------------------- 监控和调试


async def test_event_tracer(event_bus: EventBus) -> None:
    """事件追踪: trace log entries, error details, and per-session lookup (seed bug fixed)."""
    tracer = EventTracer()
    await event_bus.subscribe(EventType.ANY, tracer.trace)
    await event_bus.publish(SystemEvent(
        event_type=EventType.AGENT_STARTED, agent_id="chatbot", user_id="user_123",
        session_id="sess_abc", metadata={"model": "gpt-3.5-turbo"},
    ))
    await event_bus.publish(SystemEvent(
        event_type=EventType.ERROR_OCCURRED, agent_id="chatbot", session_id="sess_abc",
        error_message="boom", error_type="RuntimeError",
    ))
    await event_bus.publish(SystemEvent(
        event_type=EventType.AGENT_STARTED, agent_id="chatbot", session_id="sess_other",
    ))
    await event_bus.drain()

    log = tracer.get_trace_log()
    assert [e["type"] for e in log] == ["agent_started", "error_occurred", "agent_started"]
    assert log[0]["user"] == "user_123" and log[0]["metadata"] == {"model": "gpt-3.5-turbo"}
    assert log[1]["error"] == {"message": "boom", "type": "RuntimeError"}
    session = tracer.get_events_for_session("sess_abc")
    assert [e["type"] for e in session] == ["agent_started", "error_occurred"]


async def test_event_statistics(event_bus: EventBus) -> None:
    """事件统计: counts per type and timing per agent, as the seed's get_summary shapes them."""
    stats = EventStatistics()
    await event_bus.subscribe(EventType.ANY, stats.record)
    await event_bus.publish(SystemEvent(event_type=EventType.AGENT_STARTED, agent_id="a"))
    await event_bus.publish(completed("a", 100))
    await event_bus.publish(completed("a", 300))
    await event_bus.publish(completed("b", 0))
    await event_bus.drain()

    summary = stats.get_summary()
    assert summary["total_events"] == 4
    assert summary["by_type"] == {"agent_started": 1, "agent_completed": 3}
    a = summary["timing"]["a"]
    assert (a["avg"], a["min"], a["max"], a["count"]) == (200, 100, 300, 2)
    assert summary["timing"]["b"]["count"] == 1


# ---------------------------------------------------------------- 最佳实践


class FakeDB:
    """The ``db`` the seed's best-practice examples talk to."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = defaultdict(int)
        self.log: list[SystemEvent] = []

    async def get_counter(self, key: str) -> int:
        return self.counters[key]

    async def set_counter(self, key: str, value: int) -> None:
        self.counters[key] = value


async def test_best_practice_idempotency(event_bus: EventBus) -> None:
    """最佳实践 1: the seed's append_log duplicates on replay; EventSourcingHandler does not."""
    db = FakeDB()

    # ❌ 非幂等处理器
    async def append_log(event):  # type: ignore[no-untyped-def]
        """每次执行都会追加"""
        db.log.append(event)  # seed: ``await db.log.append(event)`` on its own async list

    sourcing = EventSourcingHandler(InMemoryEventStore())
    await event_bus.subscribe(EventType.ANY, append_log)
    await event_bus.subscribe(EventType.ANY, sourcing.handle)
    event = completed("chatbot", 1)
    await event_bus.publish(event)
    await event_bus.replay([event])
    await event_bus.drain()

    assert db.log == [event, event]  # 会重复
    assert len(sourcing.event_store) == 1  # type: ignore[arg-type]
    assert sourcing.duplicates == 1


async def test_best_practice_fast_return(event_bus: EventBus) -> None:
    """最佳实践 2: a handler that offloads work returns before the work finishes."""
    release = asyncio.Event()
    done: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def long_running_task(event: SystemEvent) -> None:
        await release.wait()
        done.append(event.event_id)

    # ✅ 异步处理
    async def handle_event(event):  # type: ignore[no-untyped-def]
        # 快速返回
        tasks.append(asyncio.create_task(long_running_task(event)))

    await event_bus.subscribe(EventType.ANY, handle_event)
    event = completed("chatbot", 1)
    await event_bus.publish(event)
    await event_bus.drain()
    assert done == [] and event_bus.stats().delivered == 1
    release.set()
    await asyncio.gather(*tasks)
    assert done == [event.event_id]


async def test_best_practice_error_isolation(
    event_bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """最佳实践 3: the seed's safe_handler wrapper keeps a failing handler's error in the log."""

    async def safe_handler(handler):  # type: ignore[no-untyped-def]
        """错误隔离的包装器"""
        async def wrapper(event):  # type: ignore[no-untyped-def]
            try:
                await handler(event)
            except Exception as e:
                logger.error(f"Handler error: {e}")
                # 不影响其他处理器
        return wrapper

    async def failing(event: SystemEvent) -> None:
        raise RuntimeError("boom")

    other = CapturingHandler()
    await event_bus.subscribe(EventType.ANY, await safe_handler(failing))
    await event_bus.subscribe(EventType.ANY, other)
    await event_bus.publish(completed("chatbot", 1))
    await event_bus.drain()
    assert "Handler error: boom" in caplog.messages
    assert event_bus.stats().handler_errors == 0
    assert len(other.events) == 1


async def test_best_practice_event_sourcing(event_bus: EventBus) -> None:
    """最佳实践 4: handle appends to event_store, then update_state folds the event in."""

    def count_by_agent(state: dict[str, int], event: SystemEvent) -> dict[str, int]:
        return {**state, event.agent_id: state.get(event.agent_id, 0) + 1}

    handler: EventSourcingHandler[dict[str, int]] = EventSourcingHandler(
        reducer=count_by_agent, initial_state={}
    )
    await event_bus.subscribe(EventType.ANY, handler.handle)
    for agent in ("a", "b", "a"):
        await event_bus.publish(completed(agent, 1))
    await event_bus.drain()

    assert [e.agent_id for e in await handler.event_store.read()] == ["a", "b", "a"]
    assert handler.state == {"a": 2, "b": 1}
    handler.state = {}
    assert await handler.rebuild() == {"a": 2, "b": 1}
