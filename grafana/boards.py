"""The agentbus Grafana dashboards, as code (``grafana-foundation-sdk`` builders).

Two dashboards, both over the metric names pinned in the README's *Metrics* section
(``agentbus_*`` from ``middleware.prometheus`` / ``exporters.prometheus``, and the OpenTelemetry
GenAI client metrics ``gen_ai_client_*``):

* ``agentbus-agents`` — *agent overview*: RED per agent (run rate, error rate and ratio,
  p50/p95/p99 duration with exemplar links to traces), runs in progress, tokens and cost per
  agent and model, tools, middleware, checkpoints, sessions, sub-agent delegations, top error
  types.
* ``agentbus-bus`` — *bus health*: published / delivered / dropped (by reason) / rejected,
  events by type, queue depth and saturation, dispatch lag, handler errors, time per event and
  utilisation by handler, label-cardinality overflow.

Every panel sets a unit; every query uses only the template variables ``$datasource``,
``$job``, ``$instance``, ``$agent`` / ``$handler``, ``$__rate_interval`` and ``$__range``
(the integration test substitutes exactly these and evaluates every query against a real
Prometheus). Metric names are written with the default ``agentbus_`` prefix;
:func:`exporters.dashboards.export_all` rewrites the prefix and job for a user's setup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from grafana_foundation_sdk.builders import bargauge, common, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

__all__ = [
    "DASHBOARD_UIDS",
    "Query",
    "agents_dashboard",
    "all_dashboards",
    "bus_dashboard",
]

DATASOURCE: Final = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Every panel and variable queries the dashboard's ``$datasource`` (a Prometheus)."""

RATE: Final = "$__rate_interval"
RANGE: Final = "$__range"

DASHBOARD_UIDS: Final = ("agentbus-agents", "agentbus-bus")
"""The uid of each dashboard; also its file name (``<uid>.json``)."""

UNIT_TOKENS_PER_S: Final = "suffix:tok/s"
UNIT_TOKENS: Final = "suffix:tok"

