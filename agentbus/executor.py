"""The :class:`AgentExecutor` (seed 003 "与 Executor 集成").

``execute(context)`` publishes ``AGENT_STARTED``, runs the executor middleware pipeline
around the agent call (each middleware publishing ``MIDDLEWARE_EXECUTED`` or
``MIDDLEWARE_FAILED``), then publishes ``AGENT_COMPLETED`` (with ``execution_time_ms``) or
``ERROR_OCCURRED`` (with ``error_type`` / ``error_message``) and returns an
:class:`ExecutionResult` — an error result on failure, as in the seed's error flow.

What runs the agent is pluggable (:data:`AgentRunner`): any ``async (RunContext) -> output``
callable, or a framework adapter such as :class:`agentbus.adapters.pydantic_ai.PydanticAIRunner`.

Trace context: every run gets a W3C trace id / span id, put on all its events. A run started
inside another run (a sub-agent, even in another ``asyncio`` task) inherits the trace id and
uses the parent run's span as parent; a run started inside a foreign OpenTelemetry span
(a web request) uses that span as parent. While the agent runs, the run's span context is
the current OpenTelemetry context, so a framework's own spans nest under it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from pydantic import BaseModel, ConfigDict, Field

from . import semconv as sc
from .bus import EventBus
from .errors import AgentBusError
from .events import EventType, SystemEvent, new_event_id, new_span_id, new_trace_id

if TYPE_CHECKING:
    from .sessions import Checkpoint, CheckpointManager, SessionManager
    from .subagents import OnDone, SubAgentHandle

__all__ = [
    "AgentConfig",
    "AgentContext",
    "AgentExecutor",
    "AgentOutput",
    "AgentRunner",
    "ExecutionResult",
    "Middleware",
    "RunContext",
    "TokenUsage",
    "ToolCall",
    "current_run",
    "register_model",
]

logger = logging.getLogger("agentbus.executor")


class AgentConfig(BaseModel):
    """Static description of an agent (seed 003 ``AgentConfig``).

    Fields:
        name: agent name; becomes ``gen_ai.agent.name`` and the ``agent`` metric label.
        description: free text.
        model: requested model name (``gen_ai.request.model``).
        provider: ``gen_ai.provider.name`` (e.g. ``"openai"``); optional.
        timeout_s: per-run timeout in seconds; ``None`` for none. A timed-out run ends with
            ``ERROR_OCCURRED`` and ``error_type="TimeoutError"``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    model: str = "unknown"
    provider: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)


