"""OpenTelemetry spans from bus events (OpenTelemetry GenAI semantic conventions).

:class:`OTelSpanHandler` is a bus handler (subscribe it to ``EventType.ANY``) that turns the
events of each :class:`agentbus.AgentExecutor` run into *finished* spans and hands them to an
OpenTelemetry SDK ``SpanProcessor`` (``BatchSpanProcessor`` / ``SimpleSpanProcessor`` with
any exporter: console, JSON lines, OTLP, ``InMemorySpanExporter`` in tests). The spans use
exactly the W3C ids the executor put on the events, so they join the traces of whatever the
run was started in, and a framework's own spans (which nest under the run's span while the
agent runs) land in the same tree.

Span shape of one run (names and attribute keys from :mod:`agentbus.semconv`)::

    invoke_agent {gen_ai.agent.name}          INTERNAL, span_id = the events' span_id
    ├── middleware {agentbus.middleware.name}  one per executor middleware (its own span id)
    ├── execute_tool {gen_ai.tool.name}        one per tool call (parallel calls overlap)
    └── invoke_agent {sub-agent}               a sub-agent run (same trace, even across tasks)
    span events: checkpoint_saved, checkpoint_restored, session_created, session_expired,
                 subagent_spawned/completed/failed, custom, ... (events of the open run)

When the agent framework's own instrumentation is on (``agentbus.framework_instrumented``
on the completion event), the framework owns the GenAI spans and the run span becomes a
plain wrapper (same ids, so everything stays parented)::

    agentbus.run {gen_ai.agent.name}          no gen_ai.operation.name
    ├── middleware {agentbus.middleware.name}
    ├── invoke_agent {agent}                   the framework's (pydantic-ai: with its
    │   ├── chat {model}                       execute_tool spans); one per run
    │   └── execute_tool {tool}
    └── agentbus.run / invoke_agent {sub-agent}

:func:`configure_tracing` wires a handler to the console, a JSON-lines file or OTLP/HTTP
(standard ``OTEL_EXPORTER_OTLP_*`` variables) in one call, for application edges.

This module uses the OpenTelemetry SDK (the ``exporters`` extra); library code in
``agentbus`` and ``middleware`` depends only on ``opentelemetry-api``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO, cast

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from agentbus import EventType, SystemEvent, __version__, new_span_id
from agentbus import semconv as sc
from middleware.redaction import default_redactor

__all__ = [
    "JsonLinesSpanExporter",
    "OTelSpanHandler",
    "TracingKind",
    "TracingSetup",
    "configure_tracing",
]

logger = logging.getLogger("exporters.otel")

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# Status objects are immutable: the description-less ones are shared by all spans.
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_PLAIN = frozenset({str, bool, int, float})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CONTENT_CHARS = 16384
_RUN_END = frozenset({EventType.AGENT_COMPLETED, EventType.ERROR_OCCURRED})
_MIDDLEWARE = frozenset({EventType.MIDDLEWARE_EXECUTED, EventType.MIDDLEWARE_FAILED})
# Attributes of run events that are turned into span fields or child spans, not copied.
_NOT_COPIED = frozenset({sc.AB_TOOL_CALLS, sc.AB_START_TIME_NS, sc.AB_END_TIME_NS,
                         sc.ERROR_TYPE, sc.AB_FRAMEWORK_INSTRUMENTED})
# The only gen_ai.* attributes kept on a wrapper run span (framework instrumentation on):
# identifying context, nothing a GenAI backend would count twice (usage, models, provider).
_WRAPPER_GEN_AI = frozenset({sc.GEN_AI_AGENT_NAME, sc.GEN_AI_AGENT_ID, sc.GEN_AI_CONVERSATION_ID})
# Content keys an adapter may put in a run event's metadata (capture on only).
_CONTENT_KEYS = frozenset({sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES,
                           sc.GEN_AI_TOOL_CALL_ARGUMENTS, sc.GEN_AI_TOOL_CALL_RESULT})


_ONE_US = timedelta(microseconds=1)


def _ns(ts: datetime) -> int:
    return (ts - _EPOCH) // _ONE_US * 1000


def _resource(service_name: str) -> Resource:
    """``service.name=service_name`` unless ``OTEL_SERVICE_NAME`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` name the service (the environment wins, as the SDK
    specification asks)."""
    detected = Resource.create()
    name = detected.attributes.get(SERVICE_NAME)
    if isinstance(name, str) and not name.startswith("unknown_service"):
        return detected
    return detected.merge(Resource({SERVICE_NAME: service_name}))


def _attr(value: Any) -> AttributeValue | None:
    """A valid OTel attribute value for a non-content telemetry value (``None``: skip)."""
    if value.__class__ in _PLAIN:  # the common case, without the isinstance chain
        return cast(AttributeValue, value)
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        if not value:
            return None
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return tuple(value)
    if value is None:
        return None
    return json.dumps(value, default=str, separators=(",", ":"))


def _hex_int(value: str | None) -> int | None:
    return int(value, 16) if value else None


@dataclass(slots=True)
class _OpenRun:
    start_ns: int
    attributes: dict[str, Any]
    metadata: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    dropped_events: int = 0
    content: dict[str, Any] = field(default_factory=dict)


class OTelSpanHandler:
    """Turn run events into finished OpenTelemetry spans (GenAI semantic conventions).

    Subscribe it to every event: ``await bus.subscribe(EventType.ANY, handler)``.

    * ``AGENT_STARTED`` opens a run (kept in a bounded map; when more than
      ``max_open_runs`` runs are open, the oldest is forgotten and counted in
      :attr:`evicted_runs` — its span is still emitted from its completion event, without
      the span events collected before).
    * ``AGENT_COMPLETED`` / ``ERROR_OCCURRED`` emit the ``invoke_agent {gen_ai.agent.name}``
      span (kind INTERNAL) with ``trace_id`` / ``span_id`` / ``parent_span_id`` of the
      events and start/end times from ``agentbus.start_time_unix_nano`` /
      ``agentbus.end_time_unix_nano``. Attributes: ``gen_ai.operation.name=invoke_agent``,
      ``gen_ai.agent.name``, ``gen_ai.agent.id``, ``gen_ai.request.model``,
      ``gen_ai.provider.name`` and ``gen_ai.response.model`` when known,
      ``gen_ai.conversation.id`` (= ``session_id``), ``gen_ai.usage.input_tokens`` /
      ``output_tokens``, ``agentbus.usage.requests``, ``agentbus.cost_usd``,
      ``agentbus.run.id``, ``agentbus.correlation.id``, ``agentbus.parent.agent_id``. On
      error: ``error.type`` (the event's ``error_type``, ``_OTHER`` when missing) and status
      ERROR. The error *message* is content: it becomes the status description and an
      ``exception`` span event only with ``capture_content=True``.
    * One ``execute_tool {gen_ai.tool.name}`` child span per entry of
      ``attributes["agentbus.tool_calls"]`` (``gen_ai.operation.name=execute_tool``,
      ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``error.type``).
    * When the completion event has ``attributes["agentbus.framework_instrumented"]`` true,
      the agent framework's own instrumentation owns the GenAI spans (its ``invoke_agent`` /
      ``chat`` / ``execute_tool`` spans nest under this run's span, because the executor
      makes the run span the current context while the agent runs). The run span is then a
      plain wrapper named ``agentbus.run {gen_ai.agent.name}`` with the same ids, start/end
      and status: no ``gen_ai.operation.name``, and of the ``gen_ai.*`` attributes only
      ``gen_ai.agent.name``, ``gen_ai.agent.id`` and ``gen_ai.conversation.id`` (no usage,
      model or provider a GenAI backend would count twice); the ``agentbus.*`` attributes,
      ``error.type`` and (capture on) ``user.id`` / ``agentbus.metadata.*`` stay. No
      ``execute_tool`` spans are emitted. So each run has exactly one ``invoke_agent`` span
      and each tool call exactly one ``execute_tool`` span either way.
    * ``MIDDLEWARE_EXECUTED`` / ``MIDDLEWARE_FAILED`` → a ``middleware {name}`` child span
      with the event's own span id (``error.type`` on failure).
    * Any other event (checkpoints, sessions, sub-agent events, ``CUSTOM``, user ``Enum``
      types) that carries the ``trace_id`` / ``span_id`` of an open run becomes a span event
      (named after the event type) on that run's span (at most ``max_events_per_span``;
      more are counted in :attr:`dropped_events`). If that run has already ended (e.g.
      ``subagent_completed`` arriving after the parent finished) the event becomes a
      zero-length span of the same name, child of the run's span, counted in
      :attr:`late_events`. Events without trace context (a session created outside any run)
      belong to no trace: they are dropped and counted in :attr:`unattached_events`.

    Content capture is OFF by default (the OpenTelemetry GenAI default): no prompt, response,
    tool argument, metadata value, error message or ``user.id`` is put on a span. With
    ``capture_content=True`` they are added, each passed through ``redactor`` first:
    ``user.id``; ``agentbus.metadata.<key>`` for each metadata value of the run's events;
    ``gen_ai.input.messages`` / ``gen_ai.output.messages`` when an adapter put them in a run
    event's metadata under those keys; ``gen_ai.tool.call.arguments`` /
    ``gen_ai.tool.call.result`` on each tool span when a run event's metadata has a mapping
    ``{call_id: value}`` under those keys; the error message. A redactor that raises makes
    the value ``[REDACTION_FAILED]`` (never the raw text) and counts in :attr:`errors`.

    Args:
        span_processor: the SDK processor finished spans go to (``on_end(span)`` is called
            on the event loop: use ``BatchSpanProcessor`` for exporters that do I/O).
        resource: the ``Resource`` of every span; default ``service.name=agentbus`` merged
            with ``OTEL_RESOURCE_ATTRIBUTES``; ``OTEL_SERVICE_NAME`` wins if set.
        capture_content: export content (see above), redacted. Default ``False``.
        redactor: ``(value) -> value``; default :func:`middleware.redaction.default_redactor`.
        max_open_runs: bound of the open-run map, ``>= 1``.
        max_events_per_span: bound of span events per run span, ``>= 0``.

    Raises:
        TypeError: ``span_processor`` has no ``on_end``, or ``redactor`` is not callable.
        ValueError: a bound below its minimum.

    Never raises into the bus: a failure is logged on ``exporters.otel`` and counted in
    :attr:`errors` (``asyncio.CancelledError`` is never caught). Not thread-safe: use it
    from one event loop (one bus subscription), as the bus does.
    """

    def __init__(
        self,
        span_processor: SpanProcessor,
        *,
        resource: Resource | None = None,
        capture_content: bool = False,
        redactor: Callable[[Any], Any] | None = None,
        max_open_runs: int = 10_000,
        max_events_per_span: int = 128,
    ) -> None:
        if not callable(getattr(span_processor, "on_end", None)):
            raise TypeError(
                "span_processor must be an OpenTelemetry SpanProcessor (with on_end), "
                f"got {type(span_processor).__name__}"
            )
        if redactor is not None and not callable(redactor):
            raise TypeError(f"redactor must be callable (value) -> value, got {redactor!r}")
        if max_open_runs < 1:
            raise ValueError(f"max_open_runs must be >= 1, got {max_open_runs!r}")
        if max_events_per_span < 0:
            raise ValueError(f"max_events_per_span must be >= 0, got {max_events_per_span!r}")
        self.span_processor = span_processor
        self.resource = resource if resource is not None else _resource("agentbus")
        self.capture_content = capture_content
        self.redactor: Callable[[Any], Any] = (
            redactor if redactor is not None else default_redactor()
        )
        self.max_open_runs = max_open_runs
        self.max_events_per_span = max_events_per_span
        self._scope = InstrumentationScope(
            "agentbus", __version__, f"https://opentelemetry.io/schemas/{sc.SEMCONV_VERSION}"
        )
        self._open: OrderedDict[tuple[str, str], _OpenRun] = OrderedDict()
        self.errors = 0
        """Events that could not be turned into spans (logged), and redactor failures."""
        self.spans_emitted = 0
        """Finished spans handed to the processor."""
        self.evicted_runs = 0
        """Open runs forgotten because more than ``max_open_runs`` were open."""
        self.dropped_events = 0
        """Span events over ``max_events_per_span``, not exported."""
        self.late_events = 0
        """Events of already-ended runs, exported as zero-length child spans."""
        self.unattached_events = 0
        """Events without trace context (outside any run), not exported."""

    @property
    def open_runs(self) -> int:
        """Runs started and not yet completed."""
        return len(self._open)

    async def __call__(self, event: SystemEvent) -> None:
        """Handle one event (bus handler). Never raises ``Exception``."""
        try:
            etype = event.event_type
            if etype is EventType.AGENT_STARTED:
                self._start(event)
            elif etype in _RUN_END:
                self._finish(event)
            elif etype in _MIDDLEWARE:
                self._middleware(event)
            else:
                self._annotate(event)
        except Exception:
            self.errors += 1
            logger.exception("OTelSpanHandler could not handle %s event %s",
                             event.type_name, event.event_id)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the span processor (blocking; call from a thread, not the event loop, when
        the exporter does network I/O)."""
        return bool(self.span_processor.force_flush(timeout_millis))

    async def aclose(self) -> None:
        """Called by ``EventBus.close()``: flush the processor in a worker thread. The
        processor itself is not shut down (its owner does that, e.g.
        :meth:`TracingSetup.shutdown`). Runs still open are not exported."""
        if self._open:
            logger.debug("OTelSpanHandler closing with %d open runs", len(self._open))
        await asyncio.to_thread(self.force_flush)

    # ------------------------------------------------------------------ content
    def _content(self, value: Any) -> AttributeValue:
        """Redacted content as an attribute value (only called with capture on)."""
        try:
            red = self.redactor(value)
            if isinstance(red, bool | int | float):
                return red
            if not isinstance(red, str):
                red = self.redactor(json.dumps(red, default=str, ensure_ascii=False))
            text = str(red)
        except Exception:
            self.errors += 1
            logger.exception("redactor failed; content replaced")
            return "[REDACTION_FAILED]"
        if len(text) > _MAX_CONTENT_CHARS:
            text = text[:_MAX_CONTENT_CHARS] + "…[truncated]"
        return text

    def _metadata_attrs(self, metadata: Mapping[str, Any], out: dict[str, AttributeValue],
                        content: dict[str, Any] | None) -> None:
        for key, value in metadata.items():
            if key in _CONTENT_KEYS:
                if content is None:
                    continue
                if key in (sc.GEN_AI_TOOL_CALL_ARGUMENTS, sc.GEN_AI_TOOL_CALL_RESULT):
                    if isinstance(value, Mapping):
                        content.setdefault(key, {}).update(value)
                else:
                    content[key] = value
            else:
                out[f"{sc.AB_METADATA_PREFIX}{key}"] = self._content(value)

    # ------------------------------------------------------------------ events
    def _start(self, event: SystemEvent) -> None:
        if not (event.trace_id and event.span_id):
            self.unattached_events += 1
            return
        attrs = event.attributes
        start = attrs.get(sc.AB_START_TIME_NS)
        run = _OpenRun(
            start_ns=start if isinstance(start, int) else _ns(event.timestamp),
            attributes=dict(attrs),
            metadata=dict(event.metadata) if self.capture_content else {},
        )
        key = (event.trace_id, event.span_id)
        self._open[key] = run
        self._open.move_to_end(key)
        while len(self._open) > self.max_open_runs:
            self._open.popitem(last=False)
            self.evicted_runs += 1

    def _finish(self, event: SystemEvent) -> None:
        if not (event.trace_id and event.span_id):
            self.unattached_events += 1
            return
        run = self._open.pop((event.trace_id, event.span_id), None)
        attrs = event.attributes
        out: dict[str, AttributeValue] = {}
        for source in ((run.attributes if run else {}), attrs):
            for key, value in source.items():
                if key not in _NOT_COPIED:
                    if value.__class__ in _PLAIN:  # _attr's common case, inline
                        out[key] = cast(AttributeValue, value)
                        continue
                    v = _attr(value)
                    if v is not None:
                        out[key] = v
        agent_name = str(attrs.get(sc.GEN_AI_AGENT_NAME) or event.agent_id)
        out[sc.GEN_AI_OPERATION_NAME] = sc.OP_INVOKE_AGENT
        out[sc.GEN_AI_AGENT_NAME] = agent_name
        out[sc.GEN_AI_AGENT_ID] = event.agent_id
        if event.session_id:
            out[sc.GEN_AI_CONVERSATION_ID] = event.session_id
        if event.causation_id:
            out[sc.AB_RUN_ID] = event.causation_id
        if event.correlation_id:
            out[sc.AB_CORRELATION_ID] = event.correlation_id

        end_ns = attrs.get(sc.AB_END_TIME_NS)
        if not isinstance(end_ns, int):
            end_ns = _ns(event.timestamp)
        start_ns = attrs.get(sc.AB_START_TIME_NS)
        if not isinstance(start_ns, int):
            if run is not None:
                start_ns = run.start_ns
            else:
                start_ns = end_ns - int((event.execution_time_ms or 0.0) * 1e6)

        span_events: list[Event] = list(run.events) if run else []
        status = _UNSET
        content: dict[str, Any] | None = None
        if self.capture_content:
            content = dict(run.content) if run else {}
            if event.user_id:
                out[sc.USER_ID] = self._content(event.user_id)
            if run is not None:
                self._metadata_attrs(run.metadata, out, content)
            self._metadata_attrs(event.metadata, out, content)
            for key in (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES):
                if key in content:
                    out[key] = self._content(content[key])
        if event.event_type is EventType.ERROR_OCCURRED:
            etype = event.error_type or attrs.get(sc.ERROR_TYPE) or sc.ERROR_TYPE_OTHER
            out[sc.ERROR_TYPE] = str(etype)
            description = None
            if self.capture_content and event.error_message:
                msg = self._content(event.error_message)
                description = str(msg)
                span_events.append(Event(
                    sc.EXCEPTION_EVENT,
                    {sc.EXCEPTION_TYPE: str(etype), sc.EXCEPTION_MESSAGE: msg},
                    end_ns,
                ))
            status = Status(StatusCode.ERROR, description)

        trace_id = int(event.trace_id, 16)
        span_id = int(event.span_id, 16)
        if attrs.get(sc.AB_FRAMEWORK_INSTRUMENTED):
            # The framework emits the GenAI spans (invoke_agent, chat, execute_tool) under
            # this one: emit a plain wrapper span only, so no GenAI span is duplicated.
            wrapper = {k: v for k, v in out.items()
                       if not k.startswith("gen_ai.") or k in _WRAPPER_GEN_AI}
            self._emit(
                f"{sc.SPAN_RUN} {agent_name}", trace_id, span_id,
                _hex_int(event.parent_span_id), wrapper, span_events, status, start_ns, end_ns,
            )
            return
        run_ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
        self._emit(
            f"{sc.OP_INVOKE_AGENT} {agent_name}", trace_id, span_id,
            _hex_int(event.parent_span_id), out, span_events, status, start_ns, end_ns,
            run_ctx,
        )
        tools = attrs.get(sc.AB_TOOL_CALLS)
        if isinstance(tools, Sequence) and not isinstance(tools, str):
            for tool in tools:
                if isinstance(tool, Mapping):
                    self._tool(tool, trace_id, run_ctx, start_ns, end_ns, content)

    def _tool(self, tool: Mapping[str, Any], trace_id: int, parent: SpanContext, run_start: int,
              run_end: int, content: dict[str, Any] | None) -> None:
        name = str(tool.get("name") or "unknown")
        out: dict[str, AttributeValue] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: name,
        }
        call_id = tool.get("call_id")
        if call_id:
            out[sc.GEN_AI_TOOL_CALL_ID] = str(call_id)
        status = _UNSET
        if tool.get("error_type"):
            out[sc.ERROR_TYPE] = str(tool["error_type"])
            status = _ERROR
        if content is not None and call_id:
            for key in (sc.GEN_AI_TOOL_CALL_ARGUMENTS, sc.GEN_AI_TOOL_CALL_RESULT):
                values = content.get(key)
                if isinstance(values, Mapping) and call_id in values:
                    out[key] = self._content(values[call_id])
        start = tool.get("start_time_unix_nano")
        end = tool.get("end_time_unix_nano")
        self._emit(
            f"{sc.OP_EXECUTE_TOOL} {name}", trace_id, int(new_span_id(), 16), parent, out, (),
            status,
            start if isinstance(start, int) else run_start,
            end if isinstance(end, int) else run_end,
        )

    def _middleware(self, event: SystemEvent) -> None:
        if not (event.trace_id and event.span_id):
            self.unattached_events += 1
            return
        attrs = event.attributes
        name = str(attrs.get(sc.AB_MIDDLEWARE) or "unknown")
        out: dict[str, AttributeValue] = {
            sc.AB_MIDDLEWARE: name,
            sc.GEN_AI_AGENT_ID: event.agent_id,
            sc.AB_EVENT_ID: event.event_id,
        }
        end_ns = attrs.get(sc.AB_END_TIME_NS)
        if not isinstance(end_ns, int):
            end_ns = _ns(event.timestamp)
        start_ns = attrs.get(sc.AB_START_TIME_NS)
        if not isinstance(start_ns, int):
            start_ns = end_ns - int((event.execution_time_ms or 0.0) * 1e6)
        status = _UNSET
        events: list[Event] = []
        if event.event_type is EventType.MIDDLEWARE_FAILED:
            etype = event.error_type or sc.ERROR_TYPE_OTHER
            out[sc.ERROR_TYPE] = etype
            description = None
            if self.capture_content and event.error_message:
                msg = self._content(event.error_message)
                description = str(msg)
                events.append(Event(sc.EXCEPTION_EVENT,
                                    {sc.EXCEPTION_TYPE: etype, sc.EXCEPTION_MESSAGE: msg},
                                    end_ns))
            status = Status(StatusCode.ERROR, description)
        self._emit(
            f"{sc.SPAN_MIDDLEWARE} {name}", int(event.trace_id, 16), int(event.span_id, 16),
            _hex_int(event.parent_span_id), out, events, status, start_ns, end_ns,
        )

    def _annotate(self, event: SystemEvent) -> None:
        if not (event.trace_id and event.span_id):
            self.unattached_events += 1
            return
        out: dict[str, AttributeValue] = {sc.AB_EVENT_ID: event.event_id}
        for key, value in event.attributes.items():
            v = _attr(value)
            if v is not None:
                out[key] = v
        if event.error_type:
            out[sc.ERROR_TYPE] = event.error_type
        run = self._open.get((event.trace_id, event.span_id))
        if self.capture_content:
            self._metadata_attrs(event.metadata, out,
                                 run.content if run is not None else None)
            if event.error_message:
                out[sc.EXCEPTION_MESSAGE] = self._content(event.error_message)
        ts = _ns(event.timestamp)
        name = event.type_name
        if run is not None:
            if len(run.events) >= self.max_events_per_span:
                run.dropped_events += 1
                self.dropped_events += 1
                return
            run.events.append(Event(name, out, ts))
            return
        self.late_events += 1
        self._emit(name, int(event.trace_id, 16), int(new_span_id(), 16),
                   int(event.span_id, 16), out, (), _UNSET, ts, ts)

    # ------------------------------------------------------------------ output
    def _emit(self, name: str, trace_id: int, span_id: int, parent: int | SpanContext | None,
              attributes: dict[str, AttributeValue], events: Sequence[Event], status: Status,
              start_ns: int, end_ns: int, context: SpanContext | None = None) -> None:
        """Hand one finished span to the processor. ``parent`` is a span id or an already
        built parent context; ``context``, when given, is the span's own (else built from
        ``trace_id`` / ``span_id``)."""
        parent_ctx: SpanContext | None
        if isinstance(parent, SpanContext):
            parent_ctx = parent
        else:
            parent_ctx = (SpanContext(trace_id, parent, is_remote=False, trace_flags=_SAMPLED)
                          if parent else None)
        span = ReadableSpan(
            name=name,
            context=context if context is not None else SpanContext(
                trace_id, span_id, is_remote=False, trace_flags=_SAMPLED),
            parent=parent_ctx,
            resource=self.resource,
            attributes=attributes,
            events=tuple(events),
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=start_ns,
            end_time=max(end_ns, start_ns),
            instrumentation_scope=self._scope,
        )
        self.span_processor.on_end(span)
        self.spans_emitted += 1


