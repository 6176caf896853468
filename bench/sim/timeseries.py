"""A fos-sim run over time (pure): final products per interval against the bound, and the
kinds of the run's events, for ``--json`` and ``--plot``.

Inputs are what the run kept: the final producers' product count at every poll (read every
second; counts between polls are interpolated, so an interval's count is right within
about a poll's worth of products), the LP bound as a
step function of time (it changes when nodes die, restart, drain) and the event lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

INTERVALS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
MAX_INTERVALS = 60
MIN_INTERVAL_S = 1.0  # the final producers' polling period: finer intervals only alias

# Event kinds, by the first words the harness writes (bench.sim.run's event lines).
KILL, LEADER_KILL, RESTART, REPLICA_RESTART = "kill", "leader-kill", "restart", "replica-restart"
DEATH, FALSE_DEATH, REROUTE, DRAIN, UNDRAIN = "death", "false-death", "reroute", "drain", "undrain"
EXIT, INFO = "exit", "info"


def event_kind(text: str) -> str:
    """The kind of one of the harness's event lines (``info`` for the rest)."""
    if text.startswith("SIGKILL coordinator"):
        return LEADER_KILL
    if text.startswith("SIGKILL "):
        return KILL
    if text.startswith("restart coordinator"):
        return REPLICA_RESTART
    if text.startswith("restart "):
        return RESTART
    if text.startswith("coordinator declared "):
        return FALSE_DEATH if text.endswith("(FALSE)") else DEATH
    if " rerouted after " in text:
        return REROUTE
    if text.startswith("drain "):
        return DRAIN
    if text.startswith("undrain "):
        return UNDRAIN
    if text.startswith("agent ") and " exited on its own" in text:
        return EXIT
    return INFO


def interval_for(duration_s: float, cycle_s: float) -> float:
    """The smallest round interval of at least one cycle and one poll that splits the run
    into at most ``MAX_INTERVALS``."""
    need = max(duration_s / MAX_INTERVALS, cycle_s, MIN_INTERVAL_S)
    return next((i for i in INTERVALS if i >= need - 1e-9), math.ceil(need))


def count_at(series: Sequence[tuple[float, int]], t: float) -> int:
    """Products made by ``t``, estimated from the polls (in time order) around it: linear
    between the one before and the one after, rounded (a poll sees a product up to one
    period late; the step function put each poll's products in the interval after it).
    0 before the first poll, the last count after the last."""
    before: tuple[float, int] = (0.0, 0)
    for at, products in series:
        if at >= t - 1e-9:
            if at - before[0] <= 1e-9:
                return products
            share = (t - before[0]) / (at - before[0])
            return round(before[1] + share * (products - before[1]))
        before = (at, products)
    return before[1]


def bound_between(steps: Sequence[tuple[float, float]], lo: float, hi: float) -> float:
    """Products the bound (``steps``: (from time, products/s), in time order) permits over
    [lo, hi]."""
    total = 0.0
    for i, (start, rate) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else math.inf
        a, b = max(start, lo), min(end, hi)
        if b > a:
            total += rate * (b - a)
    return total


def build(series: Sequence[tuple[float, int]], steps: Sequence[tuple[float, float]],
          ended_s: float, cycle_s: float, fill_s: float) -> dict[str, Any]:
    """The run's time series: per interval the final products finished and the bound's
    products (from the pipeline fill on, as the ratio counts them); the polls' cumulative
    counts; the bound's steps (the events, with their `event_kind`, are the summary's)."""
    step = interval_for(ended_s, cycle_s)
    ordered = sorted(series)
    intervals = []
    lo = 0.0
    while lo < ended_s - 1e-9:
        hi = min(lo + step, ended_s)
        if ended_s - hi < step / 2:  # a last sliver joins this interval (no 1 ms spikes)
            hi = ended_s
        intervals.append({
            "from_s": round(lo, 3), "to_s": round(hi, 3),
            "finished": count_at(ordered, hi) - count_at(ordered, lo),
            "bound": round(bound_between(steps, max(lo, fill_s), hi), 3),
        })  # fmt: skip
        lo = hi
    return {
        "interval_s": step,
        "fill_s": fill_s,
        "intervals": intervals,
        "cumulative": [[round(t, 3), n] for t, n in ordered],
        "bound_steps": [[round(t, 3), rate] for t, rate in steps],
    }