class AgentContext(BaseModel):
    """Input of one run: what ``execute(context)`` takes.

    ``execute`` also accepts a plain ``str`` (the input) or a mapping with these keys.

    Fields:
        input: the user's message or task (content: never exported unless capture is on).
        user_id, session_id: identity; on events and spans, never metric labels.
        metadata: copied to the ``AGENT_STARTED`` event's metadata.
        deps: anything the runner needs (passed through, not copied into events).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    input: Any = None
    user_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    deps: Any = None

    @classmethod
    def coerce(cls, value: Any) -> AgentContext:
        """Build a context from an ``AgentContext``, a ``str``, a mapping or ``None``.

        Raises:
            pydantic.ValidationError: a mapping with unknown or invalid keys.
        """
        if isinstance(value, AgentContext):
            return value
        if value is None or isinstance(value, str):
            return cls(input=value)
        if isinstance(value, Mapping):
            return cls.model_validate(dict(value))
        return cls(input=value)


@dataclass(slots=True)
class TokenUsage:
    """Token counts of one run (``gen_ai.usage.*``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def add(self, other: TokenUsage) -> None:
        """Add ``other`` into this one."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests


@dataclass(slots=True)
class ToolCall:
    """One tool call made during a run; times in Unix nanoseconds."""

    name: str
    call_id: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    error_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form stored under ``semconv.AB_TOOL_CALLS``."""
        return {
            "name": self.name,
            "call_id": self.call_id,
            "start_time_unix_nano": self.start_time_unix_nano,
            "end_time_unix_nano": self.end_time_unix_nano,
            "error_type": self.error_type,
        }


@dataclass(slots=True)
class AgentOutput:
    """What a runner may return instead of a bare value, to report usage and tools."""

    output: Any
    usage: TokenUsage = field(default_factory=TokenUsage)
    tool_calls: list[ToolCall] = field(default_factory=list)
    cost_usd: float | None = None
    response_model: str | None = None
    framework_instrumented: bool = False
    provider_name: str | None = None
    """``gen_ai.provider.name`` of the model that ran (e.g. ``"openai"``), put on the
    completion event when ``AgentConfig.provider`` is not set. A runner that raises can
    report it as ``run.state["gen_ai.provider.name"]`` instead."""


@dataclass(slots=True)
class ExecutionResult:
    """Result of ``execute`` (seed 003: "Return result" / "Return error result").

    ``success`` is False on error; then ``error_type`` / ``error_message`` are set and
    ``output`` is None. ``execution_time_ms`` is wall time of the whole run, milliseconds.
    """

    success: bool
    output: Any
    agent_id: str
    run_id: str
    trace_id: str
    span_id: str
    execution_time_ms: float
    usage: TokenUsage
    tool_calls: list[ToolCall]
    cost_usd: float | None = None
    error_type: str | None = None
    error_message: str | None = None


class RunContext:
    """Per-run state handed to middleware and the runner.

    Attributes:
        executor: the executor running it. ``agent_id``, ``config``: of that executor.
        context: the :class:`AgentContext`.
        run_id: the ``event_id`` of this run's ``AGENT_STARTED`` event (causation root).
        trace_id, span_id, parent_span_id: W3C ids of this run's ``invoke_agent`` span.
        correlation_id: shared with runs this one starts (sub-agents).
        usage, tool_calls, cost_usd: what the runner reported so far.
        state: free dict for middleware to share data.
    """

    __slots__ = (
        "context",
        "correlation_id",
        "cost_usd",
        "executor",
        "parent_span_id",
        "run_id",
        "span_id",
        "state",
        "tool_calls",
        "trace_id",
        "usage",
    )

    def __init__(
        self,
        executor: AgentExecutor,
        context: AgentContext,
        run_id: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        correlation_id: str,
    ) -> None:
        self.executor = executor
        self.context = context
        self.run_id = run_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.correlation_id = correlation_id
        self.usage = TokenUsage()
        self.tool_calls: list[ToolCall] = []
        self.cost_usd: float | None = None
        self.state: dict[str, Any] = {}

    @property
    def agent_id(self) -> str:
        """The executor's agent id."""
        return self.executor.agent_id

    @property
    def config(self) -> AgentConfig:
        """The executor's config."""
        return self.executor.config

    async def save_checkpoint(self, state: Any) -> Checkpoint:
        """Save a deep copy of ``state`` with the executor's :class:`CheckpointManager`,
        publishing ``CHECKPOINT_SAVED`` with this run's trace ids, agent, user and session.

        Raises:
            RuntimeError: the executor has no ``checkpoints`` manager.
            TypeError: ``state`` cannot be deep-copied.
        """
        manager = self._checkpoints()
        token = _current_run.set(self)
        try:
            return await manager.save(self.agent_id, state, session_id=self.context.session_id,
                                      user_id=self.context.user_id)
        finally:
            _current_run.reset(token)

    async def restore_checkpoint(self, checkpoint_id: str) -> Any:
        """Return a deep copy of the state saved as ``checkpoint_id``, publishing
        ``CHECKPOINT_RESTORED`` with this run's trace ids.

        Raises:
            RuntimeError: the executor has no ``checkpoints`` manager.
            KeyError: no such checkpoint (naming the id).
        """
        manager = self._checkpoints()
        token = _current_run.set(self)
        try:
            return await manager.restore(checkpoint_id, user_id=self.context.user_id)
        finally:
            _current_run.reset(token)

    def _checkpoints(self) -> CheckpointManager:
        manager = self.executor.checkpoints
        if manager is None:
            raise RuntimeError(
                f"agent {self.agent_id!r} has no checkpoint store: pass "
                f"AgentExecutor(..., checkpoints=CheckpointManager(bus))"
            )
        return manager

    async def emit(
        self,
        event_type: Enum,
        *,
        metadata: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        **fields: Any,
    ) -> SystemEvent:
        """Publish an event belonging to this run (trace ids, correlation and causation
        filled in). Returns the event. Publishing errors are logged, never raised.

        Args:
            event_type: an :class:`EventType` member (not ``ANY``) or a custom ``Enum``
                member; a string equal to an ``EventType`` value is converted.
            metadata: content (see :class:`SystemEvent`).
            attributes: structured telemetry, keys from :mod:`agentbus.semconv`.
            **fields: other :class:`SystemEvent` fields (``execution_time_ms``,
                ``error_type``, ...), overriding the run's defaults.

        Raises:
            pydantic.ValidationError: a bad event type, an unknown field name or a bad
                field value, naming the field (the event is validated like
                ``SystemEvent(...)``; nothing is published).
        """
        event = self.executor._event(
            self,
            event_type,
            True,
            metadata=metadata,
            attributes=attributes,
            **fields,
        )
        await self.executor._publish(event)
        return event


_current_run: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "agentbus_current_run", default=None
)