class JsonLinesSpanExporter(SpanExporter):
    """Append each span as one compact JSON object per line to a file.

    The object is the SDK's ``ReadableSpan.to_json()`` form (``name``, ``context``
    {``trace_id``, ``span_id``} as ``0x``-prefixed hex, ``kind``, ``parent_id``,
    ``start_time`` / ``end_time`` ISO 8601, ``status``, ``attributes``, ``events``,
    ``links``, ``resource``) rendered on a single line.

    Args:
        path: file to append to (created if missing; its directory must exist).

    Raises:
        OSError: the file cannot be opened.

    Thread-safe (``BatchSpanProcessor`` exports from its worker thread). After
    :meth:`shutdown`, ``export`` returns ``SpanExportResult.FAILURE``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``, one line each; ``FAILURE`` if closed or the write fails."""
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            try:
                self._file.write(lines)
                self._file.flush()
            except (OSError, ValueError):
                logger.exception("JsonLinesSpanExporter could not write to %s", self.path)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the file; ``False`` if closed or flushing fails."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._file.flush()
            except (OSError, ValueError):
                return False
        return True

    def shutdown(self) -> None:
        """Flush and close the file (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()


TracingKind = Literal["console", "jsonl", "otlp", "none"]
"""Where :func:`configure_tracing` sends spans."""


@dataclass(frozen=True, slots=True)
class TracingSetup:
    """What :func:`configure_tracing` built.

    Attributes:
        kind: the exporter kind.
        handler: the :class:`OTelSpanHandler` to subscribe to ``EventType.ANY``; ``None``
            for ``"none"``.
        tracer_provider: an SDK ``TracerProvider`` sharing the same processor (``None`` for
            ``"none"``): pass it to a framework's instrumentation (or set it as the global
            provider at your entry point) so the framework's spans go to the same place.
    """

    kind: str
    handler: OTelSpanHandler | None
    tracer_provider: TracerProvider | None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything pending (blocking)."""
        if self.tracer_provider is None:
            return True
        return bool(self.tracer_provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Flush pending spans and shut the processor and exporter down (blocking;
        idempotent)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def configure_tracing(
    kind: TracingKind | str,
    *,
    path: str | Path | None = None,
    service_name: str = "agentbus",
    capture_content: bool = False,
    redactor: Callable[[Any], Any] | None = None,
    out: TextIO | None = None,
) -> TracingSetup:
    """Build a span handler exporting to the console, a JSON-lines file or OTLP/HTTP.

    Args:
        kind: ``"console"`` (SDK ``ConsoleSpanExporter``, multi-line JSON to ``out``), ``"jsonl"``
            (:class:`JsonLinesSpanExporter` at ``path``), ``"otlp"`` (OTLP over HTTP/protobuf;
            endpoint, headers, timeout, compression from the standard
            ``OTEL_EXPORTER_OTLP_*`` / ``OTEL_EXPORTER_OTLP_TRACES_*`` variables, default
            ``http://localhost:4318/v1/traces``) or ``"none"`` (no handler).
        path: the file for ``"jsonl"``.
        service_name: ``service.name`` of the resource, unless ``OTEL_SERVICE_NAME`` (or
            ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) is set, which wins.
        capture_content, redactor: passed to :class:`OTelSpanHandler`.
        out: the text stream of ``"console"`` (default: ``sys.stdout`` at call time).

    Returns:
        :class:`TracingSetup`; call its ``shutdown()`` at exit to flush. Spans are batched
        (``BatchSpanProcessor``, ``OTEL_BSP_*`` variables apply), exported from a worker
        thread, never on the event loop.

    Raises:
        ValueError: unknown ``kind``, or ``"jsonl"`` without ``path``.
        OSError: the ``"jsonl"`` file cannot be opened.

    Nothing global is changed: the tracer provider is not made the global one.
    """
    if kind == "none":
        return TracingSetup("none", None, None)
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter(service_name=service_name,
                                       out=out if out is not None else sys.stdout)
    elif kind == "jsonl":
        if path is None:
            raise ValueError('configure_tracing("jsonl") needs path=<file>')
        exporter = JsonLinesSpanExporter(path)
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(
            f"unknown tracing kind {kind!r}; expected one of 'console', 'jsonl', 'otlp', 'none'"
        )
    resource = _resource(service_name)
    processor = BatchSpanProcessor(exporter)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    handler = OTelSpanHandler(processor, resource=resource, capture_content=capture_content,
                              redactor=redactor)
    return TracingSetup(str(kind), handler, provider)
