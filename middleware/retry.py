"""RetryHandler: retry a failing handler with exponential back-off and jitter, then
dead-letter the event (seed 003 "事件重试")."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from agentbus import handler_name

from ._base import begin_close_handler, close_handler, logger, wrapped_name
from ._clock import SYSTEM_CLOCK, Clock, sleep_unless

__all__ = ["DeadLetter", "RetryHandler"]

T = TypeVar("T")

DeadLetterReason = Literal["exhausted", "not_retryable", "closed", "cancelled"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event that could not be handled: an entry of ``RetryHandler.failed_events``.

    Attributes:
        event: what the handler was called with (a ``SystemEvent``, or a batch list when
            the retried callable is a batch sink).
        error: the last exception raised.
        attempts: how many calls were made (``1 <= attempts <= max_attempts``).
        handler: the name of the handler that failed (``agentbus.handler_name``).
        reason: ``"exhausted"`` (every attempt failed), ``"not_retryable"`` (the error is not
            in ``retry_on``), ``"closed"`` (the handler was closed while waiting to retry) or
            ``"cancelled"`` (the calling task was cancelled between attempts).
    """

    event: Any
    error: BaseException
    attempts: int
    handler: str
    reason: DeadLetterReason


class RetryHandler:
    """Retry policy plus dead-letter list (seed 003 ``RetryHandler``).

    ``await retry.handle_with_retry(handler, event)`` calls ``handler(event)`` up to
    ``max_attempts`` times. Between attempts it sleeps
    ``min(max_delay, delay * backoff ** (attempt - 1))`` seconds, scaled by a random factor
    in ``[1 - jitter, 1 + jitter]``. After the last failure the event is appended to
    ``failed_events`` as a :class:`DeadLetter` carrying the last error, and that error is
    re-raised (as in the seed), so the bus logs and counts it.

    ``retry.wrap(handler)`` returns an async handler doing the same, for chains:
    ``FilteredHandler(cond, retry.wrap(webhook_alert))``. ``wrap`` works for any one-argument
    async callable, including a batch sink of :class:`~middleware.BatchEventHandler`.

    Shutdown has two phases, like ``EventBus.close()``: :meth:`begin_close` (sync, called
    before the bus drains, and forwarded to it by every wrapper in a chain) wakes every
    retry waiting for its back-off; those are dead-lettered with reason ``"closed"`` instead
    of waiting, and from then on a call gets a single attempt (events still being drained are
    tried once). :meth:`aclose` (after draining) does the same if not done yet, waits until no
    attempt is in flight, then closes the wrapped handlers. A retry cancelled between
    attempts is dead-lettered with reason ``"cancelled"`` and the ``CancelledError``
    propagates.

    Args:
        max_attempts: total calls per event, ``>= 1`` (seed default 3).
        delay: back-off before the second attempt, seconds, ``>= 0`` (seed default 1.0).
        backoff: multiplier per further attempt, ``>= 1`` (1 = constant delay).
        max_delay: cap of one back-off, seconds.
        jitter: relative random spread of each back-off, ``0 <= jitter <= 1``.
        retry_on: exception types worth retrying; others are dead-lettered at once with
            reason ``"not_retryable"`` and re-raised.
        clock: time source and sleep (``agentbus.testing.FakeClock`` in tests).
        rng: random source of the jitter (pass ``random.Random(seed)`` for repeatability).

    Raises:
        ValueError: an argument is out of range, naming it.

    Event-loop thread only.
    """

    def __init__(
        self,
        max_attempts: int = 3,
        delay: float = 1.0,
        *,
        backoff: float = 2.0,
        max_delay: float = 60.0,
        jitter: float = 0.1,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay!r}")
        if backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {backoff!r}")
        if max_delay < 0:
            raise ValueError(f"max_delay must be >= 0 seconds, got {max_delay!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")
        self.max_attempts = max_attempts
        self.delay = delay
        self.backoff = backoff
        self.max_delay = max_delay
        self.jitter = jitter
        self.retry_on = retry_on
        self.clock = clock
        self._rng = rng or random.Random()
        self.failed_events: list[DeadLetter] = []
        self.retries = 0
        self._wrapped: list[Any] = []
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._closing_requested = False
        self._closed = False

    def backoff_delay(self, attempt: int) -> float:
        """The back-off after failed attempt number ``attempt`` (1-based), in seconds,
        jitter included."""
        base = min(self.max_delay, self.delay * self.backoff ** (attempt - 1))
        if self.jitter:
            base *= 1 + self._rng.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def _dead_letter(
        self, handler: Any, event: Any, error: BaseException, attempts: int,
        reason: DeadLetterReason,
    ) -> None:
        name = handler_name(handler)
        self.failed_events.append(DeadLetter(event, error, attempts, name, reason))
        logger.warning(
            "RetryHandler: %r dead-lettered an event after %d attempt(s) (%s): %s: %s",
            name, attempts, reason, type(error).__name__, error,
        )

    async def handle_with_retry(self, handler: Callable[[T], Awaitable[Any]], event: T) -> None:
        """Call ``handler(event)``, retrying failures (seed 003).

        Raises:
            Exception: the last error, after the event was dead-lettered.
            asyncio.CancelledError: the caller was cancelled (dead-lettered with reason
                ``"cancelled"`` if an attempt had already failed).
        """
        if self._closing is None:
            self._closing = asyncio.Event()
            if self._closing_requested:
                self._closing.set()
        closing = self._closing
        self._in_flight += 1
        attempt = 0
        last_error: BaseException | None = None
        try:
            while True:
                attempt += 1
                try:
                    await handler(event)
                    return
                except Exception as exc:
                    last_error = exc
                    if not isinstance(exc, self.retry_on):
                        self._dead_letter(handler, event, exc, attempt, "not_retryable")
                        raise
                    if attempt >= self.max_attempts:
                        self._dead_letter(handler, event, exc, attempt, "exhausted")
                        raise
                    if closing.is_set():
                        self._dead_letter(handler, event, exc, attempt, "closed")
                        raise
                try:
                    stopped = await sleep_unless(self.clock, self.backoff_delay(attempt), closing)
                except asyncio.CancelledError:
                    self._dead_letter(handler, event, last_error, attempt, "cancelled")
                    raise
                if stopped:
                    self._dead_letter(handler, event, last_error, attempt, "closed")
                    raise last_error
                self.retries += 1
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    def wrap(self, handler: Callable[[T], Awaitable[Any]]) -> Callable[[T], Awaitable[None]]:
        """An async handler that calls ``handler`` through :meth:`handle_with_retry`.

        The returned function has ``__qualname__`` ``"RetryHandler(<handler>)"`` (metric
        label), a ``begin_close()`` that is this policy's :meth:`begin_close`, and an
        ``aclose()`` that closes this policy and then ``handler``.
        """
        self._wrapped.append(handler)

        async def retrying(event: T) -> None:
            await self.handle_with_retry(handler, event)

        def begin_close() -> None:
            self.begin_close()

        async def aclose() -> None:
            await self.aclose()

        retrying.__qualname__ = wrapped_name("RetryHandler", handler)
        retrying.begin_close = begin_close  # type: ignore[attr-defined]
        retrying.aclose = aclose  # type: ignore[attr-defined]
        return retrying

    @property
    def in_flight(self) -> int:
        """Events currently being handled or waiting for a retry."""
        return self._in_flight

    @property
    def closing(self) -> bool:
        """True once :meth:`begin_close` or :meth:`aclose` was called."""
        return self._closing_requested

    def begin_close(self) -> None:
        """First phase of shutdown: wake every retry waiting for its back-off (each is
        dead-lettered with reason ``"closed"`` and its last error re-raised to its caller)
        and give later calls a single attempt; then forward ``begin_close()`` to the wrapped
        handlers.

        Sync, cheap, idempotent, never raises; ``EventBus.close()`` calls it before
        draining. Loop thread only.
        """
        if self._closing_requested:
            return
        self._closing_requested = True
        if self._closing is not None:
            self._closing.set()
        for handler in self._wrapped:
            begin_close_handler(handler)

    async def aclose(self) -> None:
        """:meth:`begin_close` if not done yet, wait for running attempts, then close the
        wrapped handlers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.begin_close()
        if self._in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()
        for handler in self._wrapped:
            await close_handler(handler)
