"""Memory of the replicated state (and the planner's caches) at a catalog size.

    python -m bench.state_memory --sizes 10000,100000

Per size, in this process: the RSS after building a catalog of N nodes (``bench_planner``'s
``make_catalog``), after seeding a `CoordinatorState` with its full plan, and after applying
``--changes`` drain/undrain commands through ``apply`` with an incremental `Planner` (as a
replica does), which fills the bounded flow history (100 versions) and the remembered
request ids. Also the time of those applies (median, on this thread's CPU clock). RSS is
read from /proc/self/statm after a full garbage collection: the figures include the
allocator's slack, as a replica's would.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path

from bench.bench_planner import make_catalog
from fos_raft.model import NodeStatus
from fos_raft.planner.plan import Planner, plan
from fos_raft.state.commands import Drain, Undrain
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.entry import NodeEntry

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    gc.collect()
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


def measure(nodes: int, changes: int, seed: int) -> str:
    base = rss_mib()
    catalog = make_catalog(nodes, 5, seed)
    after_catalog = rss_mib()
    started = time.thread_time()
    flow = plan(catalog, {})
    full_ms = (time.thread_time() - started) * 1000
    entries = {n: NodeEntry(s, NodeStatus(), 1, 1) for n, s in catalog.items()}
    state = CoordinatorState(version=1, nodes=entries, flow=flow, history=((1, flow),))
    seeded = rss_mib()
    planner = Planner()
    suppliers = sorted({e.supplier for e in flow.edges})
    times = []
    for k in range(changes):
        node = suppliers[(k // 2 * 7919) % len(suppliers)]
        command = Drain(node) if k % 2 == 0 else Undrain(node)
        started = time.thread_time()
        state, outcome = apply(state, f"req-{k}", command,
                               lambda c, s, p, n: planner.after_change(c, s, p, n))
        times.append((time.thread_time() - started) * 1000)
        assert outcome.error is None
    full = rss_mib()
    edges = len(state.flow.edges)
    return (f"{nodes:>7} nodes {edges:>7} edges: catalog {after_catalog - base:7.1f} MiB, "
            f"state with one flow {seeded - after_catalog:7.1f} MiB, after {changes} changes "
            f"(history {len(state.history)}, planner caches) {full - after_catalog:7.1f} MiB; "
            f"full plan {full_ms:.0f} ms CPU; apply (incremental) median "
            f"{statistics.median(times[1:]):.1f} ms, first (full re-plan) {times[0]:.0f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--changes", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for size in (int(s) for s in args.sizes.split(",")):
        print(measure(size, args.changes, args.seed), flush=True)


if __name__ == "__main__":
    main()
