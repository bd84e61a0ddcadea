"""Asynchronous sub-agents: spawn, handle, SUBAGENT_* events, trace ids, causation chains."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentbus import (
    AgentConfig,
    AgentExecutor,
    EventBus,
    EventType,
    RunContext,
    SubAgentEventType,
    SystemEvent,
    current_run,
)
from agentbus import semconv as sc
from agentbus.subagents import SubAgentHandle, pending_subagents

Runner = Callable[[RunContext], Awaitable[Any]]


def _executor(agent_id: str, runner: Runner, bus: EventBus) -> AgentExecutor:
    return AgentExecutor(agent_id, AgentConfig(name=agent_id, model="m"), runner, event_bus=bus)


def _gated(gate: asyncio.Event, output: Any = "car booked") -> Runner:
    async def run(run: RunContext) -> Any:
        await gate.wait()
        return output

    return run


def _one(bus: EventBus, etype: Any, agent_id: str | None = None) -> SystemEvent:
    events = bus.history(event_types=[etype], agent_id=agent_id)
    assert len(events) == 1, f"expected one {etype} of {agent_id}, got {len(events)}"
    return events[0]


async def _spawn_from_run(
    bus: EventBus, sub: AgentExecutor, **kw: Any
) -> tuple[AgentExecutor, SubAgentHandle, Any]:
    """Run a parent agent whose run spawns ``sub`` and returns the handle."""
    handles: list[SubAgentHandle] = []

    async def parent_runner(run: RunContext) -> str:
        handles.append(await run.executor.spawn(sub, "hail a car", **kw))
        return "I am booking a car for you"

    parent = _executor("main", parent_runner, bus)
    result = await parent.execute({"input": "get me a car", "user_id": "u1",
                                   "session_id": "s1"})
    assert result.success, result.error_message
    return parent, handles[0], result


async def test_parent_finishes_while_sub_agent_runs() -> None:
    """The parent run completes while the sub-agent is still running; wait() gives its result."""
    bus = EventBus()
    gate = asyncio.Event()
    sub = _executor("car_hailing", _gated(gate), bus)
    _parent, handle, _result = await _spawn_from_run(bus, sub)
    assert handle.status == "running" and not handle.done() and handle.result is None
    assert bus.history(event_types=[SubAgentEventType.SUBAGENT_COMPLETED]) == []
    gate.set()
    result = await handle.wait(timeout=30)
    assert handle.status == "completed" and handle.done()
    assert result.success and result.output == "car booked"
    assert handle.result is result
    await bus.close()


async def test_sub_run_is_child_of_parent_run() -> None:
    """The sub-run's AGENT_STARTED has the parent's trace, span parent, causation, correlation."""
    bus = EventBus()
    gate = asyncio.Event()
    gate.set()
    sub = _executor("car_hailing", _gated(gate), bus)
    _parent, handle, parent_result = await _spawn_from_run(bus, sub)
    sub_result = await handle.wait(timeout=30)
    started = _one(bus, EventType.AGENT_STARTED, "car_hailing")
    parent_started = _one(bus, EventType.AGENT_STARTED, "main")
    assert started.event_id == sub_result.run_id
    assert started.causation_id == parent_result.run_id
    assert started.trace_id == parent_result.trace_id == sub_result.trace_id
    assert started.parent_span_id == parent_result.span_id
    assert started.span_id == sub_result.span_id != parent_result.span_id
    assert started.correlation_id == parent_started.correlation_id
    assert started.attributes[sc.AB_PARENT_AGENT_ID] == "main"
    assert (started.user_id, started.session_id) == ("u1", "s1")
    await bus.close()


async def test_subagent_events_on_parent_bus() -> None:
    """SPAWNED then COMPLETED are published for the parent agent with the parent run's ids."""
    bus = EventBus()
    gate = asyncio.Event()
    sub = _executor("car_hailing", _gated(gate), bus)
    _parent, handle, parent_result = await _spawn_from_run(bus, sub)
    spawned = _one(bus, SubAgentEventType.SUBAGENT_SPAWNED)
    assert spawned.event_id == handle.spawned_event_id
    assert spawned.agent_id == "main"
    assert spawned.attributes[sc.AB_SUBAGENT] == "car_hailing"
    assert spawned.attributes[sc.AB_SUBAGENT_STATUS] == "spawned"
    assert spawned.causation_id == parent_result.run_id
    assert (spawned.trace_id, spawned.span_id) == (parent_result.trace_id, parent_result.span_id)
    gate.set()
    sub_result = await handle.wait(timeout=30)
    done = _one(bus, SubAgentEventType.SUBAGENT_COMPLETED)
    assert done.agent_id == "main"
    assert done.attributes[sc.AB_SUBAGENT] == "car_hailing"
    assert done.attributes[sc.AB_SUBAGENT_STATUS] == "completed"
    assert done.attributes[sc.AB_SUBAGENT_RUN_ID] == sub_result.run_id
    assert (done.trace_id, done.span_id) == (parent_result.trace_id, parent_result.span_id)
    assert done.correlation_id == spawned.correlation_id
    assert done.execution_time_ms is not None and done.execution_time_ms >= 0
    order = [e.event_id for e in bus.history()]
    sub_done = _one(bus, EventType.AGENT_COMPLETED, "car_hailing")
    assert order.index(spawned.event_id) < order.index(sub_result.run_id)
    assert order.index(sub_done.event_id) < order.index(done.event_id)
    await bus.close()