_REF_IDS: Final = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel.

    Attributes:
        expr: the PromQL expression (may use the dashboard's template variables).
        legend: Grafana legend format (``{{label}}`` placeholders); empty for automatic.
        exemplar: ask Grafana for exemplars of the series (links points to traces through
            the datasource's ``exemplarTraceIdDestinations``).
    """

    expr: str
    legend: str = ""
    exemplar: bool = False


class _Board:
    """Accumulates panels of one dashboard, numbering panels and query refIds."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["agentbus"])
            .editable()
            .refresh("30s")
            .time("now-1h", "now")
            .timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(
                db.DashboardLink("agentbus dashboards")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["agentbus"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )
        self._next_id = 1

    def _id(self) -> int:
        panel_id = self._next_id
        self._next_id += 1
        return panel_id

    def row(self, title: str) -> None:
        self.builder.with_row(db.Row(title).id(self._id()))

    def _targets(
        self, queries: Sequence[Query], *, instant: bool
    ) -> list[Builder[variants.Dataquery]]:
        if not queries or len(queries) > len(_REF_IDS):
            raise ValueError(f"a panel needs 1..{len(_REF_IDS)} queries, got {len(queries)}")
        targets: list[Builder[variants.Dataquery]] = []
        for ref_id, query in zip(_REF_IDS, queries, strict=False):
            target = (
                prom.Dataquery()
                .ref_id(ref_id)
                .expr(query.expr)
                .legend_format(query.legend or "__auto")
                .datasource(DATASOURCE)
            )
            target = target.instant() if instant else target.range()
            if query.exemplar:
                target = target.exemplar(True)
            targets.append(target)
        return targets

    def timeseries(
        self,
        title: str,
        description: str,
        unit: str,
        *queries: Query,
        width: int = 12,
        height: int = 8,
        max_value: float | None = None,
        stack: bool = False,
    ) -> None:
        """A time series panel (range queries), legend as a table with last/max."""
        panel = (
            timeseries.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .min(0)
            .span(width)
            .height(height)
            .fill_opacity(10)
            .line_width(1)
            .show_points(cm.VisibilityMode.NEVER)
            .legend(
                common.VizLegendOptions()
                .display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                common.VizTooltipOptions()
                .mode(cm.TooltipDisplayMode.MULTI)
                .sort(cm.SortOrder.DESCENDING)
            )
            .targets(self._targets(queries, instant=False))
        )
        if max_value is not None:
            panel = panel.max(max_value)
        if stack:
            panel = panel.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
        self.builder.with_panel(panel)

    def stat(
        self,
        title: str,
        description: str,
        unit: str,
        query: Query,
        *,
        width: int = 4,
        height: int = 4,
        warn: float | None = None,
        crit: float | None = None,
    ) -> None:
        """A single-value panel (last value of a range query, with a sparkline)."""
        steps = [dm.Threshold(value=None, color="green")]
        if warn is not None:
            steps.append(dm.Threshold(value=warn, color="orange"))
        if crit is not None:
            steps.append(dm.Threshold(value=crit, color="red"))
        panel = (
            stat.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .span(width)
            .height(height)
            .graph_mode(cm.BigValueGraphMode.AREA)
            .color_mode(cm.BigValueColorMode.VALUE)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps))
            .targets(self._targets([query], instant=False))
        )
        self.builder.with_panel(panel)

    def bars(
        self,
        title: str,
        description: str,
        unit: str,
        query: Query,
        *,
        width: int = 12,
        height: int = 8,
    ) -> None:
        """A horizontal bar gauge of an instant query (one bar per series, fixed blue)."""
        panel = (
            bargauge.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .min(0)
            .span(width)
            .height(height)
            .orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            # One fixed colour: without it Grafana colours bars by its default thresholds
            # (red from 80), which mean nothing for counts and costs.
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue"))
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .targets(self._targets([query], instant=True))
        )
        self.builder.with_panel(panel)

    def variables(self, anchor: str, extra: Sequence[tuple[str, str]]) -> None:
        """``$datasource``, ``$job``, ``$instance`` and the dashboard-specific ones.

        Args:
            anchor: a metric every instance exports (variables list its label values).
            extra: ``(name, label)`` pairs of further multi-value variables over ``anchor``.
        """
        self.builder.with_variable(
            db.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        chain = [("job", "job"), ("instance", "instance"), *extra]
        selectors: list[str] = []
        for name, label in chain:
            series = f"{anchor}{{{', '.join(selectors)}}}" if selectors else anchor
            self.builder.with_variable(
                db.QueryVariable(name)
                .label(name)
                .datasource(DATASOURCE)
                .query(f"label_values({series}, {label})")
                .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dm.VariableSort.ALPHABETICAL_ASC)
                .multi(True)
                .include_all(True)
                .all_value(".*")
                .current(dm.VariableOption(selected=True, text="All", value="$__all"))
            )
            selectors.append(f'{label}=~"${name}"')

    def build(self) -> dict[str, Any]:
        """The dashboard JSON model as plain data (what Grafana imports)."""
        encoded = json.dumps(self.builder.build(), cls=JSONEncoder)
        data: dict[str, Any] = json.loads(encoded)
        return data


def _quantiles(metric: str, by: str, selector: str, *, exemplar: bool = False) -> list[Query]:
    """p50 / p95 / p99 of a histogram per ``by`` label(s); exemplars on the p95 target."""
    return [
        Query(
            f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(q * 100)} " + " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",")),
            exemplar=exemplar and q == 0.95,
        )
        for q in (0.5, 0.95, 0.99)
    ]


