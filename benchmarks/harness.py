"""Measurement machinery: probes, cases, groups and the interleaved round-robin runner.

A *case* is an ``async (n, probe) -> units`` function: it sets up what it needs (buses,
handlers, pre-built events), wraps exactly the measured section in ``with probe:``, and
returns how many units (events, runs) that section processed. Every case of every group runs
once per *round*; rounds repeat ``repeats`` times and the order of cases is shuffled
(seeded) from round to round, so slow drift of the machine (other processes on the two
shared cores) and the after-effects of one case on the next (a span exporter thread
shutting down, a heap grown by a peer) spread over all cases instead of biasing one.
Between samples the garbage collector runs once; it stays enabled while timing (the bus
allocates like any real caller would).

Timing uses :func:`time.perf_counter_ns` (wall time: what the targets are judged on) and,
beside it, :func:`time.process_time_ns` (CPU time of the whole process, all threads): on a
machine shared with other work, wall time also counts the moments this process was not
scheduled, CPU time does not, so the CPU column shows how much of a difference is noise.
Memory is measured in a separate pass (one sample
per case, after the timed rounds) with :mod:`tracemalloc`: the peak of Python allocations
inside the probe window above what was allocated when it opened. tracemalloc slows Python
several times, which is why the timing rounds never run with it.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

__all__ = [
    "BenchConfig",
    "Case",
    "CaseResult",
    "Group",
    "GroupResult",
    "Probe",
    "run_groups",
]

Unit = Literal["event", "run"]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes of one benchmark run.

    Attributes:
        n: events per sample for the publish/deliver and construction cases.
        repeats: timed rounds (samples per case); the report gives their median.
        runs: agent runs per round in each executor case (split into alternating samples,
            see ``Group.samples_per_round``).
        pyee_async_n: cap on events per sample for pyee's ``AsyncIOEventEmitter`` (it
            creates one task per handler per event: ~20-200 µs each).
        bubus_n: cap on events per sample for bubus (milliseconds per event).
        history_prefill: events delivered before the "after history" scaling point.
        other_subs: the numbers of subscriptions to other event types in the scaling group.
        memory_events: events published to the slow handler in the memory scenario.
        memory_peer_events: events for pyee's async emitter in the memory scenario (it
            keeps every event pending, so memory grows with it; 1M would take gigabytes).
        measure_memory: run the tracemalloc pass.
    """

    n: int = 100_000
    repeats: int = 5
    runs: int = 200
    pyee_async_n: int = 10_000
    bubus_n: int = 50
    history_prefill: int = 1_000_000
    other_subs: tuple[int, ...] = (1, 10, 100, 1_000)
    memory_events: int = 1_000_000
    memory_peer_events: int = 100_000
    measure_memory: bool = True

    @classmethod
    def quick(cls) -> BenchConfig:
        """Smaller sizes for a run of a minute or so (``--quick``)."""
        return cls(
            n=20_000,
            repeats=3,
            runs=50,
            pyee_async_n=2_000,
            bubus_n=20,
            history_prefill=100_000,
            memory_events=100_000,
            memory_peer_events=20_000,
        )

    @classmethod
    def tiny(cls) -> BenchConfig:
        """Just enough to exercise every code path (the test suite's smoke run)."""
        return cls(
            n=200,
            repeats=2,
            runs=2,
            pyee_async_n=50,
            bubus_n=3,
            history_prefill=1_000,
            other_subs=(1, 10),
            memory_events=2_000,
            memory_peer_events=500,
        )


class Probe:
    """Wraps the measured section of one sample: ``with probe: ...``.

    In timing mode it records wall nanoseconds; in memory mode (``tracemalloc`` running) it
    records the peak traced bytes above the level at entry. Enter it at most once per sample.
    """

    __slots__ = ("_c0", "_mem0", "_t0", "cpu_ns", "elapsed_ns", "memory", "peak_bytes")

    def __init__(self, *, memory: bool = False) -> None:
        self.memory = memory
        self.elapsed_ns = 0
        self.cpu_ns = 0
        self.peak_bytes = 0
        self._t0 = 0
        self._c0 = 0
        self._mem0 = 0

    def __enter__(self) -> Probe:
        if self.memory:
            tracemalloc.reset_peak()
            self._mem0 = tracemalloc.get_traced_memory()[0]
        self._c0 = time.process_time_ns()
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.elapsed_ns = time.perf_counter_ns() - self._t0
        self.cpu_ns = time.process_time_ns() - self._c0
        if self.memory:
            self.peak_bytes = max(0, tracemalloc.get_traced_memory()[1] - self._mem0)


CaseFn = Callable[[int, Probe], Awaitable[int]]
"""``async (n, probe) -> units processed inside the probe window``."""


