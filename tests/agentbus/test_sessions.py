"""Tests of :class:`agentbus.SessionManager` and :class:`agentbus.CheckpointManager`, alone
and wired into :class:`agentbus.AgentExecutor`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agentbus import (
    AgentConfig,
    AgentContext,
    AgentExecutor,
    CheckpointManager,
    EventBus,
    EventType,
    RunContext,
    SessionManager,
    SystemEvent,
)
from agentbus import semconv as sc
from agentbus.testing import CapturingHandler, FakeClock

# ---------------------------------------------------------------------------- sessions


async def test_session_created_once_and_touched(bus: EventBus, rec: CapturingHandler) -> None:
    """The first touch creates the session and publishes SESSION_CREATED; later touches
    only refresh last_seen."""
    clock = FakeClock(100.0)
    sessions = SessionManager(bus, ttl_seconds=60, clock=clock)
    s = await sessions.touch("s1", "agent-1", "u1")
    assert (s.session_id, s.agent_id, s.user_id) == ("s1", "agent-1", "u1")
    assert s.created_at == s.last_seen == 100.0
    await clock.advance(10)
    again = await sessions.touch("s1", "agent-1", "u1")
    assert again is s and s.last_seen == 110.0 and s.created_at == 100.0
    await bus.drain()
    created = rec.of_type(EventType.SESSION_CREATED)
    assert len(created) == 1
    assert (created[0].agent_id, created[0].user_id, created[0].session_id) == (
        "agent-1", "u1", "s1")
    assert created[0].trace_id is None  # created outside any run
    assert len(sessions) == 1 and sessions.get("s1") is s


async def test_session_expires_after_ttl(bus: EventBus, rec: CapturingHandler) -> None:
    """A session idle for longer than the TTL is expired with SESSION_EXPIRED; one idle for
    exactly the TTL, or touched meanwhile, is not."""
    clock = FakeClock()
    sessions = SessionManager(bus, ttl_seconds=30, clock=clock)
    await sessions.touch("idle", "a", "u1")
    await sessions.touch("busy", "a", "u2")
    await clock.advance(20)
    await sessions.touch("busy", "a", "u2")
    await clock.advance(10)
    assert await sessions.expire_idle() == []  # idle for exactly 30 s
    await clock.advance(0.5)
    expired = await sessions.expire_idle()
    assert [s.session_id for s in expired] == ["idle"]
    assert sessions.get("idle") is None and sessions.get("busy") is not None
    await bus.drain()
    ev = rec.of_type(EventType.SESSION_EXPIRED)
    assert len(ev) == 1 and (ev[0].session_id, ev[0].user_id) == ("idle", "u1")
    await clock.advance(30)
    assert [s.session_id for s in await sessions.expire_idle()] == ["busy"]


async def test_expired_session_is_created_again(bus: EventBus, rec: CapturingHandler) -> None:
    """Touching a session id after it expired creates a new session (SESSION_CREATED again)."""
    clock = FakeClock()
    sessions = SessionManager(bus, ttl_seconds=5, clock=clock)
    await sessions.touch("s", "a")
    await clock.advance(6)
    await sessions.expire_idle()
    await sessions.touch("s", "a")
    await bus.drain()
    assert [e.event_type for e in rec.events] == [
        EventType.SESSION_CREATED, EventType.SESSION_EXPIRED, EventType.SESSION_CREATED]


async def test_reaper_expires_in_background(bus: EventBus) -> None:
    """start_reaper runs expire_idle periodically; aclose stops it."""
    clock = FakeClock()
    sessions = SessionManager(bus, ttl_seconds=10, clock=clock)
    await sessions.touch("s", "a")
    expired = asyncio.create_task(bus.wait_for(EventType.SESSION_EXPIRED, timeout=30))
    sessions.start_reaper(interval_s=0.001)
    sessions.start_reaper(interval_s=0.001)  # a second call keeps the one reaper
    await clock.advance(11)
    event = await expired
    assert event.session_id == "s" and len(sessions) == 0
    reaper = sessions._reaper
    assert reaper is not None and not reaper.done()
    await sessions.aclose()
    assert reaper.done() and sessions._reaper is None


def test_session_manager_rejects_bad_ttl() -> None:
    """ttl_seconds <= 0 is a ValueError naming it."""
    with pytest.raises(ValueError, match="ttl_seconds"):
        SessionManager(None, ttl_seconds=0)


async def test_touch_rejects_empty_session_id() -> None:
    """An empty session id is a ValueError naming it."""
    with pytest.raises(ValueError, match="session_id"):
        await SessionManager(None).touch("", "a")


async def test_without_bus_nothing_is_published() -> None:
    """Managers with bus=None still work."""
    sessions = SessionManager(None, ttl_seconds=1, clock=FakeClock())
    assert (await sessions.touch("s", "a")).session_id == "s"
    cps = CheckpointManager(None)
    cp = await cps.save("a", {"x": 1})
    assert await cps.restore(cp.checkpoint_id) == {"x": 1}


# ---------------------------------------------------------------------------- checkpoints


async def test_checkpoint_save_restore_deep_copies(bus: EventBus, rec: CapturingHandler) -> None:
    """save keeps a deep copy; restore returns a fresh deep copy each time."""
    cps = CheckpointManager(bus)
    state: dict[str, Any] = {"step": 1, "history": ["hi"]}
    cp = await cps.save("agent-1", state, session_id="s1", user_id="u1")
    state["history"].append("mutated after save")
    restored = await cps.restore(cp.checkpoint_id, user_id="u1")
    assert restored == {"step": 1, "history": ["hi"]}
    restored["history"].append("mutated after restore")
    assert await cps.restore(cp.checkpoint_id) == {"step": 1, "history": ["hi"]}
    assert cp.agent_id == "agent-1" and cp.session_id == "s1"
    await bus.drain()
    saved = rec.of_type(EventType.CHECKPOINT_SAVED)
    restored_ev = rec.of_type(EventType.CHECKPOINT_RESTORED)
    assert len(saved) == 1 and len(restored_ev) == 2
    assert saved[0].attributes[sc.AB_CHECKPOINT_ID] == cp.checkpoint_id
    assert (saved[0].agent_id, saved[0].session_id, saved[0].user_id) == ("agent-1", "s1", "u1")
    assert restored_ev[0].attributes[sc.AB_CHECKPOINT_ID] == cp.checkpoint_id
    assert restored_ev[0].session_id == "s1" and restored_ev[0].user_id == "u1"


async def test_restore_unknown_checkpoint_names_it(bus: EventBus, rec: CapturingHandler) -> None:
    """Restoring an unknown id raises KeyError naming it, and publishes nothing."""
    cps = CheckpointManager(bus)
    with pytest.raises(KeyError, match="cp-missing"):
        await cps.restore("cp-missing")
    await bus.drain()
    assert rec.events == []


async def test_uncopyable_state_is_rejected(bus: EventBus, rec: CapturingHandler) -> None:
    """State that cannot be deep-copied raises TypeError; nothing is stored or published."""
    cps = CheckpointManager(bus)
    with pytest.raises(TypeError):
        await cps.save("a", {"lock": threading.Lock()})
    await bus.drain()
    assert rec.events == [] and cps.latest("a") is None


async def test_latest_and_retention() -> None:
    """latest gives the newest checkpoint; beyond max_per_agent the oldest are discarded."""
    cps = CheckpointManager(None, max_per_agent=2)
    first = await cps.save("a", 1)
    second = await cps.save("a", 2)
    third = await cps.save("a", 3)
    other = await cps.save("b", "b")
    assert cps.latest("a") is third and cps.latest("b") is other
    assert cps.latest("nobody") is None
    with pytest.raises(KeyError, match=first.checkpoint_id):
        await cps.restore(first.checkpoint_id)
    assert await cps.restore(second.checkpoint_id) == 2
    with pytest.raises(ValueError, match="max_per_agent"):
        CheckpointManager(None, max_per_agent=0)


# ---------------------------------------------------------------------------- in a run


def _executor(agent: Any, bus: EventBus, **kw: Any) -> AgentExecutor:
    return AgentExecutor(
        agent_id="agent-1",
        config=AgentConfig(name="agent-1", description="d", model="m"),
        agent=agent,
        event_bus=bus,
        **kw,
    )


async def test_manager_events_inside_a_run_carry_run_ids(
    bus: EventBus, rec: CapturingHandler
) -> None:
    """Session and checkpoint events published inside a run carry its trace ids and are
    caused by the run."""
    sessions = SessionManager(bus, ttl_seconds=60, clock=FakeClock())
    cps = CheckpointManager(bus)

    async def agent(run: RunContext) -> Any:
        await sessions.touch("s-inside", run.agent_id)
        cp = await cps.save(run.agent_id, {"k": 1})
        return await cps.restore(cp.checkpoint_id)

    result = await _executor(agent, bus).execute()
    await bus.drain()
    assert result.output == {"k": 1}
    inside = [rec.of_type(t)[0] for t in (EventType.SESSION_CREATED, EventType.CHECKPOINT_SAVED,
                                     EventType.CHECKPOINT_RESTORED)]
    for e in inside:
        assert e.trace_id == result.trace_id and e.span_id == result.span_id
        assert e.causation_id == result.run_id
        assert e.correlation_id == result.run_id


async def test_executor_touches_session_before_agent_started(
    bus: EventBus, rec: CapturingHandler
) -> None:
    """AgentExecutor(sessions=...) touches the context's session before AGENT_STARTED:
    SESSION_CREATED on the first run of a session only, carrying that run's trace ids."""
    clock = FakeClock()
    sessions = SessionManager(bus, ttl_seconds=60, clock=clock)

    async def agent(run: RunContext) -> Any:
        return "ok"

    ex = _executor(agent, bus, sessions=sessions)
    first = await ex.execute(AgentContext(input="a", user_id="u1", session_id="s1"))
    await clock.advance(5)
    second = await ex.execute({"input": "b", "user_id": "u1", "session_id": "s1"})
    await ex.execute("no session")
    await bus.drain()
    types = [e.event_type for e in rec.events]
    assert types == [
        EventType.SESSION_CREATED, EventType.AGENT_STARTED, EventType.AGENT_COMPLETED,
        EventType.AGENT_STARTED, EventType.AGENT_COMPLETED,
        EventType.AGENT_STARTED, EventType.AGENT_COMPLETED,
    ]
    created = rec.events[0]
    assert (created.session_id, created.user_id, created.agent_id) == ("s1", "u1", "agent-1")
    assert created.trace_id == first.trace_id and created.span_id == first.span_id
    assert created.causation_id == first.run_id
    session = sessions.get("s1")
    assert session is not None and session.last_seen == 5.0
    assert second.success and len(sessions) == 1