async def test_causation_chain_parent_to_completion() -> None:
    """get_causation_chain(SUBAGENT_COMPLETED) runs oldest-first from the parent's start."""
    bus = EventBus()
    gate = asyncio.Event()
    gate.set()
    sub = _executor("car_hailing", _gated(gate), bus)
    _parent, handle, parent_result = await _spawn_from_run(bus, sub)
    sub_result = await handle.wait(timeout=30)
    done = _one(bus, SubAgentEventType.SUBAGENT_COMPLETED)
    chain = bus.get_causation_chain(done.event_id)
    assert [(e.type_name, e.agent_id) for e in chain] == [
        ("agent_started", "main"),
        ("agent_started", "car_hailing"),
        ("agent_completed", "car_hailing"),
        ("subagent_completed", "main"),
    ]
    assert chain[0].event_id == parent_result.run_id
    assert chain[1].event_id == sub_result.run_id
    await bus.close()


async def test_causation_chain_stops_on_cycle() -> None:
    """A causation cycle built by hand yields each event once, the asked-for event last."""
    bus = EventBus()
    a = SystemEvent(event_type=EventType.CUSTOM, agent_id="x", event_id="a" * 32,
                    causation_id="c" * 32)
    b = SystemEvent(event_type=EventType.CUSTOM, agent_id="x", event_id="b" * 32,
                    causation_id=a.event_id)
    c = SystemEvent(event_type=EventType.CUSTOM, agent_id="x", event_id="c" * 32,
                    causation_id=b.event_id)
    for ev in (a, b, c):
        await bus.publish(ev)
    chain = await asyncio.wait_for(asyncio.to_thread(bus.get_causation_chain, c.event_id), 10)
    assert [e.event_id for e in chain] == [a.event_id, b.event_id, c.event_id]
    self_loop = SystemEvent(event_type=EventType.CUSTOM, agent_id="x", event_id="d" * 32,
                            causation_id="d" * 32)
    await bus.publish(self_loop)
    assert [e.event_id for e in bus.get_causation_chain(self_loop.event_id)] == ["d" * 32]
    await bus.close()


async def test_failed_sub_agent_publishes_failed() -> None:
    """A sub-agent whose run fails publishes SUBAGENT_FAILED with the run's error."""
    bus = EventBus()

    async def broken(run: RunContext) -> str:
        raise ConnectionError("car service unreachable")

    sub = _executor("car_hailing", broken, bus)
    _parent, handle, _ = await _spawn_from_run(bus, sub)
    result = await handle.wait(timeout=30)
    assert handle.status == "failed"
    assert not result.success and result.error_type == "ConnectionError"
    failed = _one(bus, SubAgentEventType.SUBAGENT_FAILED)
    assert failed.error_type == "ConnectionError"
    assert failed.attributes[sc.AB_SUBAGENT_STATUS] == "failed"
    sub_error = _one(bus, EventType.ERROR_OCCURRED, "car_hailing")
    assert failed.causation_id == sub_error.event_id
    assert bus.history(event_types=[SubAgentEventType.SUBAGENT_COMPLETED]) == []
    await bus.close()


