"""Prometheus metrics from bus events: :class:`PrometheusMetricsHandler` and :class:`LabelGuard`.

The handler is an ``async (event) -> None`` callable meant for
``await bus.subscribe(EventType.ANY, handler)``. It turns every event into ``agentbus_*``
metrics (Prometheus naming: base units, ``_seconds``, ``_total``) and into the OpenTelemetry
GenAI client metrics (``gen_ai_client_token_usage``,
``gen_ai_client_operation_duration_seconds``; names, units and bucket boundaries from
:mod:`agentbus.semconv`), all registered in the ``CollectorRegistry`` it is given.

Labels are low-cardinality only (agent, model, status, error_type, tool, middleware,
event_type, subagent, type, operation); ``user_id``, ``session_id`` and trace ids never become
labels. Every free-valued label goes through a :class:`LabelGuard`: after ``label_limit``
distinct values per (metric, label), further values are folded into ``_OTHER`` and each
folded observation is counted in ``agentbus_label_overflow_total{metric,label}``.

Duration histograms carry the run's trace id as an exemplar (``{"trace_id": ...}``), visible
in the OpenMetrics exposition (``Accept: application/openmetrics-text``), so a latency
outlier links to its trace.

Metric table (see also the README section ``metrics``):

==========================================  =========  ===================================
name                                        type       labels
==========================================  =========  ===================================
agentbus_agent_runs_total                   counter    agent, model, status
agentbus_agent_run_duration_seconds         histogram  agent, model, status (+exemplar)
agentbus_agent_errors_total                 counter    agent, error_type
agentbus_agent_runs_in_progress             gauge      agent
agentbus_agent_tokens_total                 counter    agent, model, type
agentbus_agent_cost_usd_total               counter    agent, model
agentbus_tool_calls_total                   counter    agent, tool, status
agentbus_tool_call_duration_seconds         histogram  agent, tool (+exemplar)
agentbus_middleware_duration_seconds        histogram  agent, middleware (+exemplar)
agentbus_middleware_failures_total          counter    agent, middleware, error_type
agentbus_checkpoints_total                  counter    agent, operation
agentbus_sessions_created_total             counter    agent
agentbus_sessions_expired_total             counter    agent
agentbus_sessions_active                    gauge      agent
agentbus_subagent_delegations_total         counter    agent, subagent, status
agentbus_events_total                       counter    event_type
agentbus_label_overflow_total               counter    metric, label
agentbus_metrics_handler_errors_total       counter    (none)
gen_ai_client_token_usage                   histogram  gen_ai_operation_name,
                                                       gen_ai_provider_name,
                                                       gen_ai_request_model,
                                                       gen_ai_token_type
gen_ai_client_operation_duration_seconds    histogram  gen_ai_operation_name,
                                                       gen_ai_provider_name,
                                                       gen_ai_request_model, error_type
==========================================  =========  ===================================
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentbus import semconv as sc
from agentbus.events import EventType, SubAgentEventType, SystemEvent

__all__ = [
    "AGENT_COST_USD_TOTAL",
    "AGENT_ERRORS_TOTAL",
    "AGENT_RUNS_IN_PROGRESS",
    "AGENT_RUNS_TOTAL",
    "AGENT_RUN_DURATION_SECONDS",
    "AGENT_TOKENS_TOTAL",
    "CHECKPOINTS_TOTAL",
    "EVENTS_TOTAL",
    "GENAI_OPERATION_DURATION",
    "GENAI_TOKEN_USAGE",
    "HANDLER_ERRORS_TOTAL",
    "LABEL_OVERFLOW_TOTAL",
    "MIDDLEWARE_DURATION_BUCKETS_SECONDS",
    "MIDDLEWARE_DURATION_SECONDS",
    "MIDDLEWARE_FAILURES_TOTAL",
    "OTHER",
    "RUN_DURATION_BUCKETS_SECONDS",
    "SESSIONS_ACTIVE",
    "SESSIONS_CREATED_TOTAL",
    "SESSIONS_EXPIRED_TOTAL",
    "SUBAGENT_DELEGATIONS_TOTAL",
    "TOOL_CALLS_TOTAL",
    "TOOL_CALL_DURATION_SECONDS",
    "TOOL_DURATION_BUCKETS_SECONDS",
    "LabelGuard",
    "PrometheusMetricsHandler",
    "genai_label",
    "genai_metric_name",
]

logger = logging.getLogger("middleware.prometheus")

OTHER: Final = sc.ERROR_TYPE_OTHER
"""The value an over-the-cap label value is folded into (``"_OTHER"``, as in OTel)."""

# --- metric names (Prometheus exposition names) --------------------------------------------
AGENT_RUNS_TOTAL: Final = "agentbus_agent_runs_total"
AGENT_RUN_DURATION_SECONDS: Final = "agentbus_agent_run_duration_seconds"
AGENT_ERRORS_TOTAL: Final = "agentbus_agent_errors_total"
AGENT_RUNS_IN_PROGRESS: Final = "agentbus_agent_runs_in_progress"
AGENT_TOKENS_TOTAL: Final = "agentbus_agent_tokens_total"
AGENT_COST_USD_TOTAL: Final = "agentbus_agent_cost_usd_total"
TOOL_CALLS_TOTAL: Final = "agentbus_tool_calls_total"
TOOL_CALL_DURATION_SECONDS: Final = "agentbus_tool_call_duration_seconds"
MIDDLEWARE_DURATION_SECONDS: Final = "agentbus_middleware_duration_seconds"
MIDDLEWARE_FAILURES_TOTAL: Final = "agentbus_middleware_failures_total"
CHECKPOINTS_TOTAL: Final = "agentbus_checkpoints_total"
SESSIONS_CREATED_TOTAL: Final = "agentbus_sessions_created_total"
SESSIONS_EXPIRED_TOTAL: Final = "agentbus_sessions_expired_total"
SESSIONS_ACTIVE: Final = "agentbus_sessions_active"
SUBAGENT_DELEGATIONS_TOTAL: Final = "agentbus_subagent_delegations_total"
EVENTS_TOTAL: Final = "agentbus_events_total"
LABEL_OVERFLOW_TOTAL: Final = "agentbus_label_overflow_total"
HANDLER_ERRORS_TOTAL: Final = "agentbus_metrics_handler_errors_total"

# --- bucket boundaries (seconds) -----------------------------------------------------------
RUN_DURATION_BUCKETS_SECONDS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
)
"""Agent runs: milliseconds (cached or test models) up to ten minutes (long agent loops)."""
TOOL_DURATION_BUCKETS_SECONDS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
"""Tool calls: a local function (sub-millisecond) up to a one-minute remote call."""
MIDDLEWARE_DURATION_BUCKETS_SECONDS: Final = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
)
"""Middleware self time (excluding the layers inside it): microseconds to seconds."""


def genai_metric_name(semconv_name: str, unit: str | None = None) -> str:
    """Prometheus name of an OTel metric: dots become underscores, a unit suffix is added.

    ``genai_metric_name("gen_ai.client.operation.duration", "seconds")`` is
    ``"gen_ai_client_operation_duration_seconds"`` (the OTel → Prometheus translation rules).
    """
    name = semconv_name.replace(".", "_")
    return f"{name}_{unit}" if unit and not name.endswith(f"_{unit}") else name


def genai_label(attribute: str) -> str:
    """Prometheus label name of an OTel attribute: ``gen_ai.token.type`` → ``gen_ai_token_type``."""
    return attribute.replace(".", "_")


GENAI_TOKEN_USAGE: Final = genai_metric_name(sc.METRIC_GEN_AI_CLIENT_TOKEN_USAGE)
GENAI_OPERATION_DURATION: Final = genai_metric_name(
    sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION, "seconds"
)
_L_OP: Final = genai_label(sc.GEN_AI_OPERATION_NAME)
_L_PROVIDER: Final = genai_label(sc.GEN_AI_PROVIDER_NAME)
_L_MODEL: Final = genai_label(sc.GEN_AI_REQUEST_MODEL)
_L_TOKEN_TYPE: Final = genai_label(sc.GEN_AI_TOKEN_TYPE)
_L_ERROR_TYPE: Final = genai_label(sc.ERROR_TYPE)

_UNKNOWN: Final = "unknown"


class LabelGuard:
    """Caps the distinct values of one label of one metric (the cardinality guard).

    The first ``limit`` distinct (sanitised) values pass unchanged; every later new value is
    folded into ``"_OTHER"`` and ``on_overflow()`` is called once per folded observation.
    Admitted values are never evicted, so a value keeps its series for the process lifetime.

    Sanitising: non-strings are converted with ``str``; values longer than ``max_length``
    characters are truncated; characters that cannot be encoded as UTF-8 (lone surrogates)
    are replaced, so a bad value can never break the exposition.

    Args:
        limit: maximum number of distinct values, ``>= 1``.
        on_overflow: called (no arguments) for each folded observation; typically a bound
            ``Counter.labels(metric=..., label=...).inc``. It must not raise.
        max_length: maximum length of a value in characters, ``>= 1``.

    Raises:
        ValueError: ``limit`` or ``max_length`` is not an int ``>= 1``.

    Thread safety: safe to call from several threads; the admission path takes a lock.
    """

    __slots__ = ("_lock", "_values", "limit", "max_length", "on_overflow")

    def __init__(
        self,
        limit: int,
        *,
        on_overflow: Callable[[], None] | None = None,
        max_length: int = 128,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"LabelGuard limit must be an int >= 1, got {limit!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"LabelGuard max_length must be an int >= 1, got {max_length!r}")
        self.limit = limit
        self.max_length = max_length
        self.on_overflow = on_overflow
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def sanitize(self, value: object) -> str:
        """``value`` as a label value: a UTF-8-safe ``str`` of at most ``max_length`` chars."""
        text = value if isinstance(value, str) else str(value)
        if len(text) > self.max_length:
            text = text[: self.max_length]
        if not text.isascii():
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text

    def __call__(self, value: object) -> str:
        """The label value to use for ``value``: itself (sanitised) or ``"_OTHER"``."""
        values = self._values
        # Fast path: an exact ``str`` already admitted is its own sanitised form (sanitising
        # is idempotent and only sanitised values are admitted), so skip sanitising it.
        if value.__class__ is str and value in values:
            return value
        text = self.sanitize(value)
        if text in values:
            return text
        with self._lock:
            if text in values:
                return text
            if len(values) < self.limit:
                values.add(text)
                return text
        if self.on_overflow is not None:
            self.on_overflow()
        return OTHER

    @property
    def admitted(self) -> frozenset[str]:
        """The values admitted so far (at most ``limit``)."""
        with self._lock:
            return frozenset(self._values)


def _number(value: Any) -> float | None:
    """A finite, non-negative number from an attribute value, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        return None
    return number