async def test_run_checkpoint_helpers(bus: EventBus, rec: CapturingHandler) -> None:
    """RunContext.save_checkpoint / restore_checkpoint use the executor's CheckpointManager
    with the run's agent, session, user and trace ids."""
    cps = CheckpointManager(bus)

    async def agent(run: RunContext) -> Any:
        state = {"turn": 3}
        cp = await run.save_checkpoint(state)
        state["turn"] = 99
        return cp.checkpoint_id, await run.restore_checkpoint(cp.checkpoint_id)

    ex = _executor(agent, bus, checkpoints=cps)
    result = await ex.execute(AgentContext(input="x", user_id="u1", session_id="s1"))
    await bus.drain()
    assert result.success, result.error_message
    cp_id, restored = result.output
    assert restored == {"turn": 3}
    latest = cps.latest("agent-1")
    assert latest is not None and latest.checkpoint_id == cp_id and latest.session_id == "s1"
    for t in (EventType.CHECKPOINT_SAVED, EventType.CHECKPOINT_RESTORED):
        e = rec.of_type(t)[0]
        assert e.attributes[sc.AB_CHECKPOINT_ID] == cp_id
        assert (e.session_id, e.user_id) == ("s1", "u1")
        assert e.trace_id == result.trace_id and e.causation_id == result.run_id