async def test_cancel_running_sub_agent() -> None:
    """cancel() stops the sub-run (ERROR_OCCURRED CancelledError) and publishes FAILED
    with status cancelled; wait() returns the cancelled result."""
    bus = EventBus()
    started = asyncio.Event()

    async def forever(run: RunContext) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    sub = _executor("car_hailing", forever, bus)
    _parent, handle, _ = await _spawn_from_run(bus, sub)
    await asyncio.wait_for(started.wait(), 30)
    assert handle.cancel() is True
    result = await handle.wait(timeout=30)
    assert handle.status == "cancelled"
    assert not result.success and result.error_type == "CancelledError"
    failed = _one(bus, SubAgentEventType.SUBAGENT_FAILED)
    assert failed.attributes[sc.AB_SUBAGENT_STATUS] == "cancelled"
    assert failed.error_type == "CancelledError"
    assert failed.causation_id == handle.spawned_event_id
    assert _one(bus, EventType.ERROR_OCCURRED, "car_hailing").error_type == "CancelledError"
    assert handle.cancel() is False
    await bus.close()


async def test_cancel_before_start_still_reported() -> None:
    """A sub-agent cancelled before its task ever ran still ends with SUBAGENT_FAILED."""
    bus = EventBus()
    sub = _executor("car_hailing", _gated(asyncio.Event()), bus)
    parent = _executor("main", _gated(asyncio.Event()), bus)
    handle = await parent.spawn(sub, "hail")
    assert handle.cancel() is True  # no await since spawn returned: the task never started
    result = await handle.wait(timeout=30)
    assert handle.status == "cancelled" and result.error_type == "CancelledError"
    failed = _one(bus, SubAgentEventType.SUBAGENT_FAILED)
    assert failed.causation_id == handle.spawned_event_id
    assert bus.history(agent_id="car_hailing") == []
    await bus.close()


async def test_spawn_outside_a_run_starts_own_trace() -> None:
    """Spawned with no current run, the sub-run has no parent and its own trace."""
    bus = EventBus()
    gate = asyncio.Event()
    gate.set()
    sub = _executor("car_hailing", _gated(gate), bus)
    parent = _executor("main", _gated(gate), bus)
    assert current_run() is None
    handle = await parent.spawn(sub, "hail")
    result = await handle.wait(timeout=30)
    started = _one(bus, EventType.AGENT_STARTED, "car_hailing")
    assert started.causation_id is None and started.parent_span_id is None
    spawned = _one(bus, SubAgentEventType.SUBAGENT_SPAWNED)
    assert spawned.trace_id is None and spawned.causation_id is None
    done = _one(bus, SubAgentEventType.SUBAGENT_COMPLETED)
    assert done.trace_id == result.trace_id and done.span_id == result.span_id
    assert [e.type_name for e in bus.get_causation_chain(done.event_id)] == [
        "agent_started", "agent_completed", "subagent_completed"]
    await bus.close()


async def test_wait_timeout_does_not_cancel() -> None:
    """wait(timeout) raises TimeoutError naming the sub-agent and leaves it running."""
    bus = EventBus()
    gate = asyncio.Event()
    sub = _executor("car_hailing", _gated(gate), bus)
    parent = _executor("main", _gated(gate), bus)
    handle = await parent.spawn(sub, "hail")
    with pytest.raises(TimeoutError, match="car_hailing"):
        await handle.wait(timeout=0.01)
    assert handle.status == "running"
    gate.set()
    assert (await handle.wait(timeout=30)).success
    await bus.close()


async def test_wait_subagents_waits_for_all() -> None:
    """executor.wait_subagents() returns every spawned sub-agent's result."""
    bus = EventBus()
    gate = asyncio.Event()
    parent = _executor("main", _gated(gate), bus)
    subs = [_executor(f"sub{i}", _gated(gate, i), bus) for i in range(3)]
    handles = [await parent.spawn(s, "work") for s in subs]
    assert set(pending_subagents(parent)) == set(handles)
    gate.set()
    results = await parent.wait_subagents(timeout=30)
    assert sorted(r.output for r in results) == [0, 1, 2]
    assert pending_subagents(parent) == ()
    assert await parent.wait_subagents(timeout=1) == []
    await bus.close()


