"""Helpers shared by the wrapper handlers (private)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agentbus import SystemEvent, handler_name
from agentbus._dispatch import is_async_callable

__all__ = [
    "AnyHandler",
    "begin_close_handler",
    "call_maybe_async",
    "call_off_loop",
    "close_handler",
    "logger",
    "wrapped_name",
]

logger = logging.getLogger("agentbus.middleware")

T = TypeVar("T")

AnyHandler = Callable[[SystemEvent], Any]
"""What wrappers accept: an async handler, or a sync callable (run in a worker thread)."""


def wrapped_name(kind: str, inner: Any) -> str:
    """Metric-label name of a wrapper: ``"FilteredHandler(premium_user_handler)"``."""
    return f"{kind}({handler_name(inner)})"


async def call_maybe_async(func: Callable[..., T | Awaitable[T]], *args: Any) -> T:
    """Call ``func(*args)`` on the loop thread and await the result if it is awaitable.

    Only for cheap, pure predicates and transforms (``FilteredHandler``'s condition,
    ``EventTransformer``'s transform): a sync one runs inline on the event loop, so it must
    be fast and non-blocking (no I/O, no locks). Sinks, callbacks and alert functions use
    :func:`call_off_loop`.
    """
    result = func(*args)
    if inspect.isawaitable(result):
        return await result
    return result


async def call_off_loop(func: Callable[..., Awaitable[T] | T], *args: Any) -> T:
    """Await ``func(*args)`` without blocking the event loop.

    An async callable (coroutine function, ``functools.partial`` of one, object with an
    ``async __call__``) is awaited on the loop; a sync callable runs in the default executor
    (``asyncio.to_thread``), and if it returns an awaitable (a lambda returning a
    coroutine) that is awaited on the loop. The rule :func:`agentbus.as_async_handler`
    applies to handlers, for callables of any arity (batch sinks, aggregation callbacks,
    alert functions).

    Raises:
        Exception: whatever ``func`` raises.
    """
    if is_async_callable(func):
        return await func(*args)  # type: ignore[misc, no-any-return]
    result = await asyncio.to_thread(func, *args)
    if inspect.isawaitable(result):
        return await result
    return result


def _targets(handler: Any) -> tuple[Any, ...]:
    return (handler, getattr(handler, "__self__", None))


def begin_close_handler(handler: Any) -> None:
    """Call ``begin_close()`` on ``handler``, or on the object of a bound-method handler.

    The first phase of shutdown (the rule ``EventBus.close()`` applies before draining):
    synchronous and cheap, it tells every step of a chain that it is closing, so a
    :class:`~middleware.RetryHandler` stops waiting for back-off before anyone waits for it.
    Wrappers forward it inward with this function. A failing ``begin_close()`` is logged,
    never raised; an awaitable it returns is closed unawaited (the method must be sync).
    Loop thread only.
    """
    for target in _targets(handler):
        begin = getattr(target, "begin_close", None)
        if begin is None or not callable(begin):
            continue
        try:
            result = begin()
            if inspect.iscoroutine(result):
                result.close()
                logger.error("begin_close() of %r is async; it must be sync",
                             handler_name(handler))
        except Exception as exc:
            logger.error("begin_close() of %r failed: %s", handler_name(handler), exc,
                         exc_info=exc)
        return


async def close_handler(handler: Any) -> None:
    """Await ``aclose()`` on ``handler``, or on the object of a bound-method handler.

    The same rule ``EventBus.close()`` applies; wrappers use it to forward ``aclose()`` to
    the handler they wrap. A failing ``aclose()`` is logged, never raised.
    """
    for target in _targets(handler):
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
