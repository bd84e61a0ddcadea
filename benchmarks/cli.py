"""Command line: ``python -m benchmarks [--quick] [--repeats R] [--n N] [--only G,...]``.

Also ``--profile CASE`` (``group/case``, e.g. ``async-10/agentbus``): run that one case under
pyinstrument and print where the time goes (the tool used to trim the hot path).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .cases import all_groups, close_shared, events
from .harness import BenchConfig, Group, Probe, run_groups
from .memory import memory_scenarios
from .report import Report, evaluate_targets, machine_info, print_report, render_markdown

__all__ = ["DEFAULT_OUT", "main", "run_all"]

DEFAULT_OUT = Path(__file__).with_name("RESULTS.md")


async def run_all(
    config: BenchConfig,
    *,
    only: Sequence[str] | None = None,
    memory: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run the suite (all groups or the ``only`` keys, then the memory scenario).

    Must be awaited on a running loop (``asyncio.run(run_all(cfg))``).

    Raises:
        ValueError: ``only`` names an unknown group.
    """
    info = machine_info()
    t0 = time.perf_counter()
    groups = all_groups(config)
    if only:
        known = {g.key for g in groups}
        unknown = sorted(set(only) - known)
        if unknown:
            raise ValueError(f"unknown group(s) {unknown}; known: {sorted(known)}")
        groups = [g for g in groups if g.key in only]
    mem = []
    if memory:
        if progress is not None:
            progress(f"memory scenario: {config.memory_events:,} events to a slow handler")
        mem = await memory_scenarios(config.memory_events, config.memory_peer_events)
    # The pre-built events (N of them, reused by every case) are fixture data: freeze them so
    # full garbage collections during the cases do not walk them (that would add noise that
    # grows with N and lands on whichever case happens to trigger the collection).
    events(config.n)
    gc.collect()
    gc.freeze()
    try:
        results = await run_groups(groups, config, progress=progress)
    finally:
        gc.unfreeze()
        await close_shared()
    return Report(
        config=config,
        machine=info,
        groups=results,
        memory=mem,
        outcomes=evaluate_targets(results, mem),
        seconds=time.perf_counter() - t0,
        load_after=os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0),
    )


def _find_case(config: BenchConfig, spec: str) -> tuple[Group, int]:
    gkey, _, ckey = spec.partition("/")
    for g in all_groups(config):
        if g.key == gkey:
            for i, c in enumerate(g.cases):
                if c.key == ckey:
                    return g, i
    raise SystemExit(f"--profile: no case {spec!r} (use group/case, e.g. async-10/agentbus)")


async def _profile(config: BenchConfig, spec: str) -> None:
    from pyinstrument import Profiler

    g, i = _find_case(config, spec)
    case = g.cases[i]
    n = case.size(config)
    await case.fn(n, Probe())  # warm-up
    profiler = Profiler(interval=0.0002, async_mode="enabled")
    profiler.start()
    await case.fn(n, Probe())
    profiler.stop()
    await close_shared()
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run, print the tables, write the results file. Returns 0."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    p.add_argument("--repeats", type=int, help="samples per case (default 5, quick 3)")
    p.add_argument("--n", type=int, help="events per sample (default 100000)")
    p.add_argument("--runs", type=int, help="agent runs per executor sample (default 200)")
    p.add_argument("--only", help="comma-separated group keys (e.g. async-1,executor)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the tracemalloc pass and the slow-handler scenario")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"results file (default {DEFAULT_OUT}); '-' to skip")
    p.add_argument("--profile", metavar="GROUP/CASE",
                   help="profile one case with pyinstrument instead of benchmarking")
    args = p.parse_args(argv)

    config = BenchConfig.quick() if args.quick else BenchConfig()
    changes: dict[str, object] = {}
    for name in ("repeats", "n", "runs"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                p.error(f"--{name} must be >= 1, got {value}")
            changes[name] = value
    if args.no_memory:
        changes["measure_memory"] = False
    config = dataclasses.replace(config, **changes)  # type: ignore[arg-type]

    if args.profile:
        asyncio.run(_profile(config, args.profile))
        return 0
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    try:
        report = asyncio.run(run_all(config, only=only, memory=not args.no_memory,
                                     progress=lambda msg: print(f"· {msg}", flush=True)))
    except ValueError as exc:
        p.error(str(exc))
    print_report(report)
    if str(args.out) != "-":
        args.out.write_text(render_markdown(report), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0
