"""Cost of one `fos_raft.state.core.apply` (the pure state transition a replica runs per write).

    python -m bench.bench_apply [--sizes 100,1000] [--reps 2000] [--per-type 5]

Each size builds a state of N registered nodes (the experiments' layered catalog, as in
``bench.bench_planner``), fills the request-id memory to its limit, then alternates Drain and
Undrain of one node, each under a fresh request id, as a replica does with the replicated
planner (``Planner.after_change``, incremental). Rows (microseconds per apply, thread CPU
time, median and p99 over repetitions): ``drain/undrain`` with the planner, and ``note``
(NoteRefuted: a command that changes no flow, so the request-id memory dominates).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from bench.bench_planner import make_catalog
from bench.stats import sample_percentile
from fos_raft.planner.plan import Planner
from fos_raft.state.commands import Command, Drain, NoteRefuted, Register, Undrain
from fos_raft.state.core import REQUEST_MEMORY, CoordinatorState, PlanFn, apply


def build(nodes: int, per_type: int, planner: PlanFn) -> CoordinatorState:
    state = CoordinatorState()
    for i, spec in enumerate(make_catalog(nodes, per_type, seed=1).values()):
        state, outcome = apply(state, f"reg-{i}", Register(spec), planner)
        outcome.raise_for_error()
    suspect = next(iter(state.nodes))
    for i in range(REQUEST_MEMORY):  # the memory full, as on a busy replica
        state, outcome = apply(state, f"fill-{i}", NoteRefuted(suspect), planner)
        outcome.raise_for_error()
    return state


def measure(
    state: CoordinatorState, commands: list[Command], reps: int, planner: PlanFn
) -> tuple[float, float]:
    samples = []
    for i in range(reps):
        command = commands[i % len(commands)]
        cpu = time.thread_time()
        state, outcome = apply(state, f"bench-{i}", command, planner)
        samples.append((time.thread_time() - cpu) * 1e6)
        outcome.raise_for_error()
    return statistics.median(samples), sample_percentile(samples, 99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--per-type", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# python {platform.python_version()}, {args.reps} applies per row, "
          "microseconds of thread CPU per apply")
    print(f"{'nodes':>6} {'command':<14} {'median':>8} {'p99':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        planner = Planner().after_change
        state = build(size, args.per_type, planner)
        node = sorted(state.nodes)[len(state.nodes) // 2]
        rows: dict[str, list[Command]] = {
            "drain/undrain": [Drain(node), Undrain(node)],
            "note": [NoteRefuted(node)],
        }
        for name, commands in rows.items():
            median, p99 = measure(state, commands, args.reps, planner)
            print(f"{size:>6} {name:<14} {median:>8.1f} {p99:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
