"""Composing handlers: :func:`chain` and the wrapper factories used with it.

A :data:`Wrapper` takes the handler it wraps and returns a handler. ``chain(w1, w2, sink)``
builds ``w1(w2(sink))`` once, by a reversed fold, so the chain reads left to right in the
order an event travels::

    retry = RetryHandler(max_attempts=5, delay=0.5)
    handler = chain(
        when(lambda e: e.event_type is EventType.ERROR_OCCURRED),
        limit(4),               # up to 4 deliveries at once
        retry.wrap,             # RetryHandler.wrap is a Wrapper
        alerting.on_error,      # the sink
    )
    await bus.subscribe(EventType.ANY, handler)

Closing the outermost handler (``EventBus.close()`` does) closes every step inward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._base import AnyHandler
from .concurrency import AsyncEventHandler
from .filtering import Condition, FilteredHandler
from .transform import EventTransformer, TransformFunc

__all__ = ["Wrapper", "chain", "limit", "transform", "when"]

Wrapper = Callable[[Any], AnyHandler]
"""A chain step: ``(inner_handler) -> handler``. Classes taking the handler they wrap as
their only required argument, and bound methods like ``RetryHandler(...).wrap``, qualify."""


def chain(*steps: Any) -> AnyHandler:
    """Compose wrappers around a sink: ``chain(w1, w2, sink) == w1(w2(sink))``.

    Args:
        *steps: zero or more :data:`Wrapper` s, then the sink handler (async, or sync: run
            in a worker thread by the step that calls it or by the bus).

    Returns:
        The outermost handler; subscribe it to the bus.

    Raises:
        TypeError: no steps, or a step is not callable, or a wrapper returned something
            that is not callable (the message names the step's position).
    """
    if not steps:
        raise TypeError("chain() needs at least a sink handler")
    for i, step in enumerate(steps):
        if not callable(step):
            raise TypeError(f"chain() step {i} is not callable: {step!r}")
    handler: Any = steps[-1]
    for i in range(len(steps) - 2, -1, -1):
        handler = steps[i](handler)
        if not callable(handler):
            raise TypeError(f"chain() step {i} returned a non-callable {handler!r}")
    return handler  # type: ignore[no-any-return]


def when(condition: Condition) -> Callable[[AnyHandler], FilteredHandler]:
    """Wrapper factory: pass only events where ``condition(event)`` is true
    (:class:`FilteredHandler`)."""
    return lambda inner: FilteredHandler(condition, inner)


def transform(
    func: TransformFunc, *, copy: bool = True
) -> Callable[[AnyHandler], EventTransformer]:
    """Wrapper factory: rewrite each event with ``func`` (:class:`EventTransformer`)."""
    return lambda inner: EventTransformer(func, inner, copy=copy)


def limit(max_concurrent: int) -> Callable[[AnyHandler], AsyncEventHandler]:
    """Wrapper factory: process up to ``max_concurrent`` events at once
    (:class:`AsyncEventHandler`). Validates ``max_concurrent`` immediately.

    Raises:
        ValueError: ``max_concurrent < 1``.
    """
    if not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
    return lambda inner: AsyncEventHandler(max_concurrent, inner)
