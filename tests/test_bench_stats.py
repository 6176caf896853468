"""bench.stats: the one percentile rule (nearest rank) of every bench figure; and a smoke
run of bench.bench_protocol, which reports with it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import percentile, sample_percentile, spread

SAMPLES = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200)
QS = st.floats(0.0, 100.0)


def test_known_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([5.0, 1.0, 3.0, 2.0], 50) == 2.0  # rank ceil(2.0) = 2, no interpolation
    assert percentile([3.0], 99) == 3.0


def test_no_values() -> None:
    assert percentile([], 50) is None
    assert spread([]) is None
    with pytest.raises(ValueError, match="no samples"):
        sample_percentile([], 50)


def test_q_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match=r"in 0\.\.100"):
        percentile([1.0], 101)


@given(SAMPLES, QS)
def test_nearest_rank_definition(values: list[float], q: float) -> None:
    """The smallest value with at least q % of the values at or below it."""
    p = sample_percentile(values, q)
    assert p in values
    n = len(values)
    at_or_below = sum(v <= p for v in values)
    below = sum(v < p for v in values)
    assert at_or_below >= math.ceil(q / 100 * n - 1e-9)
    assert below < max(1, math.ceil(q / 100 * n - 1e-9))


@given(SAMPLES, QS, QS)
def test_monotone_in_q(values: list[float], q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    assert sample_percentile(values, lo) <= sample_percentile(values, hi)


@given(SAMPLES)
def test_spread_brackets_the_percentiles(values: list[float]) -> None:
    s = spread(values)
    assert s is not None
    assert s.min == percentile(values, 0) and s.max == percentile(values, 100)
    assert s.min <= s.median <= s.max and s.std >= 0


def test_protocol_benchmark_trades_end_to_end() -> None:
    """bench_protocol's trade loop runs (it asserts each message on the way) and the write
    check of the WAL accepts every group it makes."""
    from bench.bench_protocol import run_trades

    assert run_trades(50, check=True) > 0
