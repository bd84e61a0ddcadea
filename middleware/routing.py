"""EventRouter: dispatch each event to the handlers registered for its type
(seed 003 "事件路由")."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from agentbus import EventType, Handler, SystemEvent, as_async_handler, handler_name

from ._base import AnyHandler, begin_close_handler, close_handler, logger

__all__ = ["EventRouter"]

H = TypeVar("H", bound=AnyHandler)


class EventRouter:
    """Route events by ``event_type`` to registered handlers (seed 003).

    Register with the ``@router.route(EventType.X)`` decorator (seed) or
    :meth:`add_route`; subscribe ``router.dispatch`` (or the router itself) to
    ``EventType.ANY``. Routes for ``EventType.ANY`` receive every event, after the
    type-specific ones. Handlers of one event run in registration order.

    Error isolation (seed 003 best practice 3): a route handler that raises does not stop
    the others; once all ran, the errors are raised together as an ``ExceptionGroup`` so the
    bus logs and counts the failure. ``CancelledError`` is never caught.

    Attributes:
        routes: ``{event_type: [handler, ...]}`` as registered (seed's attribute).
        errors: how many route handler calls raised.
    """

    def __init__(self) -> None:
        self.routes: dict[Enum, list[AnyHandler]] = {}
        self._compiled: dict[Enum, list[Handler]] = {}
        self.errors = 0
        self.name = "EventRouter"
        self._closed = False

    def add_route(self, event_type: Enum, handler: AnyHandler) -> None:
        """Register ``handler`` (async, or sync: run in a thread) for ``event_type``.

        Raises:
            TypeError: ``event_type`` is not an ``Enum`` member or ``handler`` not callable.
        """
        if not isinstance(event_type, Enum):
            raise TypeError(
                f"event_type must be an Enum member, got {type(event_type).__name__}"
            )
        self._compiled.setdefault(event_type, []).append(as_async_handler(handler))
        self.routes.setdefault(event_type, []).append(handler)

    def route(self, event_type: Enum) -> Callable[[H], H]:
        """Decorator registering a handler for ``event_type``; returns it unchanged (seed)."""

        def decorator(handler: H) -> H:
            self.add_route(event_type, handler)
            return handler

        return decorator

    async def dispatch(self, event: SystemEvent) -> None:
        """Call every handler routed for the event's type, then the ``ANY`` routes (seed).

        Raises:
            ExceptionGroup: one or more route handlers raised (all of them still ran).
        """
        handlers = self._compiled.get(event.event_type, [])
        catch_all = self._compiled.get(EventType.ANY)
        if catch_all:
            handlers = handlers + catch_all
        errors: list[Exception] = []
        for handler in handlers:
            try:
                await handler(event)
            except Exception as exc:
                self.errors += 1
                logger.error(
                    "EventRouter handler %r failed on %s event %s: %s",
                    handler_name(handler), event.type_name, event.event_id, exc,
                )
                errors.append(exc)
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} EventRouter handler(s) failed on {event.type_name}", errors
            )

    async def __call__(self, event: SystemEvent) -> None:
        """Same as :meth:`dispatch`, so the router itself is a handler."""
        await self.dispatch(event)

    def _distinct_handlers(self) -> list[AnyHandler]:
        seen: set[int] = set()
        distinct: list[AnyHandler] = []
        for handlers in self.routes.values():
            for handler in handlers:
                key = id(getattr(handler, "__self__", handler))
                if key not in seen:
                    seen.add(key)
                    distinct.append(handler)
        return distinct

    def begin_close(self) -> None:
        """Forward the first phase of shutdown to every routed handler once (sync, never
        raises)."""
        for handler in self._distinct_handlers():
            begin_close_handler(handler)

    async def aclose(self) -> None:
        """Close every routed handler once (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for handler in self._distinct_handlers():
            await close_handler(handler)
