"""Targets, the machine description, the console tables and ``RESULTS.md``.

Every target is a ratio measured in the same run (see issue 6). A missed target is reported
with how far it is from the limit and a reason computed from the other cases of the run
(e.g. the executor's overhead split by handler), not a canned excuse.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from .harness import BenchConfig, CaseResult, GroupResult
from .memory import MemoryResult

__all__ = [
    "MachineInfo",
    "Outcome",
    "Report",
    "evaluate_targets",
    "machine_info",
    "print_report",
    "render_markdown",
    "summary_table",
]

_PACKAGES = (
    "agentbus",
    "pydantic",
    "pydantic-ai-slim",
    "opentelemetry-sdk",
    "prometheus-client",
    "structlog",
    "pyee",
    "blinker",
    "bubus",
)


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """Where and when the run happened."""

    date: str
    cpu_model: str
    cores: int
    python: str
    platform: str
    versions: dict[str, str]
    load_before: tuple[float, float, float]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> MachineInfo:
    """Describe this machine, interpreter and library versions (call before the run)."""
    return MachineInfo(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 0,
        python=platform.python_version(),
        platform=platform.platform(),
        versions={p: _version(p) for p in _PACKAGES},
        load_before=os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """A target's verdict.

    Attributes:
        target: what was asked, in words.
        measured: the measured figure, in words.
        met: whether the target holds.
        detail: by how much it is met or missed, and (when missed) why.
    """

    target: str
    measured: str
    met: bool
    detail: str


@dataclass(slots=True)
class Report:
    """Everything one run produced."""

    config: BenchConfig
    machine: MachineInfo
    groups: list[GroupResult]
    memory: list[MemoryResult]
    outcomes: list[Outcome]
    seconds: float
    load_after: tuple[float, float, float]


# ---------------------------------------------------------------------------- formatting
def fmt_ns(ns: float, unit: str) -> str:
    """``ns`` per unit as text: ns below 100 µs for events, µs for runs."""
    if unit == "run" or ns >= 100_000:
        return f"{ns / 1000:,.1f} µs"
    return f"{ns:,.0f} ns"


def fmt_bytes(n: int | None) -> str:
    """Bytes as KiB/MiB text; ``-`` when unknown."""
    if n is None:
        return "-"
    if abs(n) >= 1 << 20:
        return f"{n / (1 << 20):,.1f} MiB"
    return f"{n / 1024:,.1f} KiB"


def fmt_ratio(r: float | None) -> str:
    """A ratio as ``1.23×``; ``-`` when there is none."""
    return "-" if r is None else f"{r:.2f}×"


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


# ---------------------------------------------------------------------------- targets
def _find(groups: Sequence[GroupResult], key: str) -> GroupResult | None:
    for g in groups:
        if g.group.key == key:
            return g
    return None


def _ratio_target(
    g: GroupResult, case: str, ref: str, limit: float, what: str, why: Callable[[], str]
) -> Outcome:
    r = g.ratio(case, ref)
    assert r is not None
    c, rc = g.case(case), g.case(ref)
    cpu = g.cpu_ratio(case, ref)
    measured = (
        f"{fmt_ratio(r)} ({fmt_ns(c.median, g.group.unit)} vs "
        f"{fmt_ns(rc.median, g.group.unit)}); CPU time {fmt_ratio(cpu)}; fastest samples "
        f"{fmt_ratio(c.min / rc.min)}"
    )
    if r <= limit:
        return Outcome(what, measured, True, f"met with {(1 - r / limit) * 100:.0f} % to spare")
    return Outcome(what, measured, False,
                   f"missed by {(r / limit - 1) * 100:.0f} % ({fmt_ratio(r)} > "
                   f"{fmt_ratio(limit)}). {why()}")


def _per_handler(g1: GroupResult | None, g10: GroupResult | None, key: str) -> float | None:
    if g1 is None or g10 is None:
        return None
    return (g10.case(key).median - g1.case(key).median) / 9


def _async_why(groups: Sequence[GroupResult]) -> Callable[[], str]:
    def why() -> str:
        g1, g10 = _find(groups, "async-1"), _find(groups, "async-10")
        bus = _per_handler(g1, g10, "agentbus")
        queue = _per_handler(g1, g10, "queue")
        if bus is None or queue is None:
            return ""
        return (
            f"Each extra handler costs agentbus {bus:,.0f} ns/event against {queue:,.0f} ns "
            f"for the single-consumer queue: the bus gives every subscription its own "
            f"mailbox and worker (a deque append on publish, a popleft and a coroutine call "
            f"in that worker), the price of handler isolation (a slow or failing handler "
            f"delays only itself) that one consumer calling all handlers in turn does not pay."
        )

    return why


def _sync_why(groups: Sequence[GroupResult], key: str) -> Callable[[], str]:
    def why() -> str:
        g = _find(groups, key)
        a = _find(groups, key.replace("sync", "async"))
        if g is None or a is None:
            return ""
        return (
            f"pyee calls plain functions inline in `emit`; `publish_sync` queues the event and "
            f"the async handlers run later in their worker tasks (the same delivery as "
            f"`await publish`: {fmt_ns(a.case('agentbus').median, 'event')} there), so it "
            f"pays a coroutine call per handler and a drain per chunk that an inline emitter "
            f"does not."
        )

    return why


def _flat_target(g: GroupResult, what: str) -> Outcome:
    ref = g.group.reference
    assert ref is not None
    base = g.case(ref)
    worst = max(g.cases, key=lambda c: abs(c.median / base.median - 1))
    r = worst.median / base.median
    cpu = worst.cpu_median / base.cpu_median
    measured = ", ".join(f"{c.label}: {fmt_ns(c.median, 'event')}" for c in g.cases) + (
        f" (fastest samples: {worst.label} {_pct(worst.min / base.min - 1)})")
    if abs(r - 1) <= 0.10:
        return Outcome(what, measured, True,
                       f"met: largest change {_pct(r - 1)} ({worst.label}; CPU time "
                       f"{_pct(cpu - 1)})")
    overlap = worst.min <= base.max and base.min <= worst.max
    reason = (
        f"On CPU time the same comparison is {_pct(cpu - 1)}. " + (
            "The sample ranges of the two cases overlap, so the difference is within this "
            "machine's noise; nothing in the publish path "
            "depends on this quantity (routes are cached per event type; history is a "
            "bounded deque)."
            if overlap else "The sample ranges do not overlap.")
    )
    if g.group.key == "history" and len(g.cases) >= 3:
        mid, last = g.cases[1], g.cases[-1]
        reason += (
            f" Between {mid.label.removeprefix('after ')} and "
            f"{last.label.removeprefix('after ')} the change is "
            f"{_pct(last.median / mid.median - 1)}: those two are long-lived buses, the "
            f"reference is a bus created for the sample, so the gap to the reference is "
            f"not a cost that grows with history (kept in a bounded deque; nothing else is "
            f"kept per event).")
    return Outcome(what, measured, False,
                   f"missed: {worst.label} is {_pct(r - 1)} vs the reference "
                   f"(limit ±10 %). {reason}")


def _executor_targets(g: GroupResult, inst: GroupResult | None) -> list[Outcome]:
    bare = g.case("bare").median
    full = g.case("execute-all").median
    pai = g.case("pydantic-ai-otel").median
    ours = full - bare
    theirs = pai - bare

    def split() -> str:
        parts = []
        if inst is not None:
            ref = inst.case("runner").median

            def cost(key: str, base: float) -> str:
                return fmt_ns(inst.case(key).median - base, "run")

            nobus = inst.case("execute-nobus").median
            busm = inst.case("execute-bus").median
            total = inst.case("execute-all").median - ref
            parts.append(
                f"Measured without the agent (instrumentation table): executor "
                f"{cost('execute-nobus', ref)}, bus {cost('execute-bus', nobus)}, Prometheus "
                f"handler {cost('execute-prometheus', busm)}, OTel handler "
                f"{cost('execute-otel', busm)}, logging handler "
                f"{cost('execute-logging', busm)}; all together {fmt_ns(total, 'run')} per "
                f"run = {_pct(total / bare)} of the bare agent run")
        adapter = g.case("execute-nobus").median - g.case("execute-plain").median
        parts.append(
            f"PydanticAIRunner's tool-timing capability (AgentbusCapability registered on the "
            f"agent; pydantic-ai copies its run context for every capability at every hook, "
            f"even for one that overrides nothing, so any capability has this floor) adds "
            f"{fmt_ns(adapter, 'run')} ({_pct(adapter / bare)}; `execute` through it vs with a "
            f"plain `agent.run` runner, a difference of two noisy medians)")
        return ". ".join(parts)

    out = []
    measured = (f"agentbus +{fmt_ns(ours, 'run')} ({_pct(ours / bare)}), pydantic-ai "
                f"instrumentation +{fmt_ns(theirs, 'run')} ({_pct(theirs / bare)})")
    what = "full executor instrumentation overhead < pydantic-ai's own instrumentation"
    if ours < theirs:
        out.append(Outcome(what, measured, True,
                           f"met: {ours / theirs:.2f}× pydantic-ai's overhead"))
    else:
        out.append(Outcome(what, measured, False,
                           f"missed by {fmt_ns(ours - theirs, 'run')} per run. {split()}."))
    what = "full executor instrumentation overhead < 5 % of a TestModel agent run"
    measured = f"{_pct(ours / bare)} ({fmt_ns(full, 'run')} vs {fmt_ns(bare, 'run')})"
    if ours / bare < 0.05:
        out.append(Outcome(what, measured, True, f"met ({split()})"))
    else:
        out.append(Outcome(what, measured, False,
                           f"missed by {(ours / bare - 0.05) * 100:.1f} points. {split()}. "
                           f"A TestModel run does no I/O ({fmt_ns(bare, 'run')} of pure "
                           f"Python here), so fixed per-run costs show as a percentage that "
                           f"a real model call (hundreds of ms) would make negligible."))
    return out


def evaluate_targets(groups: Sequence[GroupResult], memory: Sequence[MemoryResult]
                     ) -> list[Outcome]:
    """Check every target of issue 6 that the run measured."""
    out: list[Outcome] = []
    for k in (1, 10):
        g = _find(groups, f"async-{k}")
        if g is not None:
            out.append(_ratio_target(
                g, "agentbus", "queue", 1.5,
                f"async publish→deliver, {k} handler(s): ≤ 1.5× `asyncio.Queue`",
                _async_why(groups)))
    for k in (1, 10):
        g = _find(groups, f"sync-{k}")
        if g is not None:
            out.append(_ratio_target(
                g, "agentbus", "pyee", 1.0,
                f"`publish_sync`, {k} handler(s): no slower than pyee `emit`",
                _sync_why(groups, f"sync-{k}")))
    g = _find(groups, "other-subs")
    if g is not None:
        out.append(_flat_target(g, "cost per event flat (±10 %) from 1 to 1,000 other "
                                   "subscriptions"))
    g = _find(groups, "history")
    if g is not None:
        out.append(_flat_target(g, "cost per event flat (±10 %) as delivered events grow"))
    g = _find(groups, "executor")
    if g is not None:
        out.extend(_executor_targets(g, _find(groups, "instrumentation")))
    for m in memory:
        if m.key != "agentbus":
            continue
        measured = (f"{m.events:,} events: live blocks {m.blocks_at(0.25):,} at 25 % → "
                    f"{m.blocks_at(1.0):,} at the end; peak RSS growth "
                    f"{fmt_bytes(m.peak_rss)}; at most {m.max_pending:,} pending")
        what = "memory flat with 1,000,000 events to a slow handler (bounded by the queue)"
        if m.bounded:
            out.append(Outcome(what, measured, True, "met: no growth after the queue and "
                               "history filled"))
        else:
            out.append(Outcome(what, measured, False,
                               f"missed: {m.growth:,} blocks gained after the 25 % mark"))
    return out


# ---------------------------------------------------------------------------- output
def _row(g: GroupResult, c: CaseResult) -> list[str]:
    unit = g.group.unit
    return [
        c.label,
        f"{c.n:,}",
        fmt_ns(c.median, unit),
        f"{fmt_ns(c.min, unit)} – {fmt_ns(c.max, unit)}",
        fmt_ratio(g.ratio(c.key, g.group.floor)),
        fmt_ratio(g.ratio(c.key, g.group.reference)),
        fmt_ns(c.cpu_median, unit),
        fmt_ratio(g.cpu_ratio(c.key, g.group.reference)),
        fmt_bytes(c.peak_bytes),
    ]


_HEADERS = ["path", "N/sample", "median", "min – max", "× floor", "× ref", "CPU median",
            "CPU × ref", "peak mem"]


def print_report(report: Report, console: Console | None = None) -> None:
    """Print the tables and target verdicts to the terminal (rich)."""
    console = console or Console(width=max(shutil.get_terminal_size().columns, 150))
    for g in report.groups:
        t = Table(title=f"{g.group.title} (per {g.group.unit})", title_justify="left")
        for h in _HEADERS:
            t.add_column(h, justify="left" if h == "path" else "right")
        for c in g.cases:
            t.add_row(*_row(g, c))
        console.print(t)
    if report.memory:
        t = Table(title="memory: slow handler", title_justify="left")
        for h in ("path", "events", "seconds", "max pending", "live blocks 25 % → end",
                  "peak RSS growth", "bounded"):
            t.add_column(h, justify="left" if h == "path" else "right")
        for m in report.memory:
            t.add_row(m.label, f"{m.events:,}", f"{m.seconds:.1f}", f"{m.max_pending:,}",
                      f"{m.blocks_at(0.25):,} → {m.blocks_at(1.0):,}",
                      fmt_bytes(m.peak_rss), "yes" if m.bounded else "no")
        console.print(t)
    console.print("[bold]targets[/]")
    for o in report.outcomes:
        verdict = "[green]met[/]" if o.met else "[red]MISSED[/]"
        console.print(f"{verdict} {o.target}: {o.measured}\n    {o.detail}", soft_wrap=True)
    console.print(f"total {report.seconds:.0f} s")


def _md_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: bool = True
) -> list[str]:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(" --- " if i == 0 or not numeric else " ---: "
                            for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(esc(x) for x in r) + " |" for r in rows]
    return lines


def summary_table(report: Report) -> list[str]:
    """The headline table (README): each delivery path with 1 and 10 handlers side by side,
    ns/event and the ratio to the table's reference (``asyncio.Queue`` / pyee ``emit``)."""
    rows: list[list[str]] = []
    for kind in ("async", "sync"):
        g1, g10 = _find(report.groups, f"{kind}-1"), _find(report.groups, f"{kind}-10")
        if g1 is None or g10 is None:
            continue
        for c1 in g1.cases:
            c10 = g10.case(c1.key)
            rows.append([
                c1.label,
                f"{fmt_ns(c1.median, 'event')} "
                f"({fmt_ratio(g1.ratio(c1.key, g1.group.reference))})",
                f"{fmt_ns(c10.median, 'event')} "
                f"({fmt_ratio(g10.ratio(c10.key, g10.group.reference))})",
            ])
    ex = _find(report.groups, "executor")
    if ex is not None:
        for key in ("bare", "pydantic-ai-otel", "execute-all"):
            c = ex.case(key)
            rows.append([c.label + " (per run)",
                         f"{fmt_ns(c.median, 'run')} ({fmt_ratio(ex.ratio(key, 'bare'))})", ""])
    return _md_table(["path", "1 handler (× ref)", "10 handlers (× ref)"], rows)