def agents_dashboard() -> dict[str, Any]:
    """The *agent overview* dashboard (uid ``agentbus-agents``) as a JSON model."""
    b = _Board(
        "agentbus-agents",
        "agentbus / Agent overview",
        "Runs, errors, latency, tokens and cost per agent and model (agentbus executor metrics).",
    )
    b.variables("agentbus_agent_runs_total", [("agent", "agent")])
    sel = 'job=~"$job", instance=~"$instance", agent=~"$agent"'
    inst = 'job=~"$job", instance=~"$instance"'
    runs = f"agentbus_agent_runs_total{{{sel}}}"
    err_runs = f'agentbus_agent_runs_total{{{sel}, status="error"}}'

    b.row("Overview")
    b.stat(
        "Run rate",
        "Finished runs per second (success and error), all selected agents.",
        "ops",
        Query(f"sum(rate({runs}[{RATE}]))", "runs/s"),
    )
    b.stat(
        "Error ratio",
        "Share of finished runs that ended in ERROR_OCCURRED. Alert AgentbusAgentHighErrorRatio "
        "fires above 5% per agent.",
        "percentunit",
        Query(
            f"(sum(rate({err_runs}[{RATE}])) or vector(0)) / sum(rate({runs}[{RATE}]))",
            "error ratio",
        ),
        warn=0.05,
        crit=0.1,
    )
    b.stat(
        "p95 run duration",
        "95th percentile of agent run duration (AGENT_STARTED to AGENT_COMPLETED / "
        "ERROR_OCCURRED).",
        "s",
        Query(
            f"histogram_quantile(0.95, sum by (le) "
            f"(rate(agentbus_agent_run_duration_seconds_bucket{{{sel}}}[{RATE}])))",
            "p95",
        ),
    )
    b.stat(
        "Runs in progress",
        "Runs started and not yet finished.",
        "short",
        Query(f"sum(agentbus_agent_runs_in_progress{{{sel}}})", "in progress"),
    )
    b.stat(
        "Active sessions",
        "Sessions created and not yet expired (SessionManager).",
        "short",
        Query(f"sum(agentbus_sessions_active{{{sel}}})", "sessions"),
    )
    b.stat(
        "Cost in range",
        "Total model cost (USD) of the runs finished in the dashboard's time range.",
        "currencyUSD",
        Query(f"sum(increase(agentbus_agent_cost_usd_total{{{sel}}}[{RANGE}]))", "cost"),
    )

    b.row("Runs (rate, errors, duration)")
    b.timeseries(
        "Runs by agent and status",
        "Finished runs per second, by agent and status (success / error).",
        "ops",
        Query(f"sum by (agent, status) (rate({runs}[{RATE}]))", "{{agent}} {{status}}"),
        stack=True,
    )
    b.timeseries(
        "Error ratio by agent",
        "Share of each agent's finished runs that failed (0 when an agent had no error).",
        "percentunit",
        Query(
            f"(sum by (agent) (rate({err_runs}[{RATE}])) "
            f"or sum by (agent) (rate({runs}[{RATE}])) * 0) "
            f"/ sum by (agent) (rate({runs}[{RATE}]))",
            "{{agent}}",
        ),
        max_value=1,
    )
    b.timeseries(
        "Run duration p50 / p95 / p99 by agent",
        "Agent run duration quantiles. Exemplars on the p95 series carry the run's trace_id: "
        "click a point to open the trace (needs the datasource's exemplar trace link).",
        "s",
        *_quantiles("agentbus_agent_run_duration_seconds", "agent", sel, exemplar=True),
    )
    b.timeseries(
        "Errors by agent and error type",
        "Errors per second by agent and exception type (error.type).",
        "ops",
        Query(
            f"sum by (agent, error_type) (rate(agentbus_agent_errors_total{{{sel}}}[{RATE}]))",
            "{{agent}} {{error_type}}",
        ),
        stack=True,
    )
    b.timeseries(
        "Runs in progress by agent",
        "Runs started and not yet finished. A flat non-zero line with no finished runs is "
        "what AgentbusAgentStuck alerts on.",
        "short",
        Query(f"sum by (agent) (agentbus_agent_runs_in_progress{{{sel}}})", "{{agent}}"),
    )
    b.bars(
        "Top error types",
        "The 10 most frequent error types in the dashboard's time range.",
        "short",
        Query(
            f"sort_desc(topk(10, sum by (error_type) "
            f"(increase(agentbus_agent_errors_total{{{sel}}}[{RANGE}]))))",
            "{{error_type}}",
        ),
    )

    b.row("Tokens and cost")
    b.timeseries(
        "Token rate by agent, model and type",
        "Tokens per second by agent, model and type (input / output).",
        UNIT_TOKENS_PER_S,
        Query(
            f"sum by (agent, model, type) (rate(agentbus_agent_tokens_total{{{sel}}}[{RATE}]))",
            "{{agent}} {{model}} {{type}}",
        ),
        stack=True,
    )
    b.bars(
        "Tokens in range by agent and model",
        "Tokens (input + output) used in the dashboard's time range.",
        UNIT_TOKENS,
        Query(
            f"sort_desc(sum by (agent, model) "
            f"(increase(agentbus_agent_tokens_total{{{sel}}}[{RANGE}])))",
            "{{agent}} {{model}}",
        ),
    )
    b.timeseries(
        "Cost rate by agent and model (USD per hour)",
        "Model cost per hour, by agent and model.",
        "currencyUSD",
        Query(
            f"sum by (agent, model) (rate(agentbus_agent_cost_usd_total{{{sel}}}[{RATE}])) * 3600",
            "{{agent}} {{model}}",
        ),
        stack=True,
    )
    b.bars(
        "Cost in range by agent and model",
        "Model cost (USD) in the dashboard's time range.",
        "currencyUSD",
        Query(
            f"sort_desc(sum by (agent, model) "
            f"(increase(agentbus_agent_cost_usd_total{{{sel}}}[{RANGE}])))",
            "{{agent}} {{model}}",
        ),
    )
    b.timeseries(
        "GenAI operation duration p95 by model",
        "gen_ai.client.operation.duration (OpenTelemetry GenAI semantic conventions), "
        "95th percentile per requested model. Exemplars carry the run's trace_id.",
        "s",
        Query(
            f"histogram_quantile(0.95, sum by (gen_ai_request_model, le) "
            f"(rate(gen_ai_client_operation_duration_seconds_bucket{{{inst}}}[{RATE}])))",
            "p95 {{gen_ai_request_model}}",
            exemplar=True,
        ),
    )
    b.timeseries(
        "GenAI token usage per operation p95 by model and type",
        "gen_ai.client.token.usage (OpenTelemetry GenAI semantic conventions): tokens per "
        "operation, 95th percentile per requested model and token type.",
        UNIT_TOKENS,
        Query(
            f"histogram_quantile(0.95, sum by (gen_ai_request_model, gen_ai_token_type, le) "
            f"(rate(gen_ai_client_token_usage_bucket{{{inst}}}[{RATE}])))",
            "p95 {{gen_ai_request_model}} {{gen_ai_token_type}}",
        ),
    )

    b.row("Tools and middleware")
    b.timeseries(
        "Tool calls by tool and status",
        "Tool calls per second by tool and status.",
        "ops",
        Query(
            f"sum by (tool, status) (rate(agentbus_tool_calls_total{{{sel}}}[{RATE}]))",
            "{{tool}} {{status}}",
        ),
        stack=True,
    )
    b.timeseries(
        "Tool call duration p95 by tool",
        "95th percentile of tool call duration, by tool. Exemplars carry the run's trace_id.",
        "s",
        Query(
            f"histogram_quantile(0.95, sum by (tool, le) "
            f"(rate(agentbus_tool_call_duration_seconds_bucket{{{sel}}}[{RATE}])))",
            "p95 {{tool}}",
            exemplar=True,
        ),
    )
    b.timeseries(
        "Middleware self time p95 by middleware",
        "95th percentile of each executor middleware's own time (excluding what it wraps). "
        "Exemplars carry the run's trace_id.",
        "s",
        Query(
            f"histogram_quantile(0.95, sum by (middleware, le) "
            f"(rate(agentbus_middleware_duration_seconds_bucket{{{sel}}}[{RATE}])))",
            "p95 {{middleware}}",
            exemplar=True,
        ),
    )
    b.timeseries(
        "Middleware failures by middleware and error type",
        "MIDDLEWARE_FAILED events per second.",
        "ops",
        Query(
            f"sum by (middleware, error_type) "
            f"(rate(agentbus_middleware_failures_total{{{sel}}}[{RATE}]))",
            "{{middleware}} {{error_type}}",
        ),
    )

    b.row("Sessions, checkpoints and sub-agents")
    b.timeseries(
        "Checkpoints by agent and operation",
        "Checkpoints saved and restored per second.",
        "ops",
        Query(
            f"sum by (agent, operation) (rate(agentbus_checkpoints_total{{{sel}}}[{RATE}]))",
            "{{agent}} {{operation}}",
        ),
        width=8,
    )
    b.timeseries(
        "Sessions created and expired",
        "Sessions created and expired per second, all selected agents.",
        "ops",
        Query(f"sum(rate(agentbus_sessions_created_total{{{sel}}}[{RATE}]))", "created"),
        Query(f"sum(rate(agentbus_sessions_expired_total{{{sel}}}[{RATE}]))", "expired"),
        width=8,
    )
    b.timeseries(
        "Active sessions by agent",
        "Sessions created and not yet expired.",
        "short",
        Query(f"sum by (agent) (agentbus_sessions_active{{{sel}}})", "{{agent}}"),
        width=8,
    )
    b.timeseries(
        "Sub-agent delegations by sub-agent and status",
        "Sub-agents spawned, completed and failed per second (asynchronous delegation).",
        "ops",
        Query(
            f"sum by (agent, subagent, status) "
            f"(rate(agentbus_subagent_delegations_total{{{sel}}}[{RATE}]))",
            "{{agent}} → {{subagent}} {{status}}",
        ),
        width=24,
    )
    return b.build()


