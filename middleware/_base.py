"""Helpers shared by the wrapper handlers (private)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agentbus import SystemEvent, handler_name

__all__ = ["AnyHandler", "call_maybe_async", "close_handler", "logger", "wrapped_name"]

logger = logging.getLogger("agentbus.middleware")

T = TypeVar("T")

AnyHandler = Callable[[SystemEvent], Any]
"""What wrappers accept: an async handler, or a sync callable (run in a worker thread)."""


def wrapped_name(kind: str, inner: Any) -> str:
    """Metric-label name of a wrapper: ``"FilteredHandler(premium_user_handler)"``."""
    return f"{kind}({handler_name(inner)})"


async def call_maybe_async(func: Callable[..., T | Awaitable[T]], *args: Any) -> T:
    """Call ``func(*args)`` on the loop thread and await the result if it is awaitable.

    For cheap callbacks (conditions, transforms, aggregation callbacks); blocking work
    belongs in a handler, which :func:`agentbus.as_async_handler` moves to a thread.
    """
    result = func(*args)
    if inspect.isawaitable(result):
        return await result
    return result


async def close_handler(handler: Any) -> None:
    """Await ``aclose()`` on ``handler``, or on the object of a bound-method handler.

    The same rule ``EventBus.close()`` applies; wrappers use it to forward ``aclose()`` to
    the handler they wrap. A failing ``aclose()`` is logged, never raised.
    """
    for target in (handler, getattr(handler, "__self__", None)):
        aclose = getattr(target, "aclose", None)
        if aclose is None or not callable(aclose):
            continue
        try:
            result = aclose()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            logger.error("aclose() of %r failed: %s", handler_name(handler), exc, exc_info=exc)
        return
