"""The one place bench computes percentiles and spreads, so every figure in RESULTS.md and
every fos-sim report means the same thing by "p50" or "p99".

Percentiles are NEAREST-RANK: the q-th percentile of n values is the value at rank
ceil(q/100 * n) of the sorted values (rank 1 for q = 0), always one of the values, never
interpolated: the smallest value with at least q % of the values at or below it.

Pure: no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``, or None for no values."""
    data = sorted(values)
    if not data:
        return None
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in 0..100, got {q}")
    # 1e-9: q/100*n is a float; 99/100*100 must give rank 99, not 100.
    rank = max(1, min(len(data), math.ceil(q / 100.0 * len(data) - 1e-9)))
    return data[rank - 1]


def sample_percentile(values: Iterable[float], q: float) -> float:
    """`percentile` of measured samples, which a benchmark always has (ValueError if none)."""
    value = percentile(values, q)
    if value is None:
        raise ValueError("percentile of no samples")
    return value


@dataclass(frozen=True, slots=True)
class Spread:
    min: float
    max: float
    mean: float
    median: float
    std: float  # population standard deviation


def spread(values: Iterable[float]) -> Spread | None:
    """min, max, mean, median (the mean of the middle two for an even count) and population
    standard deviation, or None for no values."""
    data = list(values)
    if not data:
        return None
    return Spread(
        min(data),
        max(data),
        statistics.fmean(data),
        statistics.median(data),
        statistics.pstdev(data),
    )