def bus_dashboard() -> dict[str, Any]:
    """The *bus health* dashboard (uid ``agentbus-bus``) as a JSON model."""
    b = _Board(
        "agentbus-bus",
        "agentbus / Bus health",
        "EventBus delivery: published, delivered, dropped, queues, dispatch lag, handler "
        "errors and time, label-cardinality overflow.",
    )
    b.variables("agentbus_bus_events_delivered_total", [("handler", "handler")])
    inst = 'job=~"$job", instance=~"$instance"'
    hsel = f'{inst}, handler=~"$handler"'
    saturation = (
        f"agentbus_bus_queue_depth{{{hsel}}} / on (job, instance) group_left "
        f"max by (job, instance) (agentbus_bus_queue_capacity{{{inst}}})"
    )

    b.row("Overview")
    b.stat(
        "Published",
        "Events accepted by EventBus.publish per second.",
        "ops",
        Query(f"sum(rate(agentbus_bus_events_published_total{{{inst}}}[{RATE}]))", "published"),
    )
    b.stat(
        "Delivered",
        "Events handed to the selected handlers per second.",
        "ops",
        Query(f"sum(rate(agentbus_bus_events_delivered_total{{{hsel}}}[{RATE}]))", "delivered"),
    )
    b.stat(
        "Dropped",
        "Events dropped per second (any reason). Anything above 0 fires AgentbusEventsDropped.",
        "ops",
        Query(
            f"sum(rate(agentbus_bus_events_dropped_total{{{inst}}}[{RATE}])) or vector(0)",
            "dropped",
        ),
        warn=1e-9,
    )
    b.stat(
        "Handler errors",
        "Handler exceptions per second (logged and counted, never raised to the publisher).",
        "ops",
        Query(
            f"sum(rate(agentbus_bus_handler_errors_total{{{hsel}}}[{RATE}])) or vector(0)",
            "errors",
        ),
        warn=1e-9,
    )
    b.stat(
        "Max queue saturation",
        "Fullest handler mailbox, as a share of max_queue_size. AgentbusQueueSaturated fires "
        "above 80%.",
        "percentunit",
        Query(f"max({saturation})", "saturation"),
        warn=0.5,
        crit=0.8,
    )
    b.stat(
        "Subscriptions",
        "Live subscriptions (handlers) on the bus.",
        "short",
        Query(f"sum(agentbus_bus_subscriptions{{{inst}}})", "subscriptions"),
    )

    b.row("Throughput")
    b.timeseries(
        "Published, delivered, dropped and rejected",
        "Events per second through the bus. Delivered counts one per handler; dropped and "
        "rejected are split by reason.",
        "ops",
        Query(f"sum(rate(agentbus_bus_events_published_total{{{inst}}}[{RATE}]))", "published"),
        Query(f"sum(rate(agentbus_bus_events_delivered_total{{{hsel}}}[{RATE}]))", "delivered"),
        Query(
            f"sum by (reason) (rate(agentbus_bus_events_dropped_total{{{inst}}}[{RATE}]))",
            "dropped {{reason}}",
        ),
        Query(
            f"sum by (reason) (rate(agentbus_bus_publish_rejected_total{{{inst}}}[{RATE}]))",
            "rejected {{reason}}",
        ),
    )
    b.timeseries(
        "Events by type",
        "Events per second by event type (as seen by the metrics handler).",
        "ops",
        Query(
            f"sum by (event_type) (rate(agentbus_events_total{{{inst}}}[{RATE}]))",
            "{{event_type}}",
        ),
        stack=True,
    )
    b.timeseries(
        "Delivered by handler",
        "Events delivered per second, by handler (subscription name).",
        "ops",
        Query(
            f"sum by (handler) (rate(agentbus_bus_events_delivered_total{{{hsel}}}[{RATE}]))",
            "{{handler}}",
        ),
    )
    b.timeseries(
        "Dropped by reason",
        "Deliveries lost per second by reason: queue_full (overflow policy drop_newest / "
        "drop_oldest) or close_timeout (close() gave up draining).",
        "ops",
        Query(
            f"sum by (reason) (rate(agentbus_bus_events_dropped_total{{{inst}}}[{RATE}]))",
            "{{reason}}",
        ),
    )

    b.row("Queues and dispatch lag")
    b.timeseries(
        "Queue depth by handler",
        "Events waiting in each handler's mailbox, with the mailbox capacity.",
        "short",
        Query(f"max by (handler) (agentbus_bus_queue_depth{{{hsel}}})", "{{handler}}"),
        Query(f"max(agentbus_bus_queue_capacity{{{inst}}})", "capacity"),
        width=8,
    )
    b.timeseries(
        "Queue saturation by handler",
        "Mailbox fill ratio per handler (depth / capacity). AgentbusQueueSaturated fires above "
        "80% for 5 minutes.",
        "percentunit",
        Query(f"max by (handler) ({saturation})", "{{handler}}"),
        width=8,
        max_value=1,
    )
    b.timeseries(
        "Dispatch lag p50 / p95 / p99 by handler",
        "Time from publish to the start of the handler call, per handler.",
        "s",
        *_quantiles("agentbus_bus_dispatch_lag_seconds", "handler", hsel),
        width=8,
    )

    b.row("Handlers")
    b.timeseries(
        "Handler errors by handler",
        "Handler exceptions per second, by handler; and errors inside the Prometheus metrics "
        "handler itself (a bad event it could not turn into samples).",
        "ops",
        Query(
            f"sum by (handler) (rate(agentbus_bus_handler_errors_total{{{hsel}}}[{RATE}]))",
            "{{handler}}",
        ),
        Query(
            f"sum(rate(agentbus_metrics_handler_errors_total{{{inst}}}[{RATE}]))",
            "metrics handler internal",
        ),
        width=8,
    )
    b.timeseries(
        "Handler time per event by handler",
        "Mean handler latency: busy seconds per delivered event, by handler.",
        "s",
        Query(
            f"sum by (handler) (rate(agentbus_bus_handler_busy_seconds_total{{{hsel}}}[{RATE}]))"
            f" / sum by (handler) "
            f"(rate(agentbus_bus_events_delivered_total{{{hsel}}}[{RATE}]))",
            "{{handler}}",
        ),
        width=8,
    )
    b.timeseries(
        "Handler utilisation by handler",
        "Share of wall time each handler's worker is busy (1 = saturated worker).",
        "percentunit",
        Query(
            f"sum by (handler) (rate(agentbus_bus_handler_busy_seconds_total{{{hsel}}}[{RATE}]))",
            "{{handler}}",
        ),
        width=8,
    )

    b.row("Cardinality")
    b.timeseries(
        "Label cardinality overflow by metric and label",
        "Label values folded into _OTHER per second because a label reached its cap "
        "(label_limit). Raise the cap or fix the label source.",
        "ops",
        Query(
            f"sum by (metric, label) (rate(agentbus_label_overflow_total{{{inst}}}[{RATE}]))",
            "{{metric}} {{label}}",
        ),
        width=24,
    )
    return b.build()


def all_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by uid (see :data:`DASHBOARD_UIDS`)."""
    boards = {"agentbus-agents": agents_dashboard(), "agentbus-bus": bus_dashboard()}
    assert tuple(boards) == DASHBOARD_UIDS
    return boards