async def test_wait_subagents_timeout_and_cancel() -> None:
    """wait_subagents raises on timeout, or with cancel=True cancels and reports them."""
    bus = EventBus()
    parent = _executor("main", _gated(asyncio.Event()), bus)
    handle = await parent.spawn(_executor("stuck", _gated(asyncio.Event()), bus), "x")
    with pytest.raises(TimeoutError, match="stuck"):
        await parent.wait_subagents(timeout=0.01)
    results = await parent.wait_subagents(timeout=0.01, cancel=True)
    assert [r.error_type for r in results] == ["CancelledError"]
    assert handle.status == "cancelled"
    assert len(bus.history(event_types=[SubAgentEventType.SUBAGENT_FAILED])) == 1
    await bus.close()


async def test_on_done_callbacks() -> None:
    """on_done (sync or async) runs once after the completion event; a raising callback is
    logged and does not stop the others; late callbacks run at once."""
    bus = EventBus()
    gate = asyncio.Event()
    seen: list[tuple[str, str, int]] = []

    def sync_cb(h: SubAgentHandle) -> None:
        seen.append(("sync", h.status, len(bus.history(
            event_types=[SubAgentEventType.SUBAGENT_COMPLETED]))))

    def bad_cb(h: SubAgentHandle) -> None:
        raise RuntimeError("callback bug")

    async def async_cb(h: SubAgentHandle) -> None:
        seen.append(("async", h.status, 1))

    parent = _executor("main", _gated(gate), bus)
    handle = await parent.spawn(_executor("car", _gated(gate), bus), "x", on_done=sync_cb)
    handle.add_done_callback(bad_cb)
    handle.add_done_callback(async_cb)
    gate.set()
    await handle.wait(timeout=30)
    assert seen == [("sync", "completed", 1), ("async", "completed", 1)]
    handle.add_done_callback(sync_cb)
    assert seen[-1] == ("sync", "completed", 1) and len(seen) == 3
    await bus.close()


async def test_gathered_sub_agents_share_parent_span() -> None:
    """Two sub-agents spawned under asyncio.gather in one run are both children of it."""
    bus = EventBus()
    gate = asyncio.Event()
    gate.set()
    subs = [_executor("taxi", _gated(gate), bus), _executor("train", _gated(gate), bus)]
    handles: list[SubAgentHandle] = []

    async def parent_runner(run: RunContext) -> str:
        handles.extend(await asyncio.gather(*(run.executor.spawn(s, "go") for s in subs)))
        return "both asked"

    parent = _executor("main", parent_runner, bus)
    presult = await parent.execute("plan a trip")
    results = await asyncio.gather(*(h.wait(timeout=30) for h in handles))
    for agent_id, res in zip(("taxi", "train"), results, strict=True):
        started = _one(bus, EventType.AGENT_STARTED, agent_id)
        assert res.trace_id == presult.trace_id
        assert started.parent_span_id == presult.span_id
        assert started.causation_id == presult.run_id
    assert len(bus.history(event_types=[SubAgentEventType.SUBAGENT_COMPLETED])) == 2
    await bus.close()


async def test_bad_spawn_arguments() -> None:
    """spawn rejects a non-executor, a non-callable on_done and a bad context mapping."""
    bus = EventBus()
    parent = _executor("main", _gated(asyncio.Event()), bus)
    sub = _executor("sub", _gated(asyncio.Event()), bus)
    with pytest.raises(TypeError, match="AgentExecutor"):
        await parent.spawn(object(), "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_done"):
        await parent.spawn(sub, "x", on_done=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        await parent.spawn(sub, {"input": "x", "bogus": 1})
    assert pending_subagents(parent) == ()
    assert bus.history() == []
    await bus.close()


def test_loop_shutdown_reports_unfinished_sub_agent() -> None:
    """A sub-agent still running when asyncio.run() ends is cancelled and reported."""
    bus_box: list[EventBus] = []

    async def main() -> SubAgentHandle:
        bus = EventBus()
        bus_box.append(bus)
        started = asyncio.Event()

        async def forever(run: RunContext) -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        parent = _executor("main", _gated(asyncio.Event()), bus)
        handle = await parent.spawn(_executor("stuck", forever, bus), "x")
        await started.wait()
        return handle  # returns without waiting: asyncio.run cancels the sub-agent's task

    handle = asyncio.run(main())
    assert handle.status == "cancelled"
    [failed] = bus_box[0].history(event_types=[SubAgentEventType.SUBAGENT_FAILED])
    assert failed.attributes[sc.AB_SUBAGENT_STATUS] == "cancelled"
    assert failed.attributes[sc.AB_SUBAGENT] == "stuck"
