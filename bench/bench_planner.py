"""Planner benchmark: full plan and single-change re-plan at 100 / 1,000 / 10,000 nodes.

    python -m bench.bench_planner [--sizes 100,1000,10000] [--per-type 5] [--reps 200]

Catalogs are the experiments' layered DAG (``bench.sim.topology.generate_topology``: N/T item
types, T alternative suppliers each, 1-3 inputs per type) with random capacities 1..4.

Rows (milliseconds: wall-clock median and p99, and thread CPU-time median, over repetitions):
* ``full cold``: ``plan(catalog, status)`` with no previous flow.
* ``full vs previous``: ``plan(catalog, status, previous)`` against the last flow's edges
  (reads the previous flow back; what a replica restored from a snapshot does once).
* ``kill`` / ``revive`` / ``add`` / ``remove``: ``Planner.after_change`` after one node is
  marked down, marked up again, a new supplier of a random item registers, and that node is
  decommissioned again (so the catalog returns to where it started every repetition).
Every incremental result of the first repetitions is checked against the full plan.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import random
import statistics
import time
from collections.abc import Callable

from bench.sim.topology import generate_topology
from bench.stats import sample_percentile
from fos_raft.model import NodeSpec, NodeStatus, Plan
from fos_raft.planner.plan import Planner, plan

DEAD = NodeStatus(alive=False, down_reason="bench")
CHECKED_REPS = 3


def make_catalog(nodes: int, per_type: int, seed: int) -> dict[str, NodeSpec]:
    topology = generate_topology(max(1, nodes // per_type), per_type, seed)
    rng = random.Random(seed)
    return {
        s.node_id: dataclasses.replace(s, capacity=rng.randint(1, 4)) for s in topology.specs
    }


def summary(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Wall-clock median and p99, CPU-time median, in milliseconds."""
    wall = [w * 1000 for w, _ in samples]
    return (statistics.median(wall), sample_percentile(wall, 99),
            statistics.median(c * 1000 for _, c in samples))


def timed(call: Callable[[], Plan]) -> tuple[tuple[float, float], Plan]:
    """Wall-clock and thread CPU seconds of ``call()`` (CPU time is what a loaded machine
    distorts least: time spent waiting for a core is not in it)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = call()
    return (time.perf_counter() - wall, time.thread_time() - cpu), result


def bench_size(
    nodes: int, per_type: int, reps: int, seed: int
) -> dict[str, list[tuple[float, float]]]:
    catalog = make_catalog(nodes, per_type, seed)
    status: dict[str, NodeStatus] = {}
    rng = random.Random(seed)
    full_reps = max(5, min(reps, 200_000 // len(catalog)))
    times: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("full cold", "full vs previous")
    }
    flow = plan(catalog, status)
    for _ in range(full_reps):
        times["full cold"].append(timed(lambda: plan(catalog, status))[0])
        times["full vs previous"].append(timed(lambda: plan(catalog, status, flow.edges))[0])

    planner = Planner()
    flow = planner.full(catalog, status)
    ids = sorted(catalog)
    for kind in ("kill", "revive", "add", "remove"):
        times[kind] = []
    for rep in range(reps):
        victim = rng.choice(ids)
        template = catalog[rng.choice(ids)]
        newcomer = f"bench-new-{rep}"
        steps: list[tuple[str, str, Callable[[], None]]] = [
            ("kill", victim, lambda v=victim: status.__setitem__(v, DEAD)),
            ("revive", victim, lambda v=victim: status.pop(v)),
            (
                "add",
                newcomer,
                lambda n=newcomer, t=template: catalog.__setitem__(
                    n, dataclasses.replace(t, node_id=n, capacity=rng.randint(1, 4))
                ),
            ),
            ("remove", newcomer, lambda n=newcomer: catalog.pop(n)),
        ]
        for kind, changed, apply in steps:
            apply()
            previous = flow
            elapsed, flow = timed(
                lambda c=changed, p=previous: planner.after_change(catalog, status, p, c)
            )
            times[kind].append(elapsed)
            if rep < CHECKED_REPS and flow != plan(catalog, status, previous):
                raise AssertionError(f"incremental {kind} of {changed} differs from full plan")
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--per-type", type=int, default=5)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"planner benchmark: per-type {args.per_type}, {args.reps} reps, seed {args.seed}, "
          f"{platform.machine()}, Python {platform.python_version()}")
    print(f"{'nodes':>6} {'edges':>7}  {'operation':<17} {'median ms':>10} {'p99 ms':>9} "
          f"{'cpu median ms':>14}")
    for size in (int(s) for s in args.sizes.split(",")):
        edges = len(plan(make_catalog(size, args.per_type, args.seed), {}).edges)
        for kind, samples in bench_size(size, args.per_type, args.reps, args.seed).items():
            median, p99, cpu = summary(samples)
            print(f"{size:>6} {edges:>7}  {kind:<17} {median:>10.3f} {p99:>9.3f} {cpu:>14.3f}")


if __name__ == "__main__":
    main()