@dataclass(frozen=True, slots=True)
class Case:
    """One measured path.

    Attributes:
        key: stable id within its group (targets refer to ``group.key/case.key``).
        label: what the table shows.
        fn: the :data:`CaseFn`.
        size: units per sample, from the config (default ``config.n``).
        note: a footnote for the table (what is included, caps).
    """

    key: str
    label: str
    fn: CaseFn
    size: Callable[[BenchConfig], int] = lambda cfg: cfg.n
    note: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    """Cases compared side by side in one table.

    Attributes:
        key: stable id, e.g. ``"async-1"``.
        title: table title.
        unit: what one unit is (``"event"`` or ``"run"``).
        cases: the cases, in table order.
        floor: key of the case giving the lower bound (plain Python), or ``None``.
        reference: key of the case ratios are quoted against (the target's reference).
        samples_per_round: samples each case takes per round, the group's cases alternating
            (``a b c a b c ...``): finer interleaving for slow, noisy cases whose size is
            divided accordingly (the executor runs).
    """

    key: str
    title: str
    unit: Unit
    cases: Sequence[Case]
    floor: str | None = None
    reference: str | None = None
    samples_per_round: int = 1


@dataclass(slots=True)
class CaseResult:
    """Samples and summary of one case (nanoseconds per unit): wall and CPU time."""

    group: str
    key: str
    label: str
    note: str
    n: int
    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def cpu_median(self) -> float:
        """Median CPU ns per unit over the samples."""
        return statistics.median(self.cpu_samples)

    @property
    def median(self) -> float:
        """Median ns per unit over the samples."""
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        """Fastest sample, ns per unit."""
        return min(self.samples)

    @property
    def max(self) -> float:
        """Slowest sample, ns per unit."""
        return max(self.samples)


@dataclass(slots=True)
class GroupResult:
    """Results of one group, with the ratios of each case to its floor and reference."""

    group: Group
    cases: list[CaseResult]

    def case(self, key: str) -> CaseResult:
        """The result of case ``key``.

        Raises:
            KeyError: no such case in this group.
        """
        for c in self.cases:
            if c.key == key:
                return c
        raise KeyError(f"no case {key!r} in group {self.group.key!r}")

    def ratio(self, key: str, to: str | None) -> float | None:
        """Median of ``key`` divided by the median of ``to`` (``None`` if ``to`` is)."""
        if to is None:
            return None
        return self.case(key).median / self.case(to).median

    def cpu_ratio(self, key: str, to: str | None) -> float | None:
        """Like :meth:`ratio`, on CPU-time medians."""
        if to is None:
            return None
        return self.case(key).cpu_median / max(self.case(to).cpu_median, 1e-9)


async def _sample(case: Case, n: int, *, memory: bool) -> tuple[float, float, int]:
    gc.collect()
    probe = Probe(memory=memory)
    units = await case.fn(n, probe)
    if units <= 0:
        raise RuntimeError(f"case {case.key!r} processed no units")
    if probe.elapsed_ns <= 0:
        raise RuntimeError(f"case {case.key!r} never entered its probe")
    return probe.elapsed_ns / units, probe.cpu_ns / units, probe.peak_bytes


async def run_groups(
    groups: Sequence[Group],
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[GroupResult]:
    """Run every case of every group, interleaved, ``config.repeats`` rounds.

    Each round runs all cases (of all groups; a group's cases ``samples_per_round`` times
    over) in a new random order (fixed seed), so no case always follows the same neighbour.
    Then, if ``config.measure_memory``, one more pass under ``tracemalloc`` fills
    :attr:`CaseResult.peak_bytes`. Must be awaited on a running event loop; cases share it.

    Returns:
        One :class:`GroupResult` per group, in order.
    """
    flat = [(g, c) for g in groups for _ in range(g.samples_per_round) for c in g.cases]
    results = {
        (g.key, c.key): CaseResult(g.key, c.key, c.label, c.note, c.size(config))
        for g, c in flat
    }
    rng = random.Random(6)  # fixed seed: the same orders on every run
    for r in range(config.repeats):
        if progress is not None:
            progress(f"round {r + 1}/{config.repeats}")
        order = list(flat)
        rng.shuffle(order)
        for g, c in order:
            res = results[(g.key, c.key)]
            ns, cpu, _ = await _sample(c, res.n, memory=False)
            res.samples.append(ns)
            res.cpu_samples.append(cpu)
    if config.measure_memory:
        if progress is not None:
            progress("memory pass (tracemalloc)")
        tracemalloc.start()
        try:
            for g, c in flat:
                res = results[(g.key, c.key)]
                if res.peak_bytes is None:
                    _, _, res.peak_bytes = await _sample(c, res.n, memory=True)
        finally:
            tracemalloc.stop()
    return [GroupResult(g, [results[(g.key, c.key)] for c in g.cases]) for g in groups]
