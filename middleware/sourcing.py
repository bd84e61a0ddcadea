"""EventSourcingHandler and an in-memory event store (seed 003 best practice 4,
"使用事件溯源")."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from agentbus import SystemEvent

from ._base import close_handler

__all__ = ["EventSourcingHandler", "EventStore", "InMemoryEventStore", "Reducer"]

S = TypeVar("S")

Reducer = Callable[[S, SystemEvent], S]
"""``(state, event) -> new state``: a pure function folding events into state."""


@runtime_checkable
class EventStore(Protocol):
    """An append-only event log.

    ``append`` returns ``False`` when the event (same ``event_id``) is already stored, so
    appends are idempotent (seed 003 best practice 1). ``read`` returns stored events in
    append order.
    """

    async def append(self, event: SystemEvent) -> bool:
        """Store ``event``; ``False`` if its ``event_id`` was already stored."""
        ...

    async def read(
        self, *, agent_id: str | None = None, event_type: Enum | None = None
    ) -> list[SystemEvent]:
        """Stored events in append order, optionally filtered."""
        ...


class InMemoryEventStore:
    """An :class:`EventStore` in a list, de-duplicated by ``event_id``. Loop thread only."""

    def __init__(self) -> None:
        self._events: list[SystemEvent] = []
        self._ids: set[str] = set()

    async def append(self, event: SystemEvent) -> bool:
        """Store ``event`` unless its ``event_id`` is already stored."""
        if event.event_id in self._ids:
            return False
        self._ids.add(event.event_id)
        self._events.append(event)
        return True

    async def read(
        self, *, agent_id: str | None = None, event_type: Enum | None = None
    ) -> list[SystemEvent]:
        """Stored events in append order, filtered by agent and/or type."""
        return [
            e for e in self._events
            if (agent_id is None or e.agent_id == agent_id)
            and (event_type is None or e.event_type is event_type)
        ]

    def __len__(self) -> int:
        return len(self._events)


class EventSourcingHandler(Generic[S]):
    """Persist every event, then fold it into state (seed 003 ``EventSourcingHandler``).

    ``handle(event)`` appends to ``event_store`` and then calls ``update_state(event)``
    (seed). The default ``update_state`` applies ``reducer``; subclasses may override it.
    An event the store already has (same ``event_id``, e.g. a replay) is not applied
    twice. :meth:`rebuild` recomputes ``state`` from the store from ``initial_state``.

    Args:
        event_store: any :class:`EventStore`; default a new :class:`InMemoryEventStore`.
        reducer: ``(state, event) -> state``; default keeps the state unchanged.
        initial_state: the state before any event.

    Attributes:
        state: the current state. applied, duplicates: events applied / skipped.

    Event-loop thread only.
    """

    def __init__(
        self,
        event_store: EventStore | None = None,
        *,
        reducer: Reducer[S] | None = None,
        initial_state: S | None = None,
    ) -> None:
        self.event_store: EventStore = (
            event_store if event_store is not None else InMemoryEventStore()
        )
        self.reducer = reducer
        self.initial_state = initial_state
        self.state: Any = initial_state
        self.applied = 0
        self.duplicates = 0
        self.name = type(self).__qualname__

    async def handle(self, event: SystemEvent) -> None:
        """Persist ``event``, then update state (seed 003)."""
        stored = await self.event_store.append(event)
        if stored is False:
            self.duplicates += 1
            return
        await self.update_state(event)

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`handle`."""
        await self.handle(event)

    async def update_state(self, event: SystemEvent) -> None:
        """Fold ``event`` into ``state`` with the reducer (seed hook; override freely)."""
        if self.reducer is not None:
            self.state = self.reducer(self.state, event)
        self.applied += 1

    async def rebuild(self) -> Any:
        """Recompute ``state`` from every stored event, starting at ``initial_state``.

        Returns:
            The rebuilt state.
        """
        self.state = self.initial_state
        self.applied = 0
        for event in await self.event_store.read():
            await self.update_state(event)
        return self.state

    async def aclose(self) -> None:
        """Close the event store if it has ``aclose()``."""
        await close_handler(self.event_store)
