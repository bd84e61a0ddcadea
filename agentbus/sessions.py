"""Sessions and checkpoints with in-memory stores (seed 003 session / checkpoint events).

:class:`SessionManager` publishes ``SESSION_CREATED`` when a session is first seen and
``SESSION_EXPIRED`` when it has been idle longer than its TTL. :class:`CheckpointManager`
saves and restores agent state, publishing ``CHECKPOINT_SAVED`` / ``CHECKPOINT_RESTORED``.
Both attach their events to the current run's trace when called inside a run.

Event-loop rule: all methods run on the bus's event loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import semconv as sc
from .bus import EventBus
from .errors import AgentBusError
from .events import EventType, SystemEvent, new_event_id
from .executor import current_run

__all__ = ["Checkpoint", "CheckpointManager", "Session", "SessionManager"]

logger = logging.getLogger("agentbus.sessions")


@dataclass(slots=True)
class Session:
    """One conversation. Times are ``time.monotonic()`` seconds."""

    session_id: str
    agent_id: str
    user_id: str | None
    created_at: float
    last_seen: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A saved copy of agent state. ``state`` is a deep copy taken at save time."""

    checkpoint_id: str
    agent_id: str
    session_id: str | None
    state: Any
    created_unix: float


def _event(event_type: EventType, agent_id: str, *, user_id: str | None,
           session_id: str | None, attributes: dict[str, Any] | None = None,
           metadata: dict[str, Any] | None = None) -> SystemEvent:
    run = current_run()
    fields: dict[str, Any] = {
        "event_type": event_type,
        "agent_id": agent_id,
        "user_id": user_id,
        "session_id": session_id,
        "metadata": metadata or {},
        "attributes": attributes or {},
    }
    if run is not None:
        fields.update(
            causation_id=run.run_id,
            correlation_id=run.correlation_id,
            trace_id=run.trace_id,
            span_id=run.span_id,
            parent_span_id=run.parent_span_id,
        )
    return SystemEvent(**fields)


async def _publish(bus: EventBus | None, event: SystemEvent) -> None:
    if bus is None:
        return
    try:
        await bus.publish(event)
    except AgentBusError as exc:
        logger.warning("could not publish %s: %s", event.type_name, exc)


class SessionManager:
    """Tracks sessions and expires idle ones.

    Args:
        bus: where ``SESSION_*`` events go (``None``: none are published).
        ttl_seconds: idle time after which a session expires; ``> 0``.
        clock: monotonic clock in seconds (tests pass a fake one).

    Raises:
        ValueError: ``ttl_seconds <= 0``.
    """

    def __init__(
        self,
        bus: EventBus | None,
        ttl_seconds: float = 1800.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
        self.bus = bus
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        """The live session, or ``None``."""
        return self._sessions.get(session_id)

    async def touch(self, session_id: str, agent_id: str, user_id: str | None = None) -> Session:
        """Return the session, creating it (and publishing ``SESSION_CREATED``) if new;
        refresh its idle timer."""
        if not session_id:
            raise ValueError("session_id must be a non-empty string")
        now = self._clock()
        s = self._sessions.get(session_id)
        if s is not None:
            s.last_seen = now
            return s
        s = Session(session_id, agent_id, user_id, now, now)
        self._sessions[session_id] = s
        await _publish(self.bus, _event(EventType.SESSION_CREATED, agent_id,
                                        user_id=user_id, session_id=session_id))
        return s

    async def expire_idle(self) -> list[Session]:
        """Expire every session idle for longer than the TTL, publishing
        ``SESSION_EXPIRED`` for each. Returns the expired sessions."""
        now = self._clock()
        dead = [s for s in self._sessions.values() if now - s.last_seen > self.ttl_seconds]
        # Forget them all before publishing (which may wait for room): a touch meanwhile
        # then starts a new session instead of reviving one about to be reported expired.
        for s in dead:
            del self._sessions[s.session_id]
        for s in dead:
            await _publish(self.bus, _event(
                EventType.SESSION_EXPIRED, s.agent_id, user_id=s.user_id,
                session_id=s.session_id,
            ))
        return dead

    def start_reaper(self, interval_s: float | None = None) -> None:
        """Run :meth:`expire_idle` every ``interval_s`` seconds (default: TTL / 4) in a
        background task on the running loop; :meth:`aclose` stops it."""
        interval = interval_s if interval_s is not None else max(self.ttl_seconds / 4, 0.01)
        if self._reaper is not None:
            return

        async def reap() -> None:
            while True:
                await asyncio.sleep(interval)
                await self.expire_idle()

        self._reaper = asyncio.get_running_loop().create_task(reap(), name="agentbus-reaper")

    async def aclose(self) -> None:
        """Stop the reaper task, if any."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None


class CheckpointManager:
    """Saves and restores agent state in memory, publishing checkpoint events.

    Args:
        bus: where ``CHECKPOINT_*`` events go (``None``: none are published).
        max_per_agent: oldest checkpoints of an agent beyond this count are discarded.
    """

    def __init__(self, bus: EventBus | None, *, max_per_agent: int = 100) -> None:
        if max_per_agent < 1:
            raise ValueError(f"max_per_agent must be >= 1, got {max_per_agent!r}")
        self.bus = bus
        self.max_per_agent = max_per_agent
        self._by_id: dict[str, Checkpoint] = {}
        self._by_agent: dict[str, list[str]] = {}

    async def save(self, agent_id: str, state: Any, *, session_id: str | None = None,
                   user_id: str | None = None) -> Checkpoint:
        """Deep-copy ``state`` into a new checkpoint; publish ``CHECKPOINT_SAVED``.

        Raises:
            TypeError: ``state`` cannot be deep-copied.
        """
        cp = Checkpoint(new_event_id(), agent_id, session_id, copy.deepcopy(state),
                        time.time())
        self._by_id[cp.checkpoint_id] = cp
        ids = self._by_agent.setdefault(agent_id, [])
        ids.append(cp.checkpoint_id)
        while len(ids) > self.max_per_agent:
            self._by_id.pop(ids.pop(0), None)
        await _publish(self.bus, _event(
            EventType.CHECKPOINT_SAVED, agent_id, user_id=user_id, session_id=session_id,
            attributes={sc.AB_CHECKPOINT_ID: cp.checkpoint_id},
        ))
        return cp

    async def restore(self, checkpoint_id: str, *, user_id: str | None = None) -> Any:
        """Return a deep copy of the saved state; publish ``CHECKPOINT_RESTORED``.

        Raises:
            KeyError: no such checkpoint (naming the id).
        """
        cp = self._by_id.get(checkpoint_id)
        if cp is None:
            raise KeyError(f"no checkpoint {checkpoint_id!r}")
        await _publish(self.bus, _event(
            EventType.CHECKPOINT_RESTORED, cp.agent_id, user_id=user_id,
            session_id=cp.session_id, attributes={sc.AB_CHECKPOINT_ID: checkpoint_id},
        ))
        return copy.deepcopy(cp.state)

    def latest(self, agent_id: str) -> Checkpoint | None:
        """The newest checkpoint of ``agent_id``, or ``None``."""
        ids = self._by_agent.get(agent_id)
        return self._by_id[ids[-1]] if ids else None
