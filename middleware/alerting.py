"""AlertingHandler and alert services (seed 003 "告警处理器").

An alert service is anything with ``async send_alert(severity, title, message)`` (the seed's
interface). Built in: :class:`LogAlertService` (structlog), :class:`CallableAlertService`
(your function) and :class:`WebhookAlertService` (HTTP POST of JSON with ``httpx``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from agentbus import EventType, SystemEvent

from ._base import begin_close_handler, call_off_loop, close_handler
from ._clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    import httpx

    from .redaction import Redactor

__all__ = [
    "AlertService",
    "AlertingHandler",
    "CallableAlertService",
    "LogAlertService",
    "WebhookAlertService",
]


@runtime_checkable
class AlertService(Protocol):
    """Where alerts go (seed 003's ``alert_service``).

    ``send_alert`` raises on failure, so a :class:`~middleware.RetryHandler` can retry it.
    An optional ``aclose()`` is called when the :class:`AlertingHandler` closes.
    """

    async def send_alert(self, severity: str, title: str, message: str) -> None:
        """Deliver one alert. ``severity`` is e.g. ``"high"`` or ``"warning"``."""
        ...


class LogAlertService:
    """Alerts as structured log records (structlog), one per alert.

    Args:
        logger: a structlog bound logger; default ``structlog.get_logger("agentbus.alerts")``.

    Severity ``"critical"``/``"high"``/``"error"`` logs at error level, anything else at
    warning level; keys ``severity``, ``title``, ``alert_message``. The message is logged as
    given: :class:`AlertingHandler` keeps error text out of it unless content capture is on.
    """

    def __init__(self, logger: Any = None) -> None:
        self.logger = logger if logger is not None else structlog.get_logger("agentbus.alerts")

    async def send_alert(self, severity: str, title: str, message: str) -> None:
        """Log the alert."""
        level = "error" if severity in ("critical", "high", "error") else "warning"
        getattr(self.logger, level)("alert", severity=severity, title=title, alert_message=message)


class CallableAlertService:
    """Alerts passed to a function ``(severity, title, message) -> None`` (sync or async).

    An async function is awaited on the event loop; a sync one runs in a worker thread
    (``asyncio.to_thread``), so it may block (e.g. ``requests.post``, ``smtplib``).

    Raises:
        TypeError: ``func`` is not callable.
    """

    def __init__(self, func: Callable[[str, str, str], Awaitable[Any] | Any]) -> None:
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        self.func = func

    async def send_alert(self, severity: str, title: str, message: str) -> None:
        """Call the function (sync: in a worker thread); its error propagates."""
        await call_off_loop(self.func, severity, title, message)


class WebhookAlertService:
    """Alerts POSTed as JSON to an HTTP endpoint with ``httpx.AsyncClient``.

    Body: ``{"severity", "title", "message", "source": "agentbus"}`` plus ``extra`` fields.
    A non-2xx response raises ``httpx.HTTPStatusError``; a network failure raises
    ``httpx.HTTPError``: wrap ``send_alert`` (or the :class:`AlertingHandler`) in a
    :class:`~middleware.RetryHandler` to retry.

    Args:
        url: the webhook URL.
        client: an ``httpx.AsyncClient`` to use (not closed by us); default: our own,
            closed by :meth:`aclose`.
        timeout_s: request timeout, seconds, for our own client.
        headers: extra request headers (e.g. an authorization token).
        extra: constant fields merged into every body (e.g. ``{"service": "billing"}``).

    Raises:
        ImportError: ``httpx`` is not installed (``pip install agentbus[exporters]``).
        ValueError: ``url`` is not http(s).
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx is in the exporters extra
            raise ImportError(
                "WebhookAlertService needs httpx: pip install 'agentbus[exporters]'"
            ) from exc
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        self._own_client = client is None
        self.client = client if client is not None else httpx.AsyncClient(timeout=timeout_s)
        self.sent = 0

    async def send_alert(self, severity: str, title: str, message: str) -> None:
        """POST the alert; raises ``httpx.HTTPError`` on failure."""
        body = {**self.extra, "severity": severity, "title": title, "message": message,
                "source": "agentbus"}
        response = await self.client.post(self.url, json=body, headers=self.headers)
        response.raise_for_status()
        self.sent += 1

    async def aclose(self) -> None:
        """Close our own HTTP client (not one passed in). Idempotent."""
        if self._own_client and not self.client.is_closed:
            await self.client.aclose()


class AlertingHandler:
    """Turn error and slow-run events into alerts, de-duplicated (seed 003 ``AlertingHandler``).

    * :meth:`on_error`: ``ERROR_OCCURRED`` → severity ``"high"``, title
      ``"Agent Error: <agent_id>"``, message ``"<error_type> in agent <agent_id>"``.
      The seed sent the raw ``error_message``; error messages can quote prompts and user
      input (a guardrail error quoting the offending text), so by default it is left out,
      as in the OpenTelemetry GenAI conventions where content capture is opt-in. With
      ``capture_content=True`` the message gets ``": <error_message>"`` appended, passed
      through ``redactor`` first.
    * :meth:`on_slow_execution`: ``AGENT_COMPLETED`` slower than ``slow_threshold_ms`` →
      severity ``"warning"``, title ``"Slow Agent: <agent_id>"`` (seed; threshold was a
      hard-coded 5000 ms).
    * ``await handler(event)`` does both, for ``bus.subscribe(EventType.ANY, handler)``.

    De-duplication / rate limiting: an error alert is keyed on
    ``("high", agent_id, error_type)`` and a slow-run alert on ``("warning", agent_id)``;
    alerts with the same key within ``dedup_window_seconds`` of the last one *sent* are
    suppressed and counted (``suppressed``; per key in ``suppressed_by_key``), so a burst of
    one error sends one alert per window while a different error type of the same agent
    still alerts. An alert whose delivery fails does not open a window (the next
    occurrence, or a retry, sends again); the service's error propagates to the caller.

    Args:
        alert_service: an :class:`AlertService` (seed argument).
        slow_threshold_ms: ``execution_time_ms`` above which a run is slow, ``>= 0``.
        dedup_window_seconds: suppression window, seconds, ``>= 0`` (0 disables it).
        clock: time source of the window (``agentbus.testing.FakeClock`` in tests).
        capture_content: put the (redacted) ``error_message`` text into error alerts.
        redactor: a :class:`middleware.redaction.Redactor` (any ``(str) -> str`` callable)
            applied to captured text; default ``middleware.redaction.default_redactor()``.
            Unused when ``capture_content`` is off.

    Attributes:
        sent, suppressed: alerts delivered / suppressed.
        suppressed_by_key: ``{dedup key tuple: suppressed count}``.

    Raises:
        TypeError: ``alert_service`` has no ``send_alert``, or ``redactor`` is not callable.
        ValueError: a negative threshold or window.

    Event-loop thread only.
    """

    def __init__(
        self,
        alert_service: AlertService,
        *,
        slow_threshold_ms: float = 5000,
        dedup_window_seconds: float = 300,
        clock: Clock = SYSTEM_CLOCK,
        capture_content: bool = False,
        redactor: Redactor | None = None,
    ) -> None:
        if not callable(getattr(alert_service, "send_alert", None)):
            raise TypeError(
                f"alert_service must have an async send_alert(severity, title, message), "
                f"got {type(alert_service).__name__}"
            )
        if slow_threshold_ms < 0:
            raise ValueError(f"slow_threshold_ms must be >= 0, got {slow_threshold_ms!r}")
        if dedup_window_seconds < 0:
            raise ValueError(f"dedup_window_seconds must be >= 0, got {dedup_window_seconds!r}")
        if redactor is not None and not callable(redactor):
            raise TypeError(f"redactor must be callable, got {type(redactor).__name__}")
        if capture_content and redactor is None:
            from .redaction import default_redactor

            redactor = default_redactor()
        self.capture_content = bool(capture_content)
        self.redactor = redactor
        self.alert_service = alert_service
        self.slow_threshold_ms = slow_threshold_ms
        self.dedup_window_seconds = dedup_window_seconds
        self.clock = clock
        self.sent = 0
        self.suppressed = 0
        self.suppressed_by_key: dict[tuple[str, ...], int] = {}
        self.name = type(self).__qualname__
        self._last_sent: dict[tuple[str, ...], float] = {}
        self._sending: dict[tuple[str, ...], asyncio.Future[bool]] = {}
        self._closed = False

    async def alert(
        self, severity: str, title: str, message: str, *, key: tuple[str, ...] | None = None
    ) -> bool:
        """Send an alert unless an alert with the same de-duplication key is inside its
        window.

        Args:
            severity, title, message: as for :meth:`AlertService.send_alert`.
            key: the de-duplication key; default ``(severity, title)``.

        Concurrent duplicates wait for the first delivery: if it succeeds they are
        suppressed, if it fails one of them tries again.

        Returns:
            ``True`` if sent, ``False`` if suppressed.

        Raises:
            Exception: the alert service's error (nothing recorded as sent).
        """
        if key is None:
            key = (severity, title)
        while True:
            pending = self._sending.get(key)
            if pending is None:
                break
            if await asyncio.shield(pending):
                return self._suppress(key)
        last = self._last_sent.get(key)
        now = self.clock.monotonic()
        if last is not None and now - last < self.dedup_window_seconds:
            return self._suppress(key)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._sending[key] = fut
        ok = False
        try:
            await self.alert_service.send_alert(severity=severity, title=title, message=message)
            ok = True
        finally:
            del self._sending[key]
            fut.set_result(ok)
        self._last_sent[key] = self.clock.monotonic()
        self.sent += 1
        self._prune(now)
        return True

    def _suppress(self, key: tuple[str, ...]) -> bool:
        self.suppressed += 1
        self.suppressed_by_key[key] = self.suppressed_by_key.get(key, 0) + 1
        return False

    def _prune(self, now: float) -> None:
        if len(self._last_sent) > 1024:
            horizon = now - self.dedup_window_seconds
            for k in [k for k, t in self._last_sent.items() if t < horizon]:
                del self._last_sent[k]

    async def on_error(self, event: SystemEvent) -> None:
        """Alert on ``ERROR_OCCURRED`` (seed 003); other events are ignored.

        The message names the error type and agent; the error text only with
        ``capture_content`` (redacted).
        """
        if event.event_type is not EventType.ERROR_OCCURRED:
            return
        error_type = event.error_type or "UnknownError"
        message = f"{error_type} in agent {event.agent_id}"
        if self.capture_content and event.error_message and self.redactor is not None:
            message = f"{message}: {self.redactor(event.error_message)}"
        await self.alert(
            severity="high",
            title=f"Agent Error: {event.agent_id}",
            message=message,
            key=("high", event.agent_id, error_type),
        )

    async def on_slow_execution(self, event: SystemEvent) -> None:
        """Alert on an ``AGENT_COMPLETED`` slower than ``slow_threshold_ms`` (seed 003)."""
        if (
            event.event_type is EventType.AGENT_COMPLETED
            and event.execution_time_ms is not None
            and event.execution_time_ms > self.slow_threshold_ms
        ):
            await self.alert(
                severity="warning",
                title=f"Slow Agent: {event.agent_id}",
                message=f"Execution took {event.execution_time_ms:g}ms",
                key=("warning", event.agent_id),
            )

    async def __call__(self, event: SystemEvent) -> None:
        """:meth:`on_error` then :meth:`on_slow_execution`."""
        await self.on_error(event)
        await self.on_slow_execution(event)

    def begin_close(self) -> None:
        """First phase of shutdown: forward ``begin_close()`` to the alert service if it has
        one. Sync, never raises; loop thread only."""
        begin_close_handler(self.alert_service)

    async def aclose(self) -> None:
        """Close the alert service if it has ``aclose()`` (e.g. the webhook's client).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        await close_handler(self.alert_service)
