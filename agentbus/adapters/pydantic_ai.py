"""Run a pydantic-ai agent inside an :class:`~agentbus.AgentExecutor` (issue 2, the adapter).

:class:`PydanticAIRunner` is an :data:`~agentbus.AgentRunner`: the executor calls it with the
run's :class:`~agentbus.RunContext`; it runs ``agent.run(run.context.input,
deps=run.context.deps)`` and returns an :class:`~agentbus.AgentOutput` with

* the real token usage of the run (``input_tokens``, ``output_tokens``, ``requests``:
  exactly pydantic-ai's own ``result.usage``);
* the model that answered (``gen_ai.response.model``: the last response's ``model_name``);
* every tool call the agent made, with exact start/end times (Unix ns) and the error type
  of a call that raised. Times come from pydantic-ai's public tool hook
  (``AbstractCapability.wrap_tool_execute``) in :class:`AgentbusCapability`: registered on
  the agent when it is built (``Agent(..., capabilities=[AgentbusCapability()])``, the cheap
  way) or else passed *per run* (``agent.run(..., capabilities=[...])``); the agent object
  is never modified, and parallel tool calls (pydantic-ai runs the calls of one model
  response concurrently, each in its own task) are timed one by one, so their intervals
  overlap as they really did;
* the provider of the model that ran (``gen_ai.provider.name``: the model's ``system``,
  exactly what pydantic-ai puts on its own ``chat`` spans, e.g. ``"openai"``, ``"test"``
  for ``TestModel``, ``"function"`` for ``FunctionModel``); the executor puts it on the
  completion event unless ``AgentConfig.provider`` is set;
* ``framework_instrumented=True`` when pydantic-ai's own OpenTelemetry instrumentation is
  on for the run (``Agent(capabilities=[Instrumentation(...)])``, ``agent.instrument = ...``
  or ``Agent.instrument_all()``), read from the run's effective tracer. pydantic-ai then
  owns the GenAI spans: its ``invoke_agent`` / ``chat`` / ``execute_tool`` spans nest under
  the executor's run span (the executor makes that span the current OpenTelemetry context
  while the agent runs), and ``exporters.otel.OTelSpanHandler`` emits the run span as a
  plain ``agentbus.run {agent}`` wrapper with no ``execute_tool`` spans, so no GenAI span is
  duplicated. Tool calls still go on the completion event (for metrics).

The run's ``session_id`` is passed to pydantic-ai as its ``conversation_id`` (unless
``run_kwargs`` sets ``conversation_id`` or ``conversation``), so pydantic-ai's
``gen_ai.conversation.id`` equals the one on agentbus spans and events.

When the agent run raises, the tool calls made so far, the tokens spent so far, the
instrumentation flag and the provider name are put on the :class:`~agentbus.RunContext`
itself (``run.tool_calls``, ``run.usage``,
``run.state[agentbus.semconv.AB_FRAMEWORK_INSTRUMENTED]``,
``run.state[agentbus.semconv.GEN_AI_PROVIDER_NAME]``) before the error propagates, so the
executor's ``ERROR_OCCURRED`` event reports them too.

Content (the prompt, the output, tool arguments and results) is left out by default, as
the OpenTelemetry GenAI conventions ask. With ``capture_content=True`` the runner

* keeps the tool contents in ``run.state[TOOL_CONTENT_STATE_KEY]`` (a list of dicts
  ``{"name", "call_id", "arguments", "result", "error_type"}``, in start order), for executor
  middleware, and
* publishes one ``EventType.CUSTOM`` event of the run (before its completion event) whose
  ``metadata`` holds ``gen_ai.input.messages`` / ``gen_ai.output.messages`` and
  ``gen_ai.tool.call.arguments`` / ``gen_ai.tool.call.result`` as ``{call_id: value}``
  mappings, the shape ``exporters.otel.OTelSpanHandler(capture_content=True)`` puts on the
  run and tool spans (after its redactor). ``SystemEvent.metadata`` is content: handlers
  export it only when their own content capture is on.

This module imports pydantic-ai (the ``pydantic-ai`` extra, version 2.x); ``import agentbus``
does not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import NoOpTracer

from .. import semconv as sc
from ..events import EventType
from ..executor import AgentOutput, RunContext, TokenUsage, ToolCall

try:
    from pydantic_ai import RunContext as PydanticRunContext
    from pydantic_ai.agent import AbstractAgent
    from pydantic_ai.capabilities import AbstractCapability, WrapperCapability
    from pydantic_ai.capabilities.abstract import ValidatedToolArgs, WrapToolExecuteHandler
    from pydantic_ai.exceptions import (
        ApprovalRequired,
        CallDeferred,
        SkipToolExecution,
        ToolFailedError,
        ToolRetryError,
    )
    from pydantic_ai.messages import ToolCallPart
    from pydantic_ai.tools import ToolDefinition
    from pydantic_ai.usage import RunUsage
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "agentbus.adapters.pydantic_ai needs pydantic-ai 2.x: "
        "pip install 'agentbus[pydantic-ai]'"
    ) from exc

__all__ = ["TOOL_CONTENT_STATE_KEY", "AgentbusCapability", "PydanticAIRunner"]

TOOL_CONTENT_STATE_KEY = "agentbus.tool_content"
"""Key of ``RunContext.state`` under which ``capture_content=True`` keeps tool arguments and
results: a list of dicts ``{"name", "call_id", "arguments", "result", "error_type"}``."""

# Control flow of pydantic-ai's tool lifecycle, not failures of the tool.
_NOT_ERRORS = (SkipToolExecution, CallDeferred, ApprovalRequired)

# Keyword arguments of ``agent.run`` the runner sets itself.
_RESERVED = frozenset({"user_prompt", "deps", "usage", "capabilities"})


@dataclass(eq=False)
class _RunRecord:
    """What one ``PydanticAIRunner`` call learns from pydantic-ai's hooks.

    Created by the runner for each call and found by :class:`AgentbusCapability` through a
    context variable; the hooks run on the event loop (tool functions may run in worker
    threads, the hook awaits them), so appending to the lists needs no lock.
    """

    capture_content: bool
    claimed: bool = False
    pydantic_run_id: str | None = None
    calls: list[tuple[int, ToolCall]] = field(default_factory=list)
    contents: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    framework_instrumented: bool = False
    provider_name: str | None = None

    def tool_calls(self) -> list[ToolCall]:
        """The recorded calls in start order."""
        return [c for _, c in sorted(self.calls, key=lambda p: p[0])]

    def tool_contents(self) -> list[dict[str, Any]]:
        """The captured arguments/results in start order (empty without capture)."""
        return [c for _, c in sorted(self.contents, key=lambda p: p[0])]


_ACTIVE: ContextVar[_RunRecord | None] = ContextVar("agentbus_pydantic_ai_run", default=None)


def _record_for(ctx: PydanticRunContext[Any]) -> _RunRecord | None:
    """The record of the runner call whose pydantic-ai run ``ctx`` belongs to, if any."""
    record = _ACTIVE.get()
    if record is None or not record.claimed or record.pydantic_run_id != ctx.run_id:
        return None
    return record


def _note_tracer(record: _RunRecord, ctx: PydanticRunContext[Any]) -> None:
    # pydantic-ai sets ctx.tracer to NoOpTracer exactly when no Instrumentation capability
    # instruments the run (agent.instrument, instrument_all, or explicit).
    if not isinstance(ctx.tracer, NoOpTracer):
        record.framework_instrumented = True


@dataclass
class AgentbusCapability(AbstractCapability[Any]):
    """pydantic-ai capability reporting a run's tool calls to :class:`PydanticAIRunner`.

    It times every tool call through pydantic-ai's public tool hook
    (``AbstractCapability.wrap_tool_execute``, start/end in Unix ns, the original error type
    of a call that raised) and notes, in ``before_run``, the model's provider and whether
    pydantic-ai's own instrumentation is on. It keeps no state itself: it reports to the
    runner call that started the pydantic-ai run (found through a context variable, so one
    instance serves any number of agents and concurrent runs) and does nothing in runs that
    no ``PydanticAIRunner`` started, including a nested ``agent.run`` inside a tool.

    Registering it when the agent is built, ``Agent(model, capabilities=[AgentbusCapability()])``,
    is optional and makes runs cheaper: ``PydanticAIRunner`` finds it in
    ``agent.root_capability`` and then passes nothing per run, whereas without it the runner
    passes an instance per run (``agent.run(..., capabilities=[...])``), and pydantic-ai then
    re-merges, re-sorts and re-binds the run's capability tree on every run (about 0.2-0.3 ms
    of Python per run on a shared 2-core VM). What remains either way is pydantic-ai's cost of
    one more capability in a run (it copies its ``RunContext`` for every capability at every
    hook and threads each node's event stream through every capability): about 0.3-0.5 ms per
    two-tool ``TestModel`` run there, whatever the capability does. An
    ``agent.override(spec=...)`` whose capabilities replace the agent's drops a registered
    one, and tool calls of such runs are not reported.

    Event-loop rule: its hooks run inside pydantic-ai's run, on the runner's event loop.
    """

    async def before_run(self, ctx: PydanticRunContext[Any]) -> None:
        """Claim the runner call's record for this run; note instrumentation and provider."""
        record = _ACTIVE.get()
        if record is None or record.claimed:
            return
        record.claimed = True
        record.pydantic_run_id = ctx.run_id
        _note_tracer(record, ctx)
        # ``Model.system`` is what pydantic-ai itself puts in gen_ai.provider.name on its
        # chat spans (wrapper models such as InstrumentedModel delegate it).
        system = getattr(ctx.model, "system", None)
        if isinstance(system, str) and system:
            record.provider_name = system

    async def wrap_tool_execute(
        self,
        ctx: PydanticRunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        """Time one tool call (Unix ns) and note the type of the error it raised, if any."""
        record = _record_for(ctx)
        if record is None:
            return await handler(args)
        _note_tracer(record, ctx)
        start = time.time_ns()
        error_type: str | None = None
        result: Any = None
        try:
            result = await handler(args)
            return result
        except _NOT_ERRORS:
            raise
        except BaseException as exc:
            error_type = _error_type(exc)
            raise
        finally:
            end = time.time_ns()
            record.calls.append(
                (
                    start,
                    ToolCall(
                        name=call.tool_name,
                        call_id=call.tool_call_id,
                        start_time_unix_nano=start,
                        end_time_unix_nano=max(end, start),
                        error_type=error_type,
                    ),
                )
            )
            if record.capture_content:
                record.contents.append(
                    (
                        start,
                        {
                            "name": call.tool_name,
                            "call_id": call.tool_call_id,
                            "arguments": args,
                            "result": result,
                            "error_type": error_type,
                        },
                    )
                )


_PER_RUN_CAPABILITY = AgentbusCapability()
"""The instance passed per run to agents built without one (it keeps no state)."""


def _installed(agent: AbstractAgent[Any, Any]) -> bool:
    """Whether ``agent`` was built with an :class:`AgentbusCapability`."""
    try:
        root = agent.root_capability
    except Exception:  # an agent type without a capability tree: use the per-run path
        return False
    found: list[bool] = []

    def visit(capability: AbstractCapability[Any]) -> None:
        while isinstance(capability, WrapperCapability):
            capability = capability.wrapped
        if isinstance(capability, AgentbusCapability):
            found.append(True)

    root.apply(visit)
    return bool(found)


def _error_type(exc: BaseException) -> str:
    """The type name of what the tool raised.

    pydantic-ai wraps ``ModelRetry`` / ``ToolFailed`` (and validation errors) raised by a tool
    in ``ToolRetryError`` / ``ToolFailedError`` before the hooks see them (``raise ... from
    e``); report the original type, which is what the tool's author wrote.
    """
    if isinstance(exc, (ToolRetryError, ToolFailedError)) and exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    return type(exc).__name__


def _token_usage(usage: RunUsage) -> TokenUsage:
    return TokenUsage(
        input_tokens=int(usage.input_tokens or 0),
        output_tokens=int(usage.output_tokens or 0),
        requests=int(usage.requests or 0),
    )


def _prompt(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return value
    raise TypeError(
        "PydanticAIRunner: context.input must be a str, a sequence of pydantic-ai user "
        f"content, or None; got {type(value).__name__}"
    )


class PydanticAIRunner:
    """An :data:`~agentbus.AgentRunner` running a pydantic-ai 2.x agent (issue 2 adapter).

    Args:
        agent: a ``pydantic_ai.Agent`` (any ``pydantic_ai.agent.AbstractAgent``). It is not
            modified. When it was built with an :class:`AgentbusCapability` (found once, here,
            in ``agent.root_capability``) the runner relies on that one; otherwise it passes
            one per run (``capabilities=[...]``), which costs pydantic-ai a re-merge of the
            run's capability tree on every run (see :class:`AgentbusCapability`).
        capture_content: keep the prompt, the output and tool arguments/results: tool
            contents in ``run.state[TOOL_CONTENT_STATE_KEY]``, all of them in the metadata
            of one ``EventType.CUSTOM`` event of the run (see the module docstring). Off by
            default: content is opt-in, as in the OpenTelemetry GenAI conventions.
        **run_kwargs: further keyword arguments for every ``agent.run`` call (e.g.
            ``model_settings``, ``usage_limits``, ``model``, ``message_history``,
            ``conversation_id`` to override the session id).

    Raises:
        TypeError: ``agent`` is not a pydantic-ai agent.
        ValueError: ``run_kwargs`` names an argument the runner sets itself (``deps``,
            ``usage``, ``capabilities``, ``user_prompt``).

    Calling it (the executor does) runs ``agent.run(run.context.input,
    deps=run.context.deps, usage=..., capabilities=[AgentbusCapability()],
    conversation_id=run.context.session_id, **run_kwargs)`` (``conversation_id`` only when
    the context has a session id and ``run_kwargs`` names neither ``conversation_id`` nor
    ``conversation``) and returns :class:`~agentbus.AgentOutput` (with ``provider_name``).
    ``run.context.input`` must be a ``str``, a sequence of pydantic-ai user content, or
    ``None`` (``TypeError`` otherwise). Errors of the agent run propagate unchanged (the
    executor turns them into ``ERROR_OCCURRED`` with their type name), after the partial
    tool calls, usage and provider name were put on ``run``.

    ``capabilities=`` is left out when the agent has its own :class:`AgentbusCapability`.

    Event-loop rule: runs on the executor's loop; one instance may serve concurrent runs
    (each call keeps its state in its own record, found by the capability through a context
    variable, which pydantic-ai's tool tasks inherit).
    """

    def __init__(self, agent: Any, *, capture_content: bool = False, **run_kwargs: Any) -> None:
        if not isinstance(agent, AbstractAgent):
            raise TypeError(
                f"PydanticAIRunner needs a pydantic_ai.Agent, got {type(agent).__name__}"
            )
        bad = _RESERVED.intersection(run_kwargs)
        if bad:
            raise ValueError(
                f"PydanticAIRunner sets {sorted(bad)} itself; do not pass them in run_kwargs"
            )
        self.agent: AbstractAgent[Any, Any] = agent
        self.capture_content = capture_content
        self.run_kwargs: dict[str, Any] = dict(run_kwargs)
        self._run_capabilities: list[AbstractCapability[Any]] | None = (
            None if _installed(agent) else [_PER_RUN_CAPABILITY]
        )

    @property
    def name(self) -> str:
        """The pydantic-ai agent's name (or ``"agent"``)."""
        return self.agent.name or "agent"

    def __repr__(self) -> str:
        return f"PydanticAIRunner(agent={self.name!r}, capture_content={self.capture_content})"

    async def __call__(self, run: RunContext) -> AgentOutput:
        """Run the agent once for ``run``; see the class docstring."""
        prompt = _prompt(run.context.input)
        recorder = _RunRecord(capture_content=self.capture_content)
        usage = RunUsage()
        kwargs = self.run_kwargs
        session_id = run.context.session_id
        if session_id and "conversation_id" not in kwargs and "conversation" not in kwargs:
            kwargs = {**kwargs, "conversation_id": session_id}
        token = _ACTIVE.set(recorder)
        try:
            result = await self.agent.run(
                prompt,
                deps=run.context.deps,
                usage=usage,
                capabilities=self._run_capabilities,
                **kwargs,
            )
        except asyncio.CancelledError:
            run.usage.add(_token_usage(usage))
            run.tool_calls.extend(recorder.tool_calls())
            self._keep_state(run, recorder)
            raise
        except Exception:
            # The run failed: keep what did happen on the run itself.
            run.usage.add(_token_usage(usage))
            run.tool_calls.extend(recorder.tool_calls())
            self._keep_state(run, recorder)
            if self.capture_content:
                await self._emit_content(run, prompt, recorder, None)
            raise
        finally:
            _ACTIVE.reset(token)
        self._keep_state(run, recorder)
        if self.capture_content:
            await self._emit_content(run, prompt, recorder, result.output)
        return AgentOutput(
            output=result.output,
            usage=_token_usage(result.usage),  # the run's total: pydantic-ai's own count
            tool_calls=recorder.tool_calls(),
            response_model=_response_model(result),
            framework_instrumented=recorder.framework_instrumented,
            provider_name=recorder.provider_name,
        )

    def _keep_state(self, run: RunContext, recorder: _RunRecord) -> None:
        if recorder.framework_instrumented:
            run.state[sc.AB_FRAMEWORK_INSTRUMENTED] = True
        if recorder.provider_name:
            run.state[sc.GEN_AI_PROVIDER_NAME] = recorder.provider_name
        if self.capture_content:
            contents = recorder.tool_contents()
            existing = run.state.get(TOOL_CONTENT_STATE_KEY)
            if isinstance(existing, list):
                existing.extend(contents)
            else:
                run.state[TOOL_CONTENT_STATE_KEY] = contents

    async def _emit_content(
        self, run: RunContext, prompt: Any, recorder: _RunRecord, output: Any
    ) -> None:
        contents = recorder.tool_contents()
        metadata: dict[str, Any] = {
            sc.GEN_AI_INPUT_MESSAGES: [
                {"role": "user", "parts": [{"type": "text", "content": prompt}]}
            ],
        }
        if output is not None:
            metadata[sc.GEN_AI_OUTPUT_MESSAGES] = [
                {"role": "assistant", "parts": [{"type": "text", "content": output}]}
            ]
        if contents:
            metadata[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = {
                c["call_id"]: c["arguments"] for c in contents if c["call_id"]
            }
            metadata[sc.GEN_AI_TOOL_CALL_RESULT] = {
                c["call_id"]: c["result"] for c in contents if c["call_id"] and not c["error_type"]
            }
        await run.emit(EventType.CUSTOM, metadata=metadata)


def _response_model(result: Any) -> str | None:
    try:
        name = result.response.model_name
    except (AttributeError, ValueError):
        return None
    return name if isinstance(name, str) and name else None
