"""Structured event logs with structlog (seed 003 ``LoggingHandler``).

One log call per event: the structlog ``event`` key is the event type (``"agent_started"``)
and every line carries the identifiers needed to join it with traces and metrics —
``agent_id``, ``event_id``, ``trace_id``, ``span_id``, ``parent_span_id``, ``causation_id``,
``correlation_id``, ``user_id``, ``session_id``, ``execution_time_ms``, ``error_type`` — plus
the non-content telemetry of the event (model, token counts, middleware and tool names).

Content (event ``metadata`` values, error messages, tool arguments) is NOT logged unless
``capture_content=True``; then it goes through the redactor first (the OpenTelemetry GenAI
default, see the README section "Traces and logs"). Where the lines go and how they are
rendered is structlog's configuration: :func:`exporters.logs.configure_logging` sets up one
JSON object per line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

import structlog

from agentbus import EventType, SystemEvent
from agentbus import semconv as sc

from .redaction import default_redactor

__all__ = ["LoggingHandler"]

_log = logging.getLogger("middleware.logging")

_ERROR_TYPES: frozenset[Enum] = frozenset({EventType.ERROR_OCCURRED, EventType.MIDDLEWARE_FAILED})

# Non-content attributes copied onto log lines, under short keys.
_ATTR_KEYS: tuple[tuple[str, str], ...] = (
    (sc.GEN_AI_AGENT_NAME, "agent_name"),
    (sc.GEN_AI_REQUEST_MODEL, "model"),
    (sc.GEN_AI_RESPONSE_MODEL, "response_model"),
    (sc.GEN_AI_PROVIDER_NAME, "provider"),
    (sc.GEN_AI_USAGE_INPUT_TOKENS, "input_tokens"),
    (sc.GEN_AI_USAGE_OUTPUT_TOKENS, "output_tokens"),
    (sc.AB_REQUESTS, "requests"),
    (sc.AB_COST_USD, "cost_usd"),
    (sc.AB_MIDDLEWARE, "middleware"),
    (sc.AB_PARENT_AGENT_ID, "parent_agent_id"),
    (sc.AB_SUBAGENT, "subagent"),
    (sc.AB_SUBAGENT_STATUS, "subagent_status"),
    (sc.AB_CHECKPOINT_ID, "checkpoint_id"),
)


class LoggingHandler:
    """Log every event as one structured line (seed 003 ``LoggingHandler``).

    Use it as a bus handler: ``await bus.subscribe(EventType.ANY, LoggingHandler())`` logs
    every event at ``info`` (``__call__`` is :meth:`log_event`); subscribe
    :meth:`log_error` to ``ERROR_OCCURRED`` / ``MIDDLEWARE_FAILED`` for an ``error``-level
    line as well, as in the seed.

    Args:
        logger: a structlog bound logger (anything with ``info`` / ``error`` taking an event
            string and keyword fields), or a stdlib ``logging.Logger`` (wrapped with
            ``structlog.wrap_logger``). Default ``structlog.get_logger("agentbus")``.
        capture_content: also log ``metadata`` values and ``error_message`` (content) — after
            redaction. Off by default.
        redactor: ``(value) -> value`` applied to content when capture is on; default
            :func:`middleware.redaction.default_redactor`.

    Never raises into the bus: a failure to log is caught, reported on the stdlib logger
    ``middleware.logging`` and counted in :attr:`errors` (``asyncio.CancelledError`` is not
    caught). The log call is synchronous on the event loop; point structlog at a fast sink.
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        capture_content: bool = False,
        redactor: Callable[[Any], Any] | None = None,
    ) -> None:
        if logger is None:
            logger = structlog.get_logger("agentbus")
        elif isinstance(logger, logging.Logger):
            logger = structlog.wrap_logger(logger)
        if not (callable(getattr(logger, "info", None))
                and callable(getattr(logger, "error", None))):
            raise TypeError(
                f"logger must have info() and error() methods, got {type(logger).__name__}"
            )
        if redactor is not None and not callable(redactor):
            raise TypeError(f"redactor must be callable (value) -> value, got {redactor!r}")
        self.logger: Any = logger
        self.capture_content = capture_content
        self.redactor: Callable[[Any], Any] = redactor if redactor is not None else (
            default_redactor()
        )
        self.errors = 0

    def fields(self, event: SystemEvent) -> dict[str, Any]:
        """The key/value fields logged for ``event`` (without the ``event`` key).

        Content keys (``metadata``, ``error_message``) appear only with capture on,
        redacted.
        """
        out: dict[str, Any] = {
            "agent_id": event.agent_id,
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "span_id": event.span_id,
            "parent_span_id": event.parent_span_id,
            "causation_id": event.causation_id,
            "correlation_id": event.correlation_id,
            "user_id": event.user_id,
            "session_id": event.session_id,
            "execution_time_ms": event.execution_time_ms,
            "error_type": event.error_type,
        }
        attrs = event.attributes
        if attrs:
            for key, short in _ATTR_KEYS:
                if key in attrs:
                    out[short] = attrs[key]
            tools = attrs.get(sc.AB_TOOL_CALLS)
            if isinstance(tools, list):
                out["tools"] = [t.get("name") for t in tools if isinstance(t, dict)]
        if self.capture_content:
            if event.metadata:
                out["metadata"] = self.redactor(event.metadata)
            if event.error_message is not None:
                out["error_message"] = self.redactor(event.error_message)
        return out

    async def log_event(self, event: SystemEvent) -> None:
        """Log ``event`` at ``info`` (seed 003 ``log_event``: "记录所有事件")."""
        try:
            self.logger.info(event.type_name, **self.fields(event))
        except Exception:
            self._failed(event)

    async def log_error(self, event: SystemEvent) -> None:
        """Log ``ERROR_OCCURRED`` / ``MIDDLEWARE_FAILED`` at ``error`` (seed 003
        ``log_error``); other events are ignored."""
        if event.event_type not in _ERROR_TYPES:
            return
        try:
            self.logger.error(event.type_name, **self.fields(event))
        except Exception:
            self._failed(event)

    __call__ = log_event

    def _failed(self, event: SystemEvent) -> None:
        self.errors += 1
        _log.exception("LoggingHandler could not log %s event %s", event.type_name,
                       event.event_id)
