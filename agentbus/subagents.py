"""Asynchronous sub-agents (seeds 000 / 002: the car-hailing flow).

A parent agent delegates a task to a sub-agent without waiting for it, keeps serving its own
conversation, can ask the sub-agent's status at any time, and is notified through an event
on the bus when the sub-agent finishes::

    handle = await executor.spawn(car_hailing_executor, "hail a car to the airport")
    handle.status                          # "running"
    ...                                    # the parent keeps answering the user
    await bus.wait_for(SubAgentEventType.SUBAGENT_COMPLETED,
                       lambda e: e.attributes["agentbus.subagent"] == "car_hailing")
    result = await handle.wait()           # ExecutionResult of the sub-run

``executor.spawn`` (:meth:`agentbus.AgentExecutor.spawn`, implemented by :func:`spawn`)
starts ``sub_executor.execute(context)`` in a new ``asyncio`` task created inside the
current run's context, so the sub-run is a child of the run that spawned it even though it
runs in another task and usually ends after that run:

* its ``AGENT_STARTED`` has ``causation_id`` = the parent run id, the same ``trace_id`` and
  ``correlation_id``, and ``parent_span_id`` = the parent run's ``invoke_agent`` span;
* spawned outside any run it starts its own trace (or joins the current OpenTelemetry span).

Events, published on the *parent* executor's bus (``agent_id`` = the parent agent,
``attributes["agentbus.subagent"]`` = the sub-agent's id,
``attributes["agentbus.subagent.status"]``, the parent run's trace ids, user, session and
correlation ids):

* ``SUBAGENT_SPAWNED`` (status ``"spawned"``) — before the sub-run's task starts;
  ``causation_id`` = the parent run id.
* ``SUBAGENT_COMPLETED`` (status ``"completed"``) or ``SUBAGENT_FAILED`` (status
  ``"failed"`` or ``"cancelled"``, with ``error_type`` / ``error_message``) — after the
  sub-run's own ``AGENT_COMPLETED`` / ``ERROR_OCCURRED``; ``causation_id`` = that last event
  of the sub-run, ``attributes["agentbus.subagent.run_id"]`` = the sub-run id,
  ``execution_time_ms`` = time from spawn to the end of the sub-run.

So ``bus.get_causation_chain(completed.event_id)`` reads, oldest first: the parent's
``AGENT_STARTED`` → the sub-run's ``AGENT_STARTED`` → the sub-run's ``AGENT_COMPLETED`` →
``SUBAGENT_COMPLETED`` (when both executors share the bus and the events are still in its
history). A sub-agent cancelled before its run could start has no run events: its
``SUBAGENT_FAILED`` is caused by its ``SUBAGENT_SPAWNED``; one cancelled while running is
caused by ``SUBAGENT_SPAWNED`` too (the run it was in is not known to the handle), while its
run's own ``ERROR_OCCURRED`` (``error_type="CancelledError"``) is on the bus as usual.

Nothing disappears silently: every spawned sub-agent ends with exactly one
``SUBAGENT_COMPLETED`` or ``SUBAGENT_FAILED`` (also when cancelled, also when the event loop
cancels it at shutdown, as long as the bus is still open), its task is kept referenced until
then, and ``await executor.wait_subagents()`` waits for every sub-agent the executor spawned
— call it before ``bus.close()``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from . import semconv as sc
from .events import EventType, SubAgentEventType, SystemEvent
from .executor import AgentContext, ExecutionResult, RunContext, TokenUsage, current_run

if TYPE_CHECKING:
    from .executor import AgentExecutor

__all__ = [
    "OnDone",
    "SubAgentHandle",
    "SubAgentStatus",
    "pending_subagents",
    "spawn",
    "wait_subagents",
]

logger = logging.getLogger("agentbus.subagents")

SubAgentStatus = Literal["running", "completed", "failed", "cancelled"]
"""Status of a :class:`SubAgentHandle`: ``"running"`` until the sub-run ends, then
``"completed"`` (success), ``"failed"`` (the run failed) or ``"cancelled"``."""

OnDone = Callable[["SubAgentHandle"], Any]
"""Callback run once when a sub-agent finishes: ``(handle) -> None`` or a coroutine function.
It runs in the sub-agent's task after the completion event was published; what it raises
(``Exception``) is logged and ignored."""

_TERMINAL = (EventType.AGENT_COMPLETED, EventType.ERROR_OCCURRED)

# executor -> its unfinished handles. Values hold the handles (and so their tasks) strongly;
# asyncio itself only keeps weak references to tasks.
_PENDING: weakref.WeakKeyDictionary[AgentExecutor, set[SubAgentHandle]] = (
    weakref.WeakKeyDictionary()
)
# Every unfinished handle, whatever happens to its executor object.
_LIVE: set[SubAgentHandle] = set()


class SubAgentHandle:
    """A running (or finished) sub-agent started by :func:`spawn` / ``executor.spawn``.

    Attributes:
        agent_id: the sub-agent's id.
        name: the handle's name (also the name of its ``asyncio`` task).
        spawned_event_id: ``event_id`` of the ``SUBAGENT_SPAWNED`` event.
        parent_run_id: run id of the run that spawned it, or ``None`` outside a run.

    Status can be read at any time from any code on the event loop; it never blocks.
    """

    def __init__(
        self,
        owner: AgentExecutor,
        sub_executor: AgentExecutor,
        context: AgentContext,
        *,
        name: str,
        parent: RunContext | None,
        spawned_event_id: str,
        on_done: OnDone | None,
    ) -> None:
        self._owner = owner
        self._sub = sub_executor
        self._context = context
        self.agent_id = sub_executor.agent_id
        self.name = name
        self.parent_run_id = parent.run_id if parent is not None else None
        self.spawned_event_id = spawned_event_id
        self._parent = parent
        self._status: SubAgentStatus = "running"
        self._result: ExecutionResult | None = None
        self._callbacks: list[OnDone] = [on_done] if on_done is not None else []
        self._finished = asyncio.Event()
        self._settled = False
        self._reported = False
        self._t0 = time.perf_counter()
        self._task: asyncio.Task[ExecutionResult] | None = None
        self._late: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ public API
    @property
    def status(self) -> SubAgentStatus:
        """``"running"``, ``"completed"``, ``"failed"`` or ``"cancelled"``."""
        return self._status

    @property
    def result(self) -> ExecutionResult | None:
        """The sub-run's :class:`~agentbus.ExecutionResult` once finished, else ``None``.

        For a cancelled sub-agent it is a synthesized failed result with
        ``error_type="CancelledError"`` (``run_id`` empty when the run id is not known).
        """
        return self._result

    def done(self) -> bool:
        """True once the sub-agent finished and its completion event was published."""
        return self._finished.is_set()

    async def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Wait until the sub-agent finished; return its :class:`~agentbus.ExecutionResult`.

        Never raises the sub-agent's error (a failed or cancelled sub-agent gives a result
        with ``success=False``). Waiting does not cancel the sub-agent on timeout.

        Args:
            timeout: seconds; ``None`` waits for ever.

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
            asyncio.CancelledError: the *waiting* task was cancelled.
        """
        if not self._finished.is_set():
            try:
                await asyncio.wait_for(self._finished.wait(), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"sub-agent {self.agent_id!r} ({self.name}) still running after {timeout}s"
                ) from None
        assert self._result is not None
        return self._result

    def cancel(self, msg: str | None = None) -> bool:
        """Ask the sub-agent to stop. Returns False if it already finished.

        The sub-run is cancelled (its executor publishes ``ERROR_OCCURRED`` with
        ``error_type="CancelledError"``), then ``SUBAGENT_FAILED`` with status
        ``"cancelled"`` is published; :meth:`wait` then returns the cancelled result.
        """
        if self._settled or self._task is None or self._task.done():
            return False
        return self._task.cancel(msg)

    def add_done_callback(self, callback: OnDone) -> None:
        """Run ``callback(handle)`` when the sub-agent finishes (at once if it already did,
        as a task for a coroutine function). Errors are logged, not raised."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        if self._finished.is_set():
            out = self._call_safely(callback)
            if inspect.isawaitable(out):
                task = asyncio.ensure_future(out)
                _LIVE_CALLBACKS.add(task)
                task.add_done_callback(_LIVE_CALLBACKS.discard)
            return
        self._callbacks.append(callback)

    def __repr__(self) -> str:
        return f"<SubAgentHandle {self.agent_id!r} name={self.name!r} status={self._status}>"

    # ------------------------------------------------------------------ machinery
    def _start(self) -> None:
        """Create the task in the caller's context (so ``current_run`` propagates)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        self._task.add_done_callback(self._task_done)

    async def _run(self) -> ExecutionResult:
        try:
            result = await self._sub.execute(self._context)
        except asyncio.CancelledError:
            self._mark(self._cancelled_result(), "cancelled")
            # Report even though this task is being cancelled; never swallow the cancel.
            self._late = asyncio.ensure_future(self._report())
            await asyncio.shield(self._late)
            raise
        except Exception as exc:  # execute returns errors as results; this is an engine bug
            logger.exception("sub-agent %r raised out of execute", self.agent_id)
            result = self._error_result(type(exc).__name__, str(exc) or type(exc).__name__)
            self._mark(result, "failed")
            await self._report()
            return result
        self._mark(result, "completed" if result.success else "failed")
        await self._report()
        return result

    def _task_done(self, task: asyncio.Task[ExecutionResult]) -> None:
        # Cancelled before its first step (so _run never ran), or cancelled again while
        # reporting: make sure the outcome is reported exactly once.
        if not self._settled:
            self._mark(self._cancelled_result(), "cancelled")
        if not self._reported:
            self._late = asyncio.ensure_future(self._report())

    def _cancelled_result(self) -> ExecutionResult:
        return self._error_result("CancelledError", "sub-agent cancelled")

    def _error_result(self, error_type: str, message: str) -> ExecutionResult:
        parent = self._parent
        return ExecutionResult(
            success=False,
            output=None,
            agent_id=self.agent_id,
            run_id="",
            trace_id=parent.trace_id if parent is not None else "",
            span_id="",
            execution_time_ms=(time.perf_counter() - self._t0) * 1000.0,
            usage=TokenUsage(),
            tool_calls=[],
            error_type=error_type,
            error_message=message,
        )

    def _mark(self, result: ExecutionResult, status: SubAgentStatus) -> None:
        if self._settled:
            return
        self._settled = True
        self._result = result
        self._status = status

    async def _report(self) -> None:
        if self._reported:
            return
        self._reported = True
        assert self._result is not None
        try:
            try:
                await self._publish_outcome(self._result, self._status)
            except Exception:  # never lose the callbacks or the waiters over a report
                logger.exception("could not report the end of sub-agent %r", self.agent_id)
            for cb in self._callbacks:
                out = self._call_safely(cb)
                if inspect.isawaitable(out):
                    try:
                        await out
                    except Exception:
                        logger.exception("on_done callback of sub-agent %r failed", self.agent_id)
        finally:
            self._callbacks.clear()
            self._finished.set()
            _forget(self)

    def _call_safely(self, cb: OnDone) -> Any:
        try:
            return cb(self)
        except Exception:
            logger.exception("on_done callback of sub-agent %r failed", self.agent_id)
            return None

    async def _publish_outcome(self, result: ExecutionResult, status: SubAgentStatus) -> None:
        etype = (
            SubAgentEventType.SUBAGENT_COMPLETED
            if status == "completed"
            else SubAgentEventType.SUBAGENT_FAILED
        )
        causation = self.spawned_event_id
        if result.run_id:
            causation = _last_event_id(self._sub, result.run_id) or result.run_id
        attrs: dict[str, Any] = {}
        if result.run_id:
            attrs[sc.AB_SUBAGENT_RUN_ID] = result.run_id
        fields: dict[str, Any] = {
            "execution_time_ms": (time.perf_counter() - self._t0) * 1000.0,
            "causation_id": causation,
        }
        if not result.success:
            fields["error_type"] = result.error_type
            fields["error_message"] = result.error_message
        if self._parent is None and result.trace_id:
            # No parent run: the sub-run started its own trace; attach to the sub-run's span.
            fields["trace_id"] = result.trace_id
            fields["span_id"] = result.span_id or None
            fields["correlation_id"] = result.run_id or None
        await _publish(self._owner, self._parent, self._context, etype, self.agent_id, status,
                       attrs, fields)


