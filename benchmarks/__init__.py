"""Side-by-side benchmarks of agentbus (issue 6): ``make bench`` / ``python -m benchmarks``.

Runs every case in one process on one event loop, interleaved round-robin over several
repeats: agentbus's publish→deliver paths against pyee, blinker, bubus and plain-asyncio
floors; event construction; the full executor path on a real pydantic-ai ``TestModel`` agent
against the bare agent and pydantic-ai's own instrumentation; scaling with other
subscriptions and with delivered history; memory under a slow handler. Prints the tables and
writes ``benchmarks/RESULTS.md``.

Not a test: the test suite only runs a tiny smoke version (``tests/test_benchmarks_smoke.py``)
and never asserts on timing. The peers are benchmark-only dependencies (the ``bench`` extra).
"""

from __future__ import annotations

from .cli import main, run_all
from .harness import BenchConfig, Case, CaseResult, Group, GroupResult, Probe
from .report import Report

__all__ = [
    "BenchConfig",
    "Case",
    "CaseResult",
    "Group",
    "GroupResult",
    "Probe",
    "Report",
    "main",
    "run_all",
]