async def test_run_checkpoint_without_manager_is_clear_error(bus: EventBus) -> None:
    """save_checkpoint on an executor without a CheckpointManager fails the run with an
    error saying how to configure one."""

    async def agent(run: RunContext) -> Any:
        return await run.save_checkpoint({"x": 1})

    result = await _executor(agent, bus).execute()
    assert result.success is False and result.error_type == "RuntimeError"
    assert result.error_message is not None and "checkpoints=" in result.error_message


async def test_run_restore_unknown_checkpoint_fails_run(bus: EventBus) -> None:
    """restore_checkpoint of an unknown id fails the run with KeyError naming the id."""

    async def agent(run: RunContext) -> Any:
        return await run.restore_checkpoint("nope-123")

    result = await _executor(agent, bus, checkpoints=CheckpointManager(bus)).execute()
    assert result.error_type == "KeyError"
    assert result.error_message is not None and "nope-123" in result.error_message


def test_executor_rejects_wrong_manager_types() -> None:
    """sessions / checkpoints of the wrong type are a TypeError naming the argument."""
    cfg = AgentConfig(name="a")
    with pytest.raises(TypeError, match="sessions"):
        AgentExecutor(agent_id="a", config=cfg, sessions=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="checkpoints"):
        AgentExecutor(agent_id="a", config=cfg, checkpoints={})  # type: ignore[arg-type]


async def test_touch_during_expiry_publish_starts_a_new_session() -> None:
    """A session touched while expire_idle is still publishing (bus backpressure) is not
    reported expired after the touch: the touch starts a new, live session."""
    bus = EventBus(max_queue_size=1)
    gate = asyncio.Event()
    seen: list[SystemEvent] = []

    async def slow(event: SystemEvent) -> None:
        await gate.wait()
        seen.append(event)

    await bus.subscribe(EventType.ANY, slow)
    clock = FakeClock()
    sessions = SessionManager(bus, ttl_seconds=5, clock=clock)
    await sessions.touch("s1", "a")  # in the handler
    await asyncio.sleep(0)
    await sessions.touch("s2", "a")  # fills the mailbox
    await clock.advance(6)
    expiring = asyncio.create_task(sessions.expire_idle())
    await asyncio.sleep(0)
    assert not expiring.done()  # blocked publishing SESSION_EXPIRED for s1
    touching = asyncio.create_task(sessions.touch("s2", "a"))
    await asyncio.sleep(0)
    gate.set()
    expired = await asyncio.wait_for(expiring, 30)
    fresh = await asyncio.wait_for(touching, 30)
    assert {s.session_id for s in expired} == {"s1", "s2"}
    assert sessions.get("s2") is fresh and fresh.created_at == 6.0
    await bus.close()
    s2 = [e.type_name for e in seen if e.session_id == "s2"]
    assert sorted(s2) == ["session_created", "session_created", "session_expired"]