_LIVE_CALLBACKS: set[asyncio.Future[Any]] = set()


def _forget(handle: SubAgentHandle) -> None:
    _LIVE.discard(handle)
    pending = _PENDING.get(handle._owner)
    if pending is not None:
        pending.discard(handle)


def _last_event_id(sub: AgentExecutor, run_id: str) -> str | None:
    """The id of the sub-run's terminal event, if its bus still holds it."""
    bus = sub.event_bus
    if bus is None:
        return None
    for ev in reversed(bus.history(agent_id=sub.agent_id, event_types=_TERMINAL)):
        if ev.causation_id == run_id:
            return ev.event_id
    return None


async def _publish(
    owner: AgentExecutor,
    parent: RunContext | None,
    context: AgentContext,
    etype: Enum,
    sub_agent_id: str,
    status: str,
    attrs: dict[str, Any],
    fields: dict[str, Any],
) -> SystemEvent:
    attributes = dict(owner._base_attrs)
    attributes[sc.AB_SUBAGENT] = sub_agent_id
    attributes[sc.AB_SUBAGENT_STATUS] = status
    attributes.update(attrs)
    if parent is not None:
        event = owner._event(parent, etype, attributes=attributes, **fields)
    else:
        values: dict[str, Any] = {
            "event_type": etype,
            "agent_id": owner.agent_id,
            "user_id": context.user_id,
            "session_id": context.session_id,
            "attributes": attributes,
        }
        values.update(fields)
        event = SystemEvent(**values)
    await owner._publish(event)
    return event


