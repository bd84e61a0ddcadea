"""FilteredHandler: pass only the events a condition accepts (seed 003 "过滤处理器")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentbus import SystemEvent, as_async_handler

from ._base import (
    AnyHandler,
    begin_close_handler,
    call_maybe_async,
    close_handler,
    wrapped_name,
)

__all__ = ["Condition", "FilteredHandler"]

Condition = Callable[[SystemEvent], bool | Awaitable[bool]]
"""A predicate on events, sync or async. A sync one runs inline on the event loop (no
thread hop per event), so it must be fast and non-blocking: no I/O, no locks."""


class FilteredHandler:
    """Call ``actual_handler`` only for events where ``condition_func(event)`` is true.

    Seed 003's ``FilteredHandler(condition_func, actual_handler)``, kept verbatim, plus:
    a sync ``actual_handler`` runs in a worker thread (never blocks the loop), ``aclose()``
    is forwarded to the wrapped handler, and ``name`` labels metrics.

    Args:
        condition_func: ``(event) -> bool`` (or an async one); a sync one runs on the event
            loop and must be fast and non-blocking. If it raises, the error
            propagates to the caller (the bus logs and counts it) and the handler is not
            called.
        actual_handler: the handler to call; any ``async (event) -> None`` or sync callable.

    Attributes:
        passed, rejected: how many events went through / were filtered out.
    """

    def __init__(self, condition_func: Condition, actual_handler: AnyHandler) -> None:
        if not callable(condition_func):
            raise TypeError(
                f"condition_func must be callable, got {type(condition_func).__name__}"
            )
        self.condition = condition_func
        self.inner = actual_handler
        self.handler = as_async_handler(actual_handler)
        self.name = wrapped_name("FilteredHandler", actual_handler)
        self.__qualname__ = self.name
        self.passed = 0
        self.rejected = 0

    async def __call__(self, event: SystemEvent) -> None:
        """Only handle events that satisfy the condition (seed 003)."""
        if await call_maybe_async(self.condition, event):
            self.passed += 1
            await self.handler(event)
        else:
            self.rejected += 1

    def begin_close(self) -> None:
        """Forward the first phase of shutdown to the wrapped handler (sync, never raises)."""
        begin_close_handler(self.inner)

    async def aclose(self) -> None:
        """Close the wrapped handler (idempotent if it is)."""
        await close_handler(self.inner)
