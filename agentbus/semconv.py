"""Pinned attribute and span names.

The OpenTelemetry GenAI semantic conventions are still marked *Development* upstream; every
name agentbus puts on a span, a span event or an ``SystemEvent.attributes`` key lives here,
so a rename upstream is a one-file change.

Pinned against: OpenTelemetry semantic conventions 1.37 (GenAI agent & framework spans,
``gen_ai.*`` attributes; ``error.type``). Keys prefixed ``agentbus.`` are ours.
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.37.0"

# --- span names / operations (GenAI "agent spans") -----------------------------------------
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_CHAT: Final = "chat"

# --- gen_ai.* attributes -------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"  # content: opt-in only
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"  # content: opt-in only
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"  # content: opt-in only
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"  # content: opt-in only
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"

# --- GenAI metrics (names, units, bucket boundaries from the conventions) ------------------
METRIC_GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # unit {token}
METRIC_GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"  # unit s
TOKEN_USAGE_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
    67108864,
)
OPERATION_DURATION_BUCKETS_SECONDS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)

# --- agentbus.* keys of SystemEvent.attributes (structured, never content) -----------------
AB_MIDDLEWARE: Final = "agentbus.middleware.name"
AB_START_TIME_NS: Final = "agentbus.start_time_unix_nano"
AB_END_TIME_NS: Final = "agentbus.end_time_unix_nano"
AB_TOOL_CALLS: Final = "agentbus.tool_calls"
"""List of dicts ``{"name", "call_id", "start_time_unix_nano", "end_time_unix_nano",
"error_type"}`` — one per tool call the agent made (parallel calls overlap in time)."""
AB_COST_USD: Final = "agentbus.cost_usd"
AB_REQUESTS: Final = "agentbus.usage.requests"
AB_PARENT_AGENT_ID: Final = "agentbus.parent.agent_id"
AB_SUBAGENT: Final = "agentbus.subagent"
AB_SUBAGENT_STATUS: Final = "agentbus.subagent.status"
AB_CHECKPOINT_ID: Final = "agentbus.checkpoint.id"
AB_FRAMEWORK_INSTRUMENTED: Final = "agentbus.framework_instrumented"
"""True when the agent framework's own OTel instrumentation is on: the framework then owns
the GenAI spans (``invoke_agent`` / ``chat`` / ``execute_tool``), and the span handler emits
the run as a plain ``agentbus.run {agent}`` wrapper span and no ``execute_tool`` spans, so no
GenAI span is duplicated."""

# --- span handler / log names (exporters.otel, middleware.logging) -------------------------
SPAN_MIDDLEWARE: Final = "middleware"
"""Span name prefix of executor middleware spans: ``middleware {agentbus.middleware.name}``."""
SPAN_RUN: Final = "agentbus.run"
"""Span name prefix of a run's span when the agent framework's own instrumentation owns the
GenAI spans (``AB_FRAMEWORK_INSTRUMENTED``): ``agentbus.run {gen_ai.agent.name}``, a plain
wrapper span without ``gen_ai.operation.name``."""
USER_ID: Final = "user.id"  # identity: on spans only when content capture is on
EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"  # content: opt-in only
AB_RUN_ID: Final = "agentbus.run.id"
AB_EVENT_ID: Final = "agentbus.event.id"
AB_CORRELATION_ID: Final = "agentbus.correlation.id"
AB_METADATA_PREFIX: Final = "agentbus.metadata."  # + metadata key; content: opt-in only
AB_SUBAGENT_RUN_ID: Final = "agentbus.subagent.run_id"
"""Run id of the sub-run, on ``SUBAGENT_COMPLETED`` / ``SUBAGENT_FAILED``."""