class _Children(dict[Any, Any]):
    """The labelled children of one metric by label values (a 1-tuple's value alone for a
    one-label metric), each looked up with ``metric.labels`` once: ``labels()`` builds a key,
    validates and takes the metric's lock on every call. Keys are guarded label values, so the
    cache is bounded like the series themselves. Children are never removed by the handler."""

    __slots__ = ("_labels",)

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        super().__init__()
        self._labels = metric.labels

    def __missing__(self, key: Any) -> Any:
        child = self._labels(*key) if isinstance(key, tuple) else self._labels(key)
        self[key] = child
        return child


class _Guards(dict[tuple[str, str], LabelGuard]):
    """The handler's :class:`LabelGuard` per (metric, label), created on first use (so a
    label's overflow series appears when the label is first guarded, as before)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[str, str], LabelGuard]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: tuple[str, str]) -> LabelGuard:
        g = self[key] = self._make(*key)
        return g


class PrometheusMetricsHandler:
    """Turns bus events into Prometheus metrics (issue 2 "Metrics and /metrics", issue 4).

    Usage::

        registry = CollectorRegistry()
        metrics = PrometheusMetricsHandler(registry)
        await bus.subscribe(EventType.ANY, metrics, name="prometheus")

    Every event increments ``agentbus_events_total{event_type}`` (custom ``Enum`` types too).
    Then, by type:

    * ``AGENT_STARTED``: ``agentbus_agent_runs_in_progress{agent}`` +1, remembered by the
      run's ``span_id`` (or its ``event_id`` when it has no span).
    * ``AGENT_COMPLETED`` / ``ERROR_OCCURRED``: runs (``status`` success/error), duration
      (``execution_time_ms``, else the start/end Unix-nano attributes) with a trace-id
      exemplar, errors by ``error_type``, tokens (``gen_ai.usage.*``), cost
      (``agentbus.cost_usd``, else a numeric ``metadata["cost"]`` as in seed 001), tool calls
      and their durations (``agentbus.tool_calls``), the GenAI token-usage and
      operation-duration histograms (operation ``invoke_agent``). The in-progress gauge is
      decremented only if the matching start was seen (paired by ``span_id``, else
      ``causation_id``, else the oldest span-less start of the same agent), so an end whose
      start was missed (a late subscriber) never drives it negative.
    * ``MIDDLEWARE_EXECUTED`` / ``MIDDLEWARE_FAILED``: self time (``execution_time_ms``) in
      ``agentbus_middleware_duration_seconds``; failures by ``error_type``.
    * ``CHECKPOINT_SAVED`` / ``CHECKPOINT_RESTORED``: ``agentbus_checkpoints_total``.
    * ``SESSION_CREATED`` / ``SESSION_EXPIRED``: created/expired counters and the
      ``agentbus_sessions_active`` gauge (paired by ``session_id``, never negative).
    * ``SubAgentEventType.*``: ``agentbus_subagent_delegations_total`` with the sub-agent id
      from ``attributes["agentbus.subagent"]``.

    Label values: ``agent`` is ``attributes["gen_ai.agent.name"]`` when present, else the name
    last seen with that ``agent_id`` (so middleware, session and checkpoint events of an
    executor share its runs' agent label), else ``agent_id``. ``model`` is
    ``attributes["gen_ai.request.model"]``, else ``metadata["model"]``, else ``"unknown"``.

    Args:
        registry: where the metrics are registered (never the global registry unless passed).
        label_limit: distinct values allowed per (metric, label) before folding into
            ``"_OTHER"``; ``>= 1``.
        exemplars: attach ``{"trace_id": event.trace_id}`` exemplars to duration histograms.
        label_max_length: label values are truncated to this many characters.
        max_tracked: how many open runs / active sessions / agent names are remembered for
            pairing; beyond that the oldest are forgotten (an open run forgotten this way is
            taken off the in-progress gauge) so memory stays bounded.

    Raises:
        ValueError: a bad argument, naming it; or, from ``prometheus_client``, if ``registry``
            already holds metrics with these names (one handler per registry).

    Errors: the handler never raises into the bus. An exception while recording an event is
    logged and counted in ``agentbus_metrics_handler_errors_total``.

    Threading: metric updates are thread-safe (prometheus-client); the pairing state is
    meant for one event loop (subscribe the handler to one bus, or to buses on one loop).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        label_limit: int = 100,
        exemplars: bool = True,
        label_max_length: int = 128,
        max_tracked: int = 100_000,
    ) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise ValueError(
                f"registry must be a prometheus_client CollectorRegistry, "
                f"got {type(registry).__name__}"
            )
        if isinstance(label_limit, bool) or not isinstance(label_limit, int) or label_limit < 1:
            raise ValueError(f"label_limit must be an int >= 1, got {label_limit!r}")
        if isinstance(max_tracked, bool) or not isinstance(max_tracked, int) or max_tracked < 1:
            raise ValueError(f"max_tracked must be an int >= 1, got {max_tracked!r}")
        self.registry = registry
        self.label_limit = label_limit
        self.exemplars = exemplars
        self.label_max_length = label_max_length
        self.max_tracked = max_tracked
        r = registry

        self.label_overflow = Counter(
            LABEL_OVERFLOW_TOTAL,
            "Label values folded into _OTHER by the cardinality guard, by metric and label.",
            ["metric", "label"], registry=r,
        )
        self.handler_errors = Counter(
            HANDLER_ERRORS_TOTAL,
            "Events the Prometheus metrics handler failed to record (logged).",
            registry=r,
        )
        self.events = Counter(
            EVENTS_TOTAL, "Events seen on the bus, by event type.", ["event_type"], registry=r
        )
        self.runs = Counter(
            AGENT_RUNS_TOTAL, "Finished agent runs, by agent, model and status.",
            ["agent", "model", "status"], registry=r,
        )
        self.run_duration = Histogram(
            AGENT_RUN_DURATION_SECONDS,
            "Wall time of agent runs in seconds, by agent, model and status.",
            ["agent", "model", "status"], registry=r, unit="seconds",
            buckets=RUN_DURATION_BUCKETS_SECONDS,
        )
        self.errors = Counter(
            AGENT_ERRORS_TOTAL, "Failed agent runs, by agent and error type.",
            ["agent", "error_type"], registry=r,
        )
        self.in_progress = Gauge(
            AGENT_RUNS_IN_PROGRESS, "Agent runs started and not yet finished, by agent.",
            ["agent"], registry=r,
        )
        self.tokens = Counter(
            AGENT_TOKENS_TOTAL,
            "Tokens used by agent runs, by agent, model and type (input or output).",
            ["agent", "model", "type"], registry=r,
        )
        self.cost = Counter(
            AGENT_COST_USD_TOTAL, "Cost of agent runs in US dollars, by agent and model.",
            ["agent", "model"], registry=r,
        )
        self.tool_calls = Counter(
            TOOL_CALLS_TOTAL, "Tool calls made by agents, by agent, tool and status.",
            ["agent", "tool", "status"], registry=r,
        )
        self.tool_duration = Histogram(
            TOOL_CALL_DURATION_SECONDS, "Duration of tool calls in seconds, by agent and tool.",
            ["agent", "tool"], registry=r, unit="seconds",
            buckets=TOOL_DURATION_BUCKETS_SECONDS,
        )
        self.middleware_duration = Histogram(
            MIDDLEWARE_DURATION_SECONDS,
            "Self time of executor middleware in seconds (inner layers excluded), "
            "by agent and middleware.",
            ["agent", "middleware"], registry=r, unit="seconds",
            buckets=MIDDLEWARE_DURATION_BUCKETS_SECONDS,
        )
        self.middleware_failures = Counter(
            MIDDLEWARE_FAILURES_TOTAL,
            "Executor middleware failures, by agent, middleware and error type.",
            ["agent", "middleware", "error_type"], registry=r,
        )
        self.checkpoints = Counter(
            CHECKPOINTS_TOTAL, "Checkpoints saved or restored, by agent and operation.",
            ["agent", "operation"], registry=r,
        )
        self.sessions_created = Counter(
            SESSIONS_CREATED_TOTAL, "Sessions created, by agent.", ["agent"], registry=r
        )
        self.sessions_expired = Counter(
            SESSIONS_EXPIRED_TOTAL, "Sessions expired after their idle TTL, by agent.",
            ["agent"], registry=r,
        )
        self.sessions_active = Gauge(
            SESSIONS_ACTIVE, "Sessions created and not yet expired, by agent.", ["agent"],
            registry=r,
        )
        self.delegations = Counter(
            SUBAGENT_DELEGATIONS_TOTAL,
            "Sub-agent delegations by parent agent, sub-agent and status "
            "(spawned, completed, failed).",
            ["agent", "subagent", "status"], registry=r,
        )
        self.genai_tokens = Histogram(
            GENAI_TOKEN_USAGE,
            "Tokens used per agent invocation (OTel GenAI gen_ai.client.token.usage).",
            [_L_OP, _L_PROVIDER, _L_MODEL, _L_TOKEN_TYPE], registry=r,
            buckets=tuple(float(b) for b in sc.TOKEN_USAGE_BUCKETS),
        )
        self.genai_duration = Histogram(
            GENAI_OPERATION_DURATION,
            "Duration of GenAI operations in seconds "
            "(OTel GenAI gen_ai.client.operation.duration).",
            [_L_OP, _L_PROVIDER, _L_MODEL, _L_ERROR_TYPE], registry=r, unit="seconds",
            buckets=sc.OPERATION_DURATION_BUCKETS_SECONDS,
        )

        self._guards = _Guards(self._new_guard)
        c = _Children
        self._c_events = c(self.events)
        self._c_runs = c(self.runs)
        self._c_run_duration = c(self.run_duration)
        self._c_errors = c(self.errors)
        self._c_in_progress = c(self.in_progress)
        self._c_tokens = c(self.tokens)
        self._c_cost = c(self.cost)
        self._c_tool_calls = c(self.tool_calls)
        self._c_tool_duration = c(self.tool_duration)
        self._c_mw_duration = c(self.middleware_duration)
        self._c_mw_failures = c(self.middleware_failures)
        self._c_checkpoints = c(self.checkpoints)
        self._c_sessions_created = c(self.sessions_created)
        self._c_sessions_expired = c(self.sessions_expired)
        self._c_sessions_active = c(self.sessions_active)
        self._c_delegations = c(self.delegations)
        self._c_genai_tokens = c(self.genai_tokens)
        self._c_genai_duration = c(self.genai_duration)
        # open runs: key -> agent label; span-less starts per agent label for FIFO pairing
        self._open_runs: dict[str, str] = {}
        self._anonymous_runs: dict[str, deque[str]] = {}
        # active sessions: session_id -> agent label; session-less counts per agent label
        self._open_sessions: dict[str, str] = {}
        self._anonymous_sessions: dict[str, int] = {}
        self._agent_names: dict[str, str] = {}

    # ------------------------------------------------------------------ labels
    def guard(self, metric: str, label: str) -> LabelGuard:
        """The :class:`LabelGuard` of ``label`` on ``metric`` (created on first use)."""
        return self._guards[metric, label]

    def _new_guard(self, metric: str, label: str) -> LabelGuard:
        return LabelGuard(
            self.label_limit,
            on_overflow=self.label_overflow.labels(metric=metric, label=label).inc,
            max_length=self.label_max_length,
        )

    def _agent(self, event: SystemEvent) -> str:
        name = event.attributes.get(sc.GEN_AI_AGENT_NAME)
        agent_id = event.agent_id
        if isinstance(name, str) and name:
            known = self._agent_names
            if known.get(agent_id) != name:
                if len(known) >= self.max_tracked:
                    known.pop(next(iter(known)))
                known[agent_id] = name
            return name
        return self._agent_names.get(agent_id, agent_id)

    @staticmethod
    def _model(event: SystemEvent) -> str:
        model = event.attributes.get(sc.GEN_AI_REQUEST_MODEL) or event.metadata.get("model")
        return str(model) if model else _UNKNOWN

    def _exemplar(self, event: SystemEvent) -> dict[str, str] | None:
        if self.exemplars and event.trace_id:
            return {"trace_id": event.trace_id}
        return None

    # ------------------------------------------------------------------ entry points
    async def __call__(self, event: SystemEvent) -> None:
        """Record ``event`` (the :data:`agentbus.Handler` shape). Never raises ``Exception``."""
        try:
            self._record(event)
        except Exception as exc:
            self._failed(event, exc)

    def handle(self, event: SystemEvent) -> None:
        """Record ``event`` synchronously (does not block; no I/O). Never raises
        ``Exception``: failures are logged and counted."""
        try:
            self._record(event)
        except Exception as exc:
            self._failed(event, exc)

    def _failed(self, event: SystemEvent, exc: Exception) -> None:
        self.handler_errors.inc()
        logger.error(
            "PrometheusMetricsHandler could not record %s event %s: %s: %s",
            getattr(event, "type_name", type(event).__name__),
            getattr(event, "event_id", "?"),
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    def _record(self, event: SystemEvent) -> None:
        etype = event.event_type
        self._c_events[self._guards[EVENTS_TOTAL, "event_type"](event.type_name)].inc()
        if etype is EventType.AGENT_STARTED:
            self._run_started(event)
        elif etype is EventType.AGENT_COMPLETED:
            self._run_finished(event, "success")
        elif etype is EventType.ERROR_OCCURRED:
            self._run_finished(event, "error")
        elif etype is EventType.MIDDLEWARE_EXECUTED or etype is EventType.MIDDLEWARE_FAILED:
            self._middleware(event, failed=etype is EventType.MIDDLEWARE_FAILED)
        elif etype is EventType.CHECKPOINT_SAVED:
            self._checkpoint(event, "saved")
        elif etype is EventType.CHECKPOINT_RESTORED:
            self._checkpoint(event, "restored")
        elif etype is EventType.SESSION_CREATED:
            self._session_created(event)
        elif etype is EventType.SESSION_EXPIRED:
            self._session_expired(event)
        elif etype is SubAgentEventType.SUBAGENT_SPAWNED:
            self._delegation(event, "spawned")
        elif etype is SubAgentEventType.SUBAGENT_COMPLETED:
            self._delegation(event, "completed")
        elif etype is SubAgentEventType.SUBAGENT_FAILED:
            self._delegation(event, "failed")

    # ------------------------------------------------------------------ runs
    def _run_started(self, event: SystemEvent) -> None:
        span_id = event.span_id
        key = span_id or event.event_id
        open_runs = self._open_runs
        if key in open_runs:
            return  # the same start seen twice (replay): already counted
        agent = self._guards[AGENT_RUNS_IN_PROGRESS, "agent"](self._agent(event))
        if len(open_runs) >= self.max_tracked:
            self._forget_oldest_run()
        open_runs[key] = agent
        if span_id is None:
            self._anonymous_runs.setdefault(agent, deque()).append(key)
        self._c_in_progress[agent].inc()

    def _forget_oldest_run(self) -> None:
        key = next(iter(self._open_runs))
        agent = self._open_runs.pop(key)
        queue = self._anonymous_runs.get(agent)
        if queue is not None and key in queue:
            queue.remove(key)
        self._c_in_progress[agent].dec()

    def _close_run(self, event: SystemEvent, agent_name: str) -> None:
        open_runs = self._open_runs
        span_id = event.span_id
        causation_id = event.causation_id
        for key in (span_id, causation_id):
            if key is not None and key in open_runs:
                agent = open_runs.pop(key)
                queue = self._anonymous_runs.get(agent)
                if queue is not None and key in queue:
                    queue.remove(key)
                self._c_in_progress[agent].dec()
                return
        if span_id is None and causation_id is None:
            agent = self._guards[AGENT_RUNS_IN_PROGRESS, "agent"](agent_name)
            queue = self._anonymous_runs.get(agent)
            if queue:
                open_runs.pop(queue.popleft(), None)
                self._c_in_progress[agent].dec()

    def _run_finished(self, event: SystemEvent, status: str) -> None:
        attrs = event.attributes
        gd = self._guards
        agent_name = self._agent(event)
        self._close_run(event, agent_name)
        model_name = self._model(event)
        exemplar = self._exemplar(event)

        agent = gd[AGENT_RUNS_TOTAL, "agent"](agent_name)
        model = gd[AGENT_RUNS_TOTAL, "model"](model_name)
        self._c_runs[agent, model, status].inc()

        seconds = self._duration_seconds(event)
        if seconds is not None:
            self._c_run_duration[
                gd[AGENT_RUN_DURATION_SECONDS, "agent"](agent_name),
                gd[AGENT_RUN_DURATION_SECONDS, "model"](model_name),
                status,
            ].observe(seconds, exemplar)

        error_type: str | None = None
        if status == "error":
            error_type = event.error_type or attrs.get(sc.ERROR_TYPE) or OTHER
            self._c_errors[
                gd[AGENT_ERRORS_TOTAL, "agent"](agent_name),
                gd[AGENT_ERRORS_TOTAL, "error_type"](error_type),
            ].inc()

        tokens = {
            "input": _number(attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
            "output": _number(attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
        }
        for token_type, count in tokens.items():
            if count is None:
                continue
            self._c_tokens[
                gd[AGENT_TOKENS_TOTAL, "agent"](agent_name),
                gd[AGENT_TOKENS_TOTAL, "model"](model_name),
                token_type,
            ].inc(count)

        cost = _number(attrs.get(sc.AB_COST_USD))
        if cost is None:
            cost = _number(event.metadata.get("cost"))
        if cost is not None:
            self._c_cost[
                gd[AGENT_COST_USD_TOTAL, "agent"](agent_name),
                gd[AGENT_COST_USD_TOTAL, "model"](model_name),
            ].inc(cost)

        calls = attrs.get(sc.AB_TOOL_CALLS)
        if isinstance(calls, list | tuple):
            for call in calls:
                if isinstance(call, Mapping):
                    self._tool_call(call, agent_name, exemplar)

        self._genai(event, model_name, tokens, seconds, error_type, exemplar)

    @staticmethod
    def _duration_seconds(event: SystemEvent) -> float | None:
        ms = _number(event.execution_time_ms)
        if ms is not None:
            return ms / 1000.0
        start = event.attributes.get(sc.AB_START_TIME_NS)
        end = event.attributes.get(sc.AB_END_TIME_NS)
        if isinstance(start, int) and isinstance(end, int) and end >= start:
            return (end - start) / 1e9
        return None

    def _tool_call(
        self, call: Mapping[str, Any], agent_name: str, exemplar: dict[str, str] | None
    ) -> None:
        gd = self._guards
        tool_name = call.get("name") or _UNKNOWN
        status = "error" if call.get("error_type") else "success"
        self._c_tool_calls[
            gd[TOOL_CALLS_TOTAL, "agent"](agent_name),
            gd[TOOL_CALLS_TOTAL, "tool"](tool_name),
            status,
        ].inc()
        start = call.get("start_time_unix_nano")
        end = call.get("end_time_unix_nano")
        if isinstance(start, int) and isinstance(end, int) and end >= start:
            self._c_tool_duration[
                gd[TOOL_CALL_DURATION_SECONDS, "agent"](agent_name),
                gd[TOOL_CALL_DURATION_SECONDS, "tool"](tool_name),
            ].observe((end - start) / 1e9, exemplar)

    def _genai(
        self,
        event: SystemEvent,
        model_name: str,
        tokens: dict[str, float | None],
        seconds: float | None,
        error_type: str | None,
        exemplar: dict[str, str] | None,
    ) -> None:
        gd = self._guards
        provider_name = event.attributes.get(sc.GEN_AI_PROVIDER_NAME) or _UNKNOWN
        op = sc.OP_INVOKE_AGENT
        for token_type, count in tokens.items():
            if count is None:
                continue
            self._c_genai_tokens[
                op,
                gd[GENAI_TOKEN_USAGE, _L_PROVIDER](provider_name),
                gd[GENAI_TOKEN_USAGE, _L_MODEL](model_name),
                token_type,
            ].observe(count)
        if seconds is not None:
            # error.type is absent on success: the empty label value means "no label".
            self._c_genai_duration[
                op,
                gd[GENAI_OPERATION_DURATION, _L_PROVIDER](provider_name),
                gd[GENAI_OPERATION_DURATION, _L_MODEL](model_name),
                gd[GENAI_OPERATION_DURATION, _L_ERROR_TYPE](error_type or ""),
            ].observe(seconds, exemplar)

    # ------------------------------------------------------------------ other events
    def _middleware(self, event: SystemEvent, *, failed: bool) -> None:
        gd = self._guards
        agent_name = self._agent(event)
        name = event.attributes.get(sc.AB_MIDDLEWARE) or event.metadata.get("middleware")
        mw_name = str(name) if name else _UNKNOWN
        ms = _number(event.execution_time_ms)
        if ms is not None:
            self._c_mw_duration[
                gd[MIDDLEWARE_DURATION_SECONDS, "agent"](agent_name),
                gd[MIDDLEWARE_DURATION_SECONDS, "middleware"](mw_name),
            ].observe(ms / 1000.0, self._exemplar(event))
        if failed:
            self._c_mw_failures[
                gd[MIDDLEWARE_FAILURES_TOTAL, "agent"](agent_name),
                gd[MIDDLEWARE_FAILURES_TOTAL, "middleware"](mw_name),
                gd[MIDDLEWARE_FAILURES_TOTAL, "error_type"](
                    event.error_type or event.attributes.get(sc.ERROR_TYPE) or OTHER
                ),
            ].inc()

    def _checkpoint(self, event: SystemEvent, operation: str) -> None:
        self._c_checkpoints[
            self._guards[CHECKPOINTS_TOTAL, "agent"](self._agent(event)), operation
        ].inc()

    def _session_created(self, event: SystemEvent) -> None:
        agent_name = self._agent(event)
        self._c_sessions_created[self._guards[SESSIONS_CREATED_TOTAL, "agent"](agent_name)].inc()
        sid = event.session_id
        if sid is not None and sid in self._open_sessions:
            return  # the same session announced twice: already active
        agent = self._guards[SESSIONS_ACTIVE, "agent"](agent_name)
        if sid is None:
            self._anonymous_sessions[agent] = self._anonymous_sessions.get(agent, 0) + 1
        else:
            if len(self._open_sessions) >= self.max_tracked:
                old = self._open_sessions.pop(next(iter(self._open_sessions)))
                self._c_sessions_active[old].dec()
            self._open_sessions[sid] = agent
        self._c_sessions_active[agent].inc()

    def _session_expired(self, event: SystemEvent) -> None:
        agent_name = self._agent(event)
        self._c_sessions_expired[self._guards[SESSIONS_EXPIRED_TOTAL, "agent"](agent_name)].inc()
        sid = event.session_id
        if sid is not None:
            agent = self._open_sessions.pop(sid, None)
            if agent is not None:
                self._c_sessions_active[agent].dec()
            return
        agent = self._guards[SESSIONS_ACTIVE, "agent"](agent_name)
        count = self._anonymous_sessions.get(agent, 0)
        if count > 0:
            self._anonymous_sessions[agent] = count - 1
            self._c_sessions_active[agent].dec()

    def _delegation(self, event: SystemEvent, status: str) -> None:
        gd = self._guards
        sub = event.attributes.get(sc.AB_SUBAGENT) or _UNKNOWN
        self._c_delegations[
            gd[SUBAGENT_DELEGATIONS_TOTAL, "agent"](self._agent(event)),
            gd[SUBAGENT_DELEGATIONS_TOTAL, "subagent"](sub),
            status,
        ].inc()