async def spawn(
    owner: AgentExecutor,
    sub_executor: AgentExecutor,
    context: Any = None,
    *,
    name: str | None = None,
    on_done: OnDone | None = None,
) -> SubAgentHandle:
    """Start ``sub_executor.execute(context)`` without waiting for it (seeds 000 / 002).

    What ``AgentExecutor.spawn`` does; see the module docstring for events and trace shape.

    Args:
        owner: the parent executor (publishes the ``SUBAGENT_*`` events on its bus).
        sub_executor: the sub-agent's executor (publishes its run events on its own bus).
        context: the sub-run's input: an :class:`~agentbus.AgentContext`, a ``str``, a
            mapping of its fields, or ``None``. Inside a run, ``user_id`` / ``session_id``
            default to the parent run's.
        name: name of the handle and its task; default ``"subagent:<agent_id>"``.
        on_done: optional callback, see :data:`OnDone`.

    Returns:
        The :class:`SubAgentHandle`, status ``"running"``; ``SUBAGENT_SPAWNED`` has been
        published (awaiting the bus's backpressure policy) and the task created.

    Raises:
        TypeError: ``sub_executor`` is not an ``AgentExecutor`` or ``on_done`` not callable.
        pydantic.ValidationError: ``context`` is a mapping with bad keys.
        RuntimeError: no running event loop.

    Event-loop rule: call it on the loop of the buses involved.
    """
    from .executor import AgentExecutor

    if not isinstance(sub_executor, AgentExecutor):
        raise TypeError(
            f"sub_executor must be an AgentExecutor, got {type(sub_executor).__name__}"
        )
    if on_done is not None and not callable(on_done):
        raise TypeError(f"on_done must be callable, got {type(on_done).__name__}")
    asyncio.get_running_loop()
    ctx = AgentContext.coerce(context)
    parent = current_run()
    if parent is not None:
        updates: dict[str, Any] = {}
        if ctx.user_id is None and parent.context.user_id is not None:
            updates["user_id"] = parent.context.user_id
        if ctx.session_id is None and parent.context.session_id is not None:
            updates["session_id"] = parent.context.session_id
        if updates:
            ctx = ctx.model_copy(update=updates)
    spawned = await _publish(
        owner,
        parent,
        ctx,
        SubAgentEventType.SUBAGENT_SPAWNED,
        sub_executor.agent_id,
        "spawned",
        {},
        {"causation_id": parent.run_id if parent is not None else None},
    )
    handle = SubAgentHandle(
        owner,
        sub_executor,
        ctx,
        name=name or f"subagent:{sub_executor.agent_id}",
        parent=parent,
        spawned_event_id=spawned.event_id,
        on_done=on_done,
    )
    _LIVE.add(handle)
    _PENDING.setdefault(owner, set()).add(handle)
    handle._start()
    return handle


