"""Summary statistics shared by MetricsCollector and EventStatistics (private)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "summarize"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``0 <= q <= 100``) of ascending ``sorted_values``, by linear
    interpolation between closest ranks (NumPy's default ``"linear"`` method).

    Raises:
        ValueError: ``sorted_values`` is empty or ``q`` is out of range.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q!r}")
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"avg", "min", "max", "count", "p50", "p95", "p99"}`` of non-empty ``values``."""
    ordered = sorted(values)
    return {
        "avg": sum(ordered) / len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "count": len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
    }
