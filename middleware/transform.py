"""EventTransformer: rewrite an event before handing it on (seed 003 "事件转换")."""

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

__all__ = ["EventTransformer", "TransformFunc"]

TransformFunc = Callable[
    [SystemEvent], SystemEvent | Awaitable[SystemEvent | None] | None
]
"""``(event) -> event | None``, sync or async; returning ``None`` drops the event."""


class EventTransformer:
    """Transform each event with ``transform_func``, then call ``actual_handler`` on the result.

    Seed 003's ``EventTransformer(transform_func, actual_handler)``. The seed's example
    transform mutates ``event.metadata`` in place; on our bus one event object is shared by
    every subscriber, so by default the transform receives a deep copy and other handlers
    never see its changes.

    Args:
        transform_func: ``(event) -> event | None`` (or async). ``None`` drops the event
            (counted in ``dropped``). A sync one runs inline on the event loop, so it must
            be fast and non-blocking (no I/O); put I/O in the handler.
        actual_handler: the handler receiving the transformed event (async or sync).
        copy: pass the transform a deep copy of the event (default ``True``). Turn off only
            if the transform never mutates its argument (e.g. returns ``model_copy``).

    Raises:
        TypeError: ``transform_func`` returns something other than a ``SystemEvent`` or
            ``None`` (raised per event, naming the type).
    """

    def __init__(
        self,
        transform_func: TransformFunc,
        actual_handler: AnyHandler,
        *,
        copy: bool = True,
    ) -> None:
        if not callable(transform_func):
            raise TypeError(
                f"transform_func must be callable, got {type(transform_func).__name__}"
            )
        self.transform = transform_func
        self.inner = actual_handler
        self.handler = as_async_handler(actual_handler)
        self.copy = copy
        self.name = wrapped_name("EventTransformer", actual_handler)
        self.__qualname__ = self.name
        self.dropped = 0

    async def __call__(self, event: SystemEvent) -> None:
        """Transform the event, then handle it (seed 003)."""
        source = event.model_copy(deep=True) if self.copy else event
        transformed = await call_maybe_async(self.transform, source)
        if transformed is None:
            self.dropped += 1
            return
        if not isinstance(transformed, SystemEvent):
            raise TypeError(
                f"transform_func must return a SystemEvent or None, "
                f"got {type(transformed).__name__}"
            )
        await self.handler(transformed)

    def begin_close(self) -> None:
        """Forward the first phase of shutdown to the wrapped handler (sync, never raises)."""
        begin_close_handler(self.inner)

    async def aclose(self) -> None:
        """Close the wrapped handler (idempotent if it is)."""
        await close_handler(self.inner)