def pending_subagents(owner: AgentExecutor) -> tuple[SubAgentHandle, ...]:
    """The sub-agents ``owner`` spawned that have not finished yet."""
    return tuple(_PENDING.get(owner, ()))


async def wait_subagents(
    owner: AgentExecutor,
    timeout: float | None = None,
    *,
    cancel: bool = False,
) -> list[ExecutionResult]:
    """Wait until every sub-agent ``owner`` spawned has finished (``executor.wait_subagents``).

    Sub-agents spawned while waiting (e.g. by an ``on_done`` callback) are waited for too.

    Args:
        timeout: seconds for the whole wait; ``None`` waits for ever.
        cancel: on timeout, cancel the sub-agents still running (each then publishes
            ``SUBAGENT_FAILED`` with status ``"cancelled"``), wait for them to report and
            return, instead of raising.

    Returns:
        The results of the sub-agents waited for, in no particular order.

    Raises:
        TimeoutError: some are still running after ``timeout`` (only with ``cancel=False``).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    results: list[ExecutionResult] = []
    while True:
        pending = pending_subagents(owner)
        if not pending:
            return results
        left = None if deadline is None else max(0.0, deadline - loop.time())
        waiters = [asyncio.ensure_future(h._finished.wait()) for h in pending]
        try:
            _done, not_done = await asyncio.wait(waiters, timeout=left)
        finally:
            for w in waiters:
                if not w.done():
                    w.cancel()
        for h in pending:
            if h.done() and h.result is not None:
                results.append(h.result)
        if not_done:
            still = [h for h in pending if not h.done()]
            if not cancel:
                raise TimeoutError(
                    f"{len(still)} sub-agent(s) of {owner.agent_id!r} still running after "
                    f"{timeout}s: {', '.join(h.agent_id for h in still)}"
                )
            for h in still:
                h.cancel()
            await asyncio.gather(*(h.wait() for h in still))
            results.extend(h.result for h in still if h.result is not None)
            return results
