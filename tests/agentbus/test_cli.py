"""The ``agentbus`` command: argument parsing, clear errors, and small real demo runs."""

from __future__ import annotations

import io
import json
import socket
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from agentbus.cli import DEMO_DEFAULTS, build_parser, default_traces, main
from agentbus.demo import (
    PRICES_USD_PER_MTOK,
    DemoOptions,
    PricingMiddleware,
    percentile,
    plan_jobs,
    run_demo,
)
from agentbus.executor import TokenUsage


def _sum(registry: CollectorRegistry, sample_name: str, **labels: str) -> float:
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == sample_name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_parser_defaults_match_demo_options() -> None:
    """The CLI's documented defaults are DemoOptions' defaults."""
    args = build_parser().parse_args(["demo"])
    defaults = DemoOptions()
    for name, value in DEMO_DEFAULTS.items():
        if name == "traces":  # resolved at run time from the OTLP variables
            assert args.traces is None
            assert default_traces({}) == value == defaults.traces
            continue
        assert getattr(args, name) == value == getattr(defaults, name), name
    assert args.serve_for is None and defaults.serve_for is None
    assert {f.name for f in fields(DemoOptions)} >= set(DEMO_DEFAULTS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo", "--runs", "0"], "--runs: must be at least 1, got 0"),
        (["demo", "--runs", "many"], "--runs: expected a whole number, got 'many'"),
        (["demo", "--concurrency", "-2"], "--concurrency: must be at least 1, got -2"),
        (["demo", "--port", "70000"], "--port: must be in 0..65535"),
        (["demo", "--serve-for", "-1"], "--serve-for: must be a finite number >= 0"),
        (["demo", "--serve-for", "nan"], "--serve-for: must be a finite number >= 0"),
        (["demo", "--traces", "zipkin"], "--traces: invalid choice: 'zipkin'"),
        (["demo", "--seed", "x"], "--seed: expected an integer seed, got 'x'"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["dashboards"], "the following arguments are required: ACTION"),
    ],
)
def test_bad_flags_give_clear_usage_errors(argv: list[str], expected: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A bad flag exits with status 2 and a message naming the flag and the problem."""
    assert expected in _usage_error(argv, capsys)


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Running ``agentbus`` without a subcommand says a command is required."""
    assert "required: COMMAND" in _usage_error([], capsys)


def test_demo_options_reject_bad_values() -> None:
    """DemoOptions names the bad field."""
    with pytest.raises(ValueError, match="runs must be >= 1"):
        DemoOptions(runs=0)
    with pytest.raises(ValueError, match="fail_rate"):
        DemoOptions(fail_rate=1.5)
    with pytest.raises(ValueError, match="traces"):
        DemoOptions(traces="zipkin")  # type: ignore[arg-type]


@pytest.mark.parametrize("runs", [1, 2, 3, 17, 200])
def test_plan_makes_exactly_the_requested_executions(runs: int) -> None:
    """A plan's executions (booking jobs count their sub-agent run) add up to --runs, and
    the same seed gives the same plan."""
    plan = plan_jobs(runs, seed=42)
    assert sum(job.executions for job in plan) == runs
    assert plan == plan_jobs(runs, seed=42)


def test_plan_has_failures_and_slow_runs() -> None:
    """A default-size plan contains failing, slow, and delegating jobs."""
    plan = plan_jobs(200, seed=1)
    scenarios = {job.scenario for job in plan} | {job.sub_scenario for job in plan}
    assert {"ok", "slow", "tool_error", "model_error", "blocked"} <= scenarios
    assert any(job.agent == "booking" for job in plan)


def test_percentile_is_nearest_rank() -> None:
    """percentile() returns the nearest-rank value."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 95) == 95.0
    assert percentile(values, 50) == 50.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 95) == 0.0
    with pytest.raises(ValueError, match="q must be in"):
        percentile(values, 0)


async def test_in_process_demo_summary_agrees_with_its_metrics(tmp_path: Path) -> None:
    """A tiny real demo run: its summary matches what its registry exposes."""
    registry = CollectorRegistry()
    out = io.StringIO()
    options = DemoOptions(runs=12, concurrency=3, port=0, serve_for=0, traces="none",
                          seed=11, fail_rate=0.3, log_file=tmp_path / "demo.log",
                          handle_signals=False)
    summary = await run_demo(options, registry=registry, console=Console(file=out, width=120))

    assert summary.runs == 12
    assert _sum(registry, "agentbus_agent_runs_total") == 12
    assert _sum(registry, "agentbus_agent_runs_total", status="error") == summary.errors
    assert summary.errors == sum(summary.errors_by_type.values()) > 0
    for error_type, n in summary.errors_by_type.items():
        assert _sum(registry, "agentbus_agent_errors_total", error_type=error_type) == n
    assert _sum(registry, "agentbus_agent_run_duration_seconds_count") == 12
    assert _sum(registry, "agentbus_agent_run_duration_seconds_sum") == pytest.approx(
        summary.latency_total_ms / 1000.0, rel=1e-9)
    assert _sum(registry, "agentbus_agent_tokens_total", type="input") == summary.input_tokens
    assert _sum(registry, "agentbus_tool_calls_total") == summary.tool_calls > 0
    assert _sum(registry, "agentbus_agent_cost_usd_total") == pytest.approx(
        summary.cost_usd, rel=1e-9)
    assert summary.cost_usd > 0
    assert summary.latency_p50_ms <= summary.latency_p95_ms <= summary.latency_max_ms
    text = out.getvalue()
    assert "summary" in text and "latency p95" in text
    assert (tmp_path / "demo.log").read_text().count("\n") >= summary.runs


def test_main_runs_the_demo_and_writes_summary_and_traces(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``agentbus demo --serve-for 0`` exits 0, writes the summary JSON and a span file
    whose booking traces contain the delegated car_hailing run."""
    summary_path = tmp_path / "summary.json"
    traces = tmp_path / "traces.jsonl"
    code = main(["demo", "--runs", "8", "--concurrency", "2", "--port", "0",
                 "--serve-for", "0", "--seed", "3", "--summary-json", str(summary_path),
                 "--traces", "jsonl", "--jsonl-path", str(traces),
                 "--log-file", str(tmp_path / "demo.log")])
    assert code == 0
    summary = json.loads(summary_path.read_text())
    assert summary["runs"] == 8
    assert summary["seed"] == 3
    spans = [json.loads(line) for line in traces.read_text().splitlines()]
    assert summary["delegations"] > 0  # seed 3 plans a booking job
    parents = {s["context"]["span_id"]: s for s in spans}
    hailing = [s for s in spans if s["name"] == "invoke_agent car_hailing"]
    assert len(hailing) == summary["delegations"]
    assert all(parents[s["parent_id"]]["name"] == "invoke_agent booking" for s in hailing)
    assert sum(1 for s in spans if s["name"].startswith("invoke_agent ")) == 8
    assert "runs (incl. sub-agent runs)" in capsys.readouterr().out


def test_port_in_use_is_a_clear_error(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A taken --port exits 1 naming the address and suggesting another port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["demo", "--runs", "1", "--port", str(port), "--serve-for", "0",
                     "--traces", "none", "--log-file", str(tmp_path / "demo.log")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in err
    assert "--port" in err


def test_dashboards_export_without_exporter_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without exporters.dashboards, ``dashboards export`` exits 1 naming the extra."""
    monkeypatch.setitem(sys.modules, "exporters.dashboards", None)
    assert main(["dashboards", "export", str(tmp_path)]) == 1
    assert "agentbus[dashboards]" in capsys.readouterr().err


def test_dashboards_export_writes_rewritten_files(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``dashboards export DIR --prefix P --job J`` writes the files it prints, with the
    metric prefix and job substituted."""
    assert main(["dashboards", "export", str(tmp_path), "--prefix", "acme",
                 "--job", "agents"]) == 0
    printed = [Path(line) for line in capsys.readouterr().out.splitlines()]
    assert printed and all(p.is_file() and tmp_path in p.parents for p in printed)
    dashboards = [p for p in printed if p.suffix == ".json"]
    text = "".join(p.read_text() for p in dashboards)
    assert "acme_agent_runs_total" in text
    assert "agentbus_agent_runs_total" not in text
    scrape = next(p for p in printed if p.name == "prometheus.yml").read_text()
    assert "job_name: agents" in scrape


def test_dashboards_export_bad_prefix_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid --prefix exits 1 with the exporter's message naming the prefix."""
    assert main(["dashboards", "export", str(tmp_path), "--prefix", "9bad"]) == 1
    assert "'9bad'" in capsys.readouterr().err


def test_pricing_middleware_prices_tokens_per_model() -> None:
    """PricingMiddleware prices input and output tokens per million, and skips unknown
    models."""
    pricing = PricingMiddleware()
    price_in, price_out = PRICES_USD_PER_MTOK["support-fn-1"]
    usage = TokenUsage(input_tokens=2_000_000, output_tokens=500_000, requests=3)
    assert pricing.cost_usd("support-fn-1", usage) == pytest.approx(
        2 * price_in + 0.5 * price_out)
    assert pricing.cost_usd("unknown-model", usage) is None


def test_traces_default_follows_the_standard_otlp_variables() -> None:
    """--traces defaults to otlp when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, else jsonl."""
    assert default_traces({}) == "jsonl"
    assert default_traces({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert default_traces({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"}) == "otlp"
    assert default_traces({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) == "jsonl"
