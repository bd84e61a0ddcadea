"""The ``agentbus`` command (console script ``agentbus = agentbus.cli:main``).

Subcommands:

* ``agentbus demo [--runs N] [--concurrency C] [--host H] [--port P] [--serve-for S]
  [--traces {console,jsonl,otlp,none}] [--seed N] [--summary-json PATH] [--jsonl-path PATH]
  [--log-file PATH]`` — run the instrumented fleet of pydantic-ai agents
  (:mod:`agentbus.demo`), print a summary, serve ``/metrics``.
* ``agentbus dashboards export DIR [--prefix P] [--job J]`` — write the Grafana dashboards
  (``exporters.dashboards.export_all``) into ``DIR``.

Exit codes: 0 success, 1 runtime failure (message on stderr), 2 bad usage (argparse),
130 interrupted.

Together with :mod:`agentbus.demo` this is the one place in ``agentbus`` allowed to import
``middleware`` and ``exporters``; both are imported lazily, inside the subcommands.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = ["DEMO_DEFAULTS", "build_parser", "main"]

_TRACES = ("console", "jsonl", "otlp", "none")
TracesKind = Literal["console", "jsonl", "otlp", "none"]

# The defaults of ``agentbus demo`` (equal to ``agentbus.demo.DemoOptions()``'s; kept here so
# ``agentbus --help`` and ``agentbus dashboards`` work without the demo's dependencies).
DEMO_DEFAULTS: dict[str, Any] = {
    "runs": 200,
    "concurrency": 8,
    "host": "127.0.0.1",
    "port": 9464,
    "traces": "jsonl",
    "jsonl_path": Path("out") / "traces.jsonl",
    "log_file": Path("out") / "agentbus-demo.log",
}


def default_traces(environ: Mapping[str, str] | None = None) -> TracesKind:
    """The demo's ``--traces`` default: ``"otlp"`` when the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variable is set
    (OpenTelemetry's exporter configuration), else ``DEMO_DEFAULTS["traces"]`` (jsonl)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return "jsonl"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be in 0..65535 (0 picks a free port), got {value}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``agentbus`` command (exposed for tests and docs)."""
    d = DEMO_DEFAULTS
    parser = argparse.ArgumentParser(
        prog="agentbus",
        description="Observability and middleware toolkit for AI agent executors.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run a fleet of real pydantic-ai agents offline and serve /metrics",
        description=(
            "Run a fleet of real pydantic-ai agents (FunctionModel, offline) through "
            "AgentExecutor on one EventBus with the standard handlers; a seeded share of "
            "runs fail or are slow. Prints progress and a summary, then serves /metrics "
            "until Ctrl-C (or --serve-for seconds)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--runs", type=_positive_int, default=d["runs"],
                      help="agent executions in total, delegated sub-agent runs included")
    demo.add_argument("--concurrency", type=_positive_int, default=d["concurrency"],
                      help="jobs running at once")
    demo.add_argument("--host", default=d["host"], help="address /metrics binds to")
    demo.add_argument("--port", type=_port, default=d["port"],
                      help="port of /metrics (0 picks a free one)")
    demo.add_argument("--serve-for", type=_seconds, default=None, metavar="SECONDS",
                      help="stop serving /metrics after this long (0: exit right after the "
                           "summary); default: until Ctrl-C")
    demo.add_argument("--traces", choices=_TRACES, default=None,
                      help="where spans go: console, a JSON-lines file, OTLP/HTTP "
                           "(OTEL_EXPORTER_OTLP_ENDPOINT), or nowhere; default: otlp when "
                           "an OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, else jsonl")
    demo.add_argument("--seed", type=_seed, default=None,
                      help="seed deciding which runs fail or are slow (default: random, "
                           "printed)")
    demo.add_argument("--summary-json", type=Path, default=None, metavar="PATH",
                      help="also write the summary as JSON here (once /metrics agrees with "
                           "it)")
    demo.add_argument("--jsonl-path", type=Path, default=d["jsonl_path"], metavar="PATH",
                      help="span file for --traces jsonl")
    demo.add_argument("--log-file", type=Path, default=d["log_file"], metavar="PATH",
                      help="structured JSON log file")

    dashboards = sub.add_parser("dashboards", help="Grafana dashboards")
    dsub = dashboards.add_subparsers(dest="dashboards_command", metavar="ACTION",
                                     required=True)
    export = dsub.add_parser("export", help="write dashboards, alert rules + tests, scrape config")
    export.add_argument("dir", type=Path, metavar="DIR", help="output directory")
    export.add_argument("--prefix", default="agentbus",
                        help="metric name prefix the dashboards query")
    export.add_argument("--job", default="agentbus", help="Prometheus job label to filter on")
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptions, run_demo

    options = DemoOptions(
        runs=args.runs,
        concurrency=args.concurrency,
        host=args.host,
        port=args.port,
        serve_for=args.serve_for,
        traces=default_traces() if args.traces is None else args.traces,
        seed=args.seed,
        summary_json=args.summary_json,
        jsonl_path=args.jsonl_path,
        log_file=args.log_file,
    )
    try:
        asyncio.run(run_demo(options))
    except OSError as exc:
        print(
            f"agentbus demo: cannot serve /metrics on {args.host}:{args.port}: {exc}; "
            "pick another --port (0 picks a free one)"
            if _is_bind_error(exc)
            else f"agentbus demo: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def _is_bind_error(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def _export_dashboards(args: argparse.Namespace) -> int:
    try:
        from exporters.dashboards import export_all
    except ImportError as exc:
        print(
            f"agentbus dashboards export: the dashboard exporter is not available ({exc}); "
            "install the 'dashboards' extra: pip install 'agentbus[dashboards]'",
            file=sys.stderr,
        )
        return 1
    try:
        paths: list[Any] = list(export_all(args.dir, metric_prefix=args.prefix, job=args.job))
    except (ValueError, OSError) as exc:
        print(f"agentbus dashboards export: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentbus`` command.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 failure (reported on stderr), 130 interrupted.

    Raises:
        SystemExit: bad usage (status 2, argparse's message naming the bad flag) or
            ``--help``.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _run_demo(args)
        return _export_dashboards(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