def current_run() -> RunContext | None:
    """The run executing in this task, or ``None`` (propagates into child tasks)."""
    return _current_run.get()


AgentRunner = Callable[[RunContext], Awaitable[Any]]
"""Runs the agent: ``async (run) -> output``. May return an :class:`AgentOutput` to report
token usage, tool calls and cost; any other value is the output."""

CallNext = Callable[[RunContext], Awaitable[Any]]


@runtime_checkable
class Middleware(Protocol):
    """Executor middleware: ``async (run, call_next) -> output`` (starlette's shape).

    Call ``await call_next(run)`` to continue the pipeline; return its output (possibly
    changed). A middleware may set ``name`` (the ``middleware`` label); otherwise the
    qualified name of its class or function is used. Raising fails the run; the executor
    then publishes ``MIDDLEWARE_FAILED`` for it.
    """

    async def __call__(self, run: RunContext, call_next: CallNext) -> Any: ...


_MODELS: dict[str, Callable[[AgentConfig], AgentRunner]] = {}


def register_model(name: str, factory: Callable[[AgentConfig], AgentRunner]) -> None:
    """Register a runner factory for ``AgentConfig.model == name``.

    An executor built without an explicit ``agent`` looks its model up here, so code that
    only names a model (seed 003's ``AgentExecutor(agent_id=..., config=...)``) runs.
    """
    _MODELS[name] = factory


def _mw_name(mw: Any) -> str:
    name = getattr(mw, "name", None)
    if isinstance(name, str) and name:
        return name
    qual = getattr(mw, "__qualname__", None)
    if isinstance(qual, str):
        return qual.replace("<locals>.", "")
    return type(mw).__qualname__


class _NoRunner:
    def __init__(self, model: str) -> None:
        self.model = model

    async def __call__(self, run: RunContext) -> Any:
        factory = _MODELS.get(self.model)
        if factory is None:
            raise LookupError(
                f"no agent runner for model {self.model!r}: pass AgentExecutor(agent=...) "
                f"or agentbus.register_model({self.model!r}, factory)"
            )
        return await factory(run.config)(run)