def _verdict(o: Outcome) -> str:
    if o.met:
        return o.detail
    return "**MISSED** " + o.detail.removeprefix("missed").lstrip(": ")


def render_markdown(report: Report) -> str:
    """``RESULTS.md``: machine, versions, every table with ratios, target verdicts."""
    m = report.machine
    cfg = report.config
    out = [
        "# agentbus benchmarks: results",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. "
        "How the cases are built: `benchmarks/cases.py`, `benchmarks/executor.py`, "
        "`benchmarks/memory.py`.",
        "",
        "## Machine",
        "",
        f"- date: {m.date}",
        f"- CPU: {m.cpu_model}, {m.cores} cores (shared with other work: load average "
        f"{m.load_before[0]:.2f} before, {report.load_after[0]:.2f} after)",
        f"- Python {m.python} on {m.platform}",
        "- " + ", ".join(f"{k} {v}" for k, v in m.versions.items()),
        f"- sizes: N={cfg.n:,} events per sample, {cfg.repeats} rounds (every case once per "
        f"round, in a new seeded random order each round), {cfg.runs} agent runs per "
        f"executor case per round (in 4 samples), pyee async capped at "
        f"{cfg.pyee_async_n:,} and bubus at "
        f"{cfg.bubus_n:,} events per sample; total {report.seconds:.0f} s",
        "",
        "Figures are the median over the samples of (time of the sample / units in it); "
        "min – max are the fastest and slowest samples. `× floor` divides by the plain-Python "
        "floor of the same table, `× ref` by the table's reference (the target's baseline), "
        "both measured in this run. `peak mem` is the tracemalloc peak of Python allocations "
        "during one extra sample (not timed), above the level when it started. Every "
        "handler's body is `count += 1`. Where the machine is a virtual machine whose cores "
        "are shared with other work (as when these results were taken), a sample can run up "
        "to ~1.7× slower while the neighbours are busy, and CPU time grows with it (the time "
        "is lost below the guest), so samples can be bimodal; the fastest samples (min) show "
        "the undisturbed cost.",
        "",
        "## Summary",
        "",
        "Median per event (per run for the agent rows) and, in brackets, the ratio to the "
        "reference of the same table: `asyncio.Queue` for async delivery, pyee `emit` for "
        "sync delivery, the bare `agent.run` for the agent rows.",
        "",
        *summary_table(report),
        "",
        "## Targets",
        "",
    ]
    out += _md_table(
        ["target", "measured", "verdict"],
        [[o.target, o.measured, _verdict(o)] for o in report.outcomes],
        numeric=False,
    )
    for g in report.groups:
        out += ["", f"## {g.group.title} (per {g.group.unit})", ""]
        out += _md_table(_HEADERS, [_row(g, c) for c in g.cases])
        notes = [f"- {c.label}: {c.note}" for c in g.cases if c.note]
        if notes:
            out += ["", *notes]
    if report.memory:
        out += [
            "",
            "## Memory: slow handler",
            "",
            "One handler that yields to the loop on every event; a fresh `SystemEvent` per "
            "publish. Live blocks = `sys.getallocatedblocks()` above the start (Python "
            "objects alive); RSS growth = process resident memory above the start. pyee's "
            f"async emitter gets {cfg.memory_peer_events:,} events, not "
            f"{cfg.memory_events:,}: it keeps one pending task per event and grows with N.",
            "",
        ]
        out += _md_table(
            ["path", "events", "seconds", "max pending", "live blocks 25 % → end",
             "peak RSS growth", "bounded"],
            [[mr.label, f"{mr.events:,}", f"{mr.seconds:.1f}", f"{mr.max_pending:,}",
              f"{mr.blocks_at(0.25):,} → {mr.blocks_at(1.0):,}", fmt_bytes(mr.peak_rss),
              "yes" if mr.bounded else "no"] for mr in report.memory],
        )
    out.append("")
    return "\n".join(out)
