"""Log sinks: structlog configured to write one JSON object per line.

For the edge of an application (the CLI, a service's ``main``): library code only calls
``structlog.get_logger``; this module decides where the lines go. Each line is a compact JSON
object with ``event``, ``level``, ``timestamp`` (ISO 8601, UTC) and the bound fields; lines
logged while an OpenTelemetry span is current (e.g. inside an agent run) also get that span's
``trace_id`` / ``span_id`` when they do not carry their own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from opentelemetry import trace as otel_trace

__all__ = ["add_trace_context", "configure_logging"]


def add_trace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id`` / ``span_id`` (W3C hex) of the current
    OpenTelemetry span when the line does not already carry a ``trace_id``.

    Inside an :class:`agentbus.AgentExecutor` run the current span is the run's
    ``invoke_agent`` span, so a user's own log lines join the run's trace.
    """
    if "trace_id" not in event_dict:
        ctx = otel_trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event_dict["trace_id"] = f"{ctx.trace_id:032x}"
            event_dict["span_id"] = f"{ctx.span_id:016x}"
    return event_dict


def _level(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        value = logging.getLevelNamesMapping().get(level.upper())
        if value is not None:
            return value
    raise ValueError(
        f"level must be a logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or int, "
        f"got {level!r}"
    )


def configure_logging(
    stream: TextIO | None = None,
    path: str | Path | None = None,
    level: str | int = "INFO",
) -> TextIO:
    """Configure structlog globally to write one JSON object per line.

    Processors: context variables, log level, :func:`add_trace_context`, ISO UTC timestamp,
    stack/exception info, ``JSONRenderer`` (compact; newlines inside values are escaped, so
    a line is always one object). Lines below ``level`` are dropped cheaply.

    Args:
        stream: text stream to write to (default ``sys.stderr``).
        path: append to this file instead (opened line-buffered, UTF-8). The caller closes
            the returned stream when done.
        level: minimum level, a name (``"INFO"``) or a ``logging`` int.

    Returns:
        The stream lines are written to.

    Raises:
        ValueError: both ``stream`` and ``path`` given, or an unknown ``level``.
        OSError: ``path`` cannot be opened.

    This changes structlog's process-wide configuration; call it once at start-up, from the
    main thread. Writing is synchronous and serialised by structlog's logger lock.
    """
    if stream is not None and path is not None:
        raise ValueError("give either stream or path, not both")
    min_level = _level(level)
    out: TextIO
    if path is not None:
        out = Path(path).open("a", encoding="utf-8", buffering=1)  # noqa: SIM115 - returned
    else:
        out = stream if stream is not None else sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_trace_context,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return out