class AgentExecutor:
    """Runs one agent and publishes its lifecycle on an :class:`EventBus` (seed 003).

    Args:
        agent_id: id of the agent (``SystemEvent.agent_id``, ``gen_ai.agent.id``).
        config: :class:`AgentConfig`.
        agent: the :data:`AgentRunner`; if ``None``, the runner registered for
            ``config.model`` with :func:`register_model` is used at each run.
        middleware: executor middleware, outermost first.
        event_bus: the bus; may also be set later with :meth:`set_event_bus`.
        sessions: a :class:`SessionManager`; when set, each run whose context has a
            ``session_id`` touches that session before ``AGENT_STARTED`` (so the first run of
            a session publishes ``SESSION_CREATED``, carrying the run's trace ids).
        checkpoints: a :class:`CheckpointManager` used by ``RunContext.save_checkpoint`` /
            ``restore_checkpoint``.

    Without a bus, ``execute`` still runs the agent and returns results; nothing is
    published. Events are built by the executor itself and not validated again.

    Event-loop rule: ``execute`` must run on the bus's event loop.
    """

    def __init__(
        self,
        agent_id: str,
        config: AgentConfig,
        agent: AgentRunner | None = None,
        *,
        middleware: Sequence[Middleware | Callable[..., Awaitable[Any]]] = (),
        event_bus: EventBus | None = None,
        sessions: SessionManager | None = None,
        checkpoints: CheckpointManager | None = None,
    ) -> None:
        if not agent_id:
            raise ValueError("agent_id must be a non-empty string")
        if not isinstance(config, AgentConfig):
            raise TypeError(f"config must be an AgentConfig, got {type(config).__name__}")
        from .sessions import CheckpointManager, SessionManager

        if sessions is not None and not isinstance(sessions, SessionManager):
            raise TypeError(f"sessions must be a SessionManager, got {type(sessions).__name__}")
        if checkpoints is not None and not isinstance(checkpoints, CheckpointManager):
            raise TypeError(
                f"checkpoints must be a CheckpointManager, got {type(checkpoints).__name__}"
            )
        self.sessions = sessions
        self.checkpoints = checkpoints
        self.agent_id = agent_id
        self.config = config
        self.agent: AgentRunner = agent if agent is not None else _NoRunner(config.model)
        self._middleware: list[Any] = list(middleware)
        self._pipeline: CallNext = self._build_pipeline()
        self.event_bus: EventBus | None = event_bus
        self.publish_failures = 0
        self._base_attrs: dict[str, Any] = {
            sc.GEN_AI_AGENT_NAME: config.name,
            sc.GEN_AI_REQUEST_MODEL: config.model,
        }
        if config.provider:
            self._base_attrs[sc.GEN_AI_PROVIDER_NAME] = config.provider

    # ------------------------------------------------------------------ set-up
    def set_event_bus(self, bus: EventBus | None) -> None:
        """Attach the bus the executor publishes to (seed 003); ``None`` detaches."""
        if bus is not None and not isinstance(bus, EventBus):
            raise TypeError(f"expected an EventBus, got {type(bus).__name__}")
        self.event_bus = bus

    def add_middleware(self, middleware: Middleware | Callable[..., Awaitable[Any]]) -> None:
        """Append ``middleware`` as the innermost layer (closest to the agent)."""
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, got {type(middleware).__name__}")
        self._middleware.append(middleware)
        self._pipeline = self._build_pipeline()

    @property
    def middleware(self) -> tuple[Any, ...]:
        """The middleware, outermost first."""
        return tuple(self._middleware)

    # ------------------------------------------------------------------ sub-agents
    async def spawn(
        self,
        sub_executor: AgentExecutor,
        context: Any = None,
        *,
        name: str | None = None,
        on_done: OnDone | None = None,
    ) -> SubAgentHandle:
        """Start a sub-agent without waiting for it (seeds 000 / 002, the car-hailing flow).

        Runs ``sub_executor.execute(context)`` in a new task created in the current run's
        context (the sub-run is a child of that run: same trace, causation and correlation),
        publishes ``SUBAGENT_SPAWNED`` now and ``SUBAGENT_COMPLETED`` / ``SUBAGENT_FAILED``
        when it ends, on this executor's bus. See :mod:`agentbus.subagents`.

        Returns:
            :class:`agentbus.subagents.SubAgentHandle` (``status``, ``done()``,
            ``await wait()``, ``result``, ``cancel()``).

        Raises:
            TypeError: ``sub_executor`` is not an ``AgentExecutor``.
            pydantic.ValidationError: ``context`` is a mapping with bad keys.
        """
        from .subagents import spawn

        return await spawn(self, sub_executor, context, name=name, on_done=on_done)

    async def wait_subagents(
        self, timeout: float | None = None, *, cancel: bool = False
    ) -> list[ExecutionResult]:
        """Wait for every sub-agent this executor spawned (call it before ``bus.close()``).

        Raises:
            TimeoutError: some still run after ``timeout`` seconds (unless ``cancel=True``,
                which cancels them instead). See :func:`agentbus.subagents.wait_subagents`.
        """
        from .subagents import wait_subagents

        return await wait_subagents(self, timeout, cancel=cancel)

    def _build_pipeline(self) -> CallNext:
        async def call_agent(run: RunContext) -> Any:
            return await self.agent(run)

        chain: CallNext = call_agent
        for mw in reversed(self._middleware):
            chain = self._instrument(mw, chain)
        return chain

    def _instrument(self, mw: Any, inner: CallNext) -> CallNext:
        name = _mw_name(mw)
        attrs = {sc.AB_MIDDLEWARE: name}

        async def layer(run: RunContext) -> Any:
            inner_ns = 0
            inner_failed: BaseException | None = None

            async def call_next(r: RunContext) -> Any:
                nonlocal inner_ns, inner_failed
                t = time.perf_counter_ns()
                try:
                    return await inner(r)
                except BaseException as exc:
                    inner_failed = exc
                    raise
                finally:
                    inner_ns += time.perf_counter_ns() - t

            start_ns = time.time_ns()
            t0 = time.perf_counter_ns()
            try:
                result = await mw(run, call_next)
            except BaseException as exc:
                if exc is not inner_failed and not isinstance(exc, asyncio.CancelledError):
                    await self._middleware_event(
                        run, EventType.MIDDLEWARE_FAILED, attrs, start_ns, t0, inner_ns, exc
                    )
                else:
                    await self._middleware_event(
                        run, EventType.MIDDLEWARE_EXECUTED, attrs, start_ns, t0, inner_ns, None
                    )
                raise
            await self._middleware_event(
                run, EventType.MIDDLEWARE_EXECUTED, attrs, start_ns, t0, inner_ns, None
            )
            return result

        return layer

    async def _middleware_event(
        self,
        run: RunContext,
        etype: EventType,
        attrs: dict[str, Any],
        start_ns: int,
        t0: int,
        inner_ns: int,
        exc: BaseException | None,
    ) -> None:
        if self.event_bus is None:
            return
        total_ns = time.perf_counter_ns() - t0
        a = dict(attrs)
        a[sc.AB_START_TIME_NS] = start_ns
        a[sc.AB_END_TIME_NS] = start_ns + total_ns
        event = self._event(
            run,
            etype,
            attributes=a,
            execution_time_ms=(total_ns - inner_ns) / 1e6,
            span_id=new_span_id(),
            parent_span_id=run.span_id,
            error_type=type(exc).__name__ if exc is not None else None,
            error_message=str(exc) if exc is not None else None,
        )
        await self._publish(event)

    # ------------------------------------------------------------------ events
    def _event(
        self,
        run: RunContext,
        event_type: Enum,
        validate: bool = False,
        /,
        *,
        metadata: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        **fields: Any,
    ) -> SystemEvent:
        """An event of ``run``. The executor's own events are built from trusted values
        without validation (hot path); ``validate=True`` (user input: ``RunContext.emit``)
        or a name that is not a field validates like ``SystemEvent(...)``.

        Raises:
            pydantic.ValidationError: when validating, naming the bad field.
        """
        ctx = run.context
        values: dict[str, Any] = {
            "event_type": event_type,
            "agent_id": self.agent_id,
            "user_id": ctx.user_id,
            "session_id": ctx.session_id,
            "timestamp": _now(),
            "metadata": metadata if metadata is not None else {},
            "execution_time_ms": None,
            "error_message": None,
            "error_type": None,
            "event_id": new_event_id(),
            "causation_id": run.run_id,
            "correlation_id": run.correlation_id,
            "trace_id": run.trace_id,
            "span_id": run.span_id,
            "parent_span_id": run.parent_span_id,
            "attributes": attributes if attributes is not None else {},
        }
        if fields:
            values.update(fields)
            if len(values) != len(_EVENT_FIELDS):  # a name that is not a field: rejected
                validate = True
        if validate:
            return SystemEvent.model_validate(values)
        # Built from trusted values: skip validation on the hot path (issue 6).
        return _trusted_event(values)

    async def _publish(self, event: SystemEvent) -> None:
        bus = self.event_bus
        if bus is None:
            return
        try:
            await bus.publish(event)
        except AgentBusError as exc:
            self.publish_failures += 1
            logger.warning("agent %r could not publish %s: %s", self.agent_id,
                           event.type_name, exc)

    # ------------------------------------------------------------------ running
    def _new_run(self, context: AgentContext) -> RunContext:
        parent = _current_run.get()
        if parent is not None:
            trace_id = parent.trace_id
            parent_span: str | None = parent.span_id
            correlation = parent.correlation_id
        else:
            sc_ = otel_trace.get_current_span().get_span_context()
            if sc_.is_valid:
                trace_id = f"{sc_.trace_id:032x}"
                parent_span = f"{sc_.span_id:016x}"
            else:
                trace_id = new_trace_id()
                parent_span = None
            correlation = None
        run_id = new_event_id()
        return RunContext(
            self,
            context,
            run_id=run_id,
            trace_id=trace_id,
            span_id=new_span_id(),
            parent_span_id=parent_span,
            correlation_id=correlation or run_id,
        )

    async def execute(self, context: Any = None) -> ExecutionResult:
        """Run the agent once (seed 003 ``executor.execute(context)``).

        Args:
            context: an :class:`AgentContext`, a ``str`` input, a mapping of its fields, or
                ``None``.

        Returns:
            :class:`ExecutionResult`; on failure ``success=False`` with ``error_type`` and
            ``error_message`` (the exception is not raised).

        Raises:
            pydantic.ValidationError: ``context`` is a mapping with bad keys.
            asyncio.CancelledError: the run was cancelled (``ERROR_OCCURRED`` with
                ``error_type="CancelledError"`` is published first).
        """
        ctx = AgentContext.coerce(context)
        run = self._new_run(ctx)
        parent = _current_run.get()
        if self.sessions is not None and ctx.session_id:
            session_token = _current_run.set(run)  # SESSION_CREATED belongs to this run
            try:
                await self.sessions.touch(ctx.session_id, self.agent_id, ctx.user_id)
            finally:
                _current_run.reset(session_token)
        start_attrs = dict(self._base_attrs)
        if parent is not None:
            start_attrs[sc.AB_PARENT_AGENT_ID] = parent.agent_id
        start_ns = time.time_ns()
        start_attrs[sc.AB_START_TIME_NS] = start_ns
        started = self._event(
            run,
            EventType.AGENT_STARTED,
            metadata={"model": self.config.model, **ctx.metadata},
            attributes=start_attrs,
            event_id=run.run_id,
            causation_id=parent.run_id if parent is not None else None,
        )
        await self._publish(started)

        token = _current_run.set(run)
        otel_token = otel_context.attach(
            otel_trace.set_span_in_context(
                otel_trace.NonRecordingSpan(
                    otel_trace.SpanContext(
                        trace_id=int(run.trace_id, 16),
                        span_id=int(run.span_id, 16),
                        is_remote=False,
                        trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED),
                    )
                )
            )
        )
        t0 = time.perf_counter()
        output: Any = None
        error: BaseException | None = None
        framework_instrumented = False
        response_model: str | None = None
        provider_name: Any = None
        try:
            if self.config.timeout_s is not None:
                raw = await asyncio.wait_for(self._pipeline(run), self.config.timeout_s)
            else:
                raw = await self._pipeline(run)
            if isinstance(raw, AgentOutput):
                output = raw.output
                run.usage.add(raw.usage)
                run.tool_calls.extend(raw.tool_calls)
                if raw.cost_usd is not None:
                    run.cost_usd = (run.cost_usd or 0.0) + raw.cost_usd
                framework_instrumented = raw.framework_instrumented
                response_model = raw.response_model
                provider_name = raw.provider_name
            else:
                output = raw
        except Exception as exc:
            error = exc
        except asyncio.CancelledError as exc:
            error = exc
        finally:
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            otel_context.detach(otel_token)
            _current_run.reset(token)

        attrs = dict(self._base_attrs)
        attrs[sc.AB_START_TIME_NS] = start_ns
        attrs[sc.AB_END_TIME_NS] = start_ns + int(elapsed_ms * 1e6)
        usage = run.usage
        if usage.requests or usage.input_tokens or usage.output_tokens:
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
            attrs[sc.AB_REQUESTS] = usage.requests
        if run.cost_usd is not None:
            attrs[sc.AB_COST_USD] = run.cost_usd
        if run.tool_calls:
            attrs[sc.AB_TOOL_CALLS] = [t.as_dict() for t in run.tool_calls]
        if response_model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
        if sc.GEN_AI_PROVIDER_NAME not in attrs:  # config.provider wins
            provider_name = provider_name or run.state.get(sc.GEN_AI_PROVIDER_NAME)
            if provider_name and isinstance(provider_name, str):
                attrs[sc.GEN_AI_PROVIDER_NAME] = provider_name
        # A runner that raised can still report it through run.state (pydantic-ai adapter).
        if framework_instrumented or run.state.get(sc.AB_FRAMEWORK_INSTRUMENTED) is True:
            attrs[sc.AB_FRAMEWORK_INSTRUMENTED] = True
        if parent is not None:
            attrs[sc.AB_PARENT_AGENT_ID] = parent.agent_id

        error_type: str | None = None
        error_message: str | None = None
        fields: dict[str, Any] = {}
        if error is not None:
            error_type = type(error).__name__
            error_message = str(error) or error_type
            attrs[sc.ERROR_TYPE] = error_type
            fields = {"error_type": error_type, "error_message": error_message}
        publish = self._publish(
            self._event(
                run,
                EventType.AGENT_COMPLETED if error is None else EventType.ERROR_OCCURRED,
                metadata={"model": self.config.model},
                attributes=attrs,
                execution_time_ms=elapsed_ms,
                **fields,
            )
        )
        if isinstance(error, asyncio.CancelledError):
            # Report the cancellation without letting it be swallowed.
            await asyncio.shield(asyncio.ensure_future(publish))
            raise error
        await publish
        return ExecutionResult(
            success=error is None,
            output=output if error is None else None,
            agent_id=self.agent_id,
            run_id=run.run_id,
            trace_id=run.trace_id,
            span_id=run.span_id,
            execution_time_ms=elapsed_ms,
            usage=usage,
            tool_calls=run.tool_calls,
            cost_usd=run.cost_usd,
            error_type=error_type,
            error_message=error_message,
        )

def _now() -> datetime:
    return datetime.now(UTC)


_EVENT_FIELDS: frozenset[str] = frozenset(SystemEvent.model_fields)
_new_event = SystemEvent.__new__
_set = object.__setattr__


def _trusted_event(values: dict[str, Any]) -> SystemEvent:
    """``SystemEvent.model_construct(**values)`` for a dict holding every field, without its
    per-field loop (a fifth of the cost; issue 6). ``values`` becomes the event's
    ``__dict__``: the caller must not keep using it. Same result as ``model_construct``:
    no validation, all fields marked as set."""
    event = _new_event(SystemEvent)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(values))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event
