"""WAL benchmark: synced commits, group commit, and durable in-process trades (no gRPC).

    python -m bench.bench_wal [--steps N] [--dir DIR]

Figures printed:
- one synced commit per step (a cycle's output QUEUED), serially: steps/s;
- the same steps from W concurrent writers through GroupCommitter: steps/s and steps per
  synced commit;
- durable trades between a supplier WAL and a consumer WAL in one process (request ->
  IN_TRANSIT, accept (immediate arrival) -> QUEUED, confirmation -> DELIVERED: 3 synced
  steps per trade), with K concurrent traders, serial vs group commit. This is the WAL's
  ceiling for the trades/s goal of issue 5; bench_trades measures it over real gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import Effects, Event, FlowChanged, NewRequest, Produce
from fos_agent.storage.group_commit import GroupCommitter
from fos_agent.storage.wal import Wal
from fos_raft.model import ItemReq

WOOD = ItemReq("wood", 1)


def serial_steps(base: Path, steps: int) -> float:
    with Wal.open(base / "serial", "S") as wal:
        node, _ = Node.recover(NodeConfig("S", WOOD), wal.load())
        t0 = time.perf_counter()
        for _ in range(steps):
            wal.commit(node.handle(Produce()).writes)
        return steps / (time.perf_counter() - t0)


async def grouped_steps(base: Path, steps: int, writers: int) -> tuple[float, float]:
    with Wal.open(base / f"group{writers}", "S") as wal:
        node, _ = Node.recover(NodeConfig("S", WOOD), wal.load())
        committer = GroupCommitter(wal)

        async def writer(n: int) -> None:
            for _ in range(n):
                await committer.commit(node.handle(Produce()).writes)

        before = wal.stats.commits
        t0 = time.perf_counter()
        await asyncio.gather(*(writer(steps // writers) for _ in range(writers)))
        elapsed = time.perf_counter() - t0
        done = steps // writers * writers
        return done / elapsed, done / max(1, wal.stats.commits - before)


async def trades(base: Path, count: int, traders: int, group: bool) -> float:
    tag = f"trade-{'g' if group else 's'}{traders}"
    s_wal, c_wal = Wal.open(base / tag / "S", "S"), Wal.open(base / tag / "C", "C")
    try:
        s, _ = Node.recover(NodeConfig("S", WOOD), s_wal.load())
        c, _ = Node.recover(NodeConfig("C", ItemReq("frame", 1), (WOOD,), True), c_wal.load())
        s.handle(FlowChanged(1, frozenset({"C"})))
        s_wal.commit_groups([s.handle(Produce()).writes for _ in range(count)])
        lock = asyncio.Lock()
        committers = {"S": GroupCommitter(s_wal), "C": GroupCommitter(c_wal)}
        wals = {"S": s_wal, "C": c_wal}
        nodes = {"S": s, "C": c}

        async def step(n: str, event: Event) -> Effects:
            effects = nodes[n].handle(event)
            if group:
                await committers[n].commit(effects.writes)
            else:  # the naive design: one synced transaction at a time
                async with lock:
                    await asyncio.get_running_loop().run_in_executor(
                        wals[n].executor, wals[n].commit, effects.writes)
            return effects

        async def trader(n: int) -> None:
            for _ in range(n):
                (req,) = (await step("C", NewRequest("S", "wood"))).messages
                sent = (await step("S", req)).reply
                (confirm,) = (await step("C", sent)).messages  # type: ignore[arg-type]
                await step("S", confirm)

        t0 = time.perf_counter()
        await asyncio.gather(*(trader(count // traders) for _ in range(traders)))
        return count // traders * traders / (time.perf_counter() - t0)
    finally:
        s_wal.close()
        c_wal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the WALs (default: a temp dir; use a real disk)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        print(f"serial synced steps: {serial_steps(base, args.steps // 2):,.0f}/s")
        for writers in (8, 64):
            rate, per_commit = asyncio.run(grouped_steps(base, args.steps * 4, writers))
            print(f"group commit, {writers} writers: {rate:,.0f} steps/s, "
                  f"{per_commit:.1f} steps per synced commit")
        for traders in (1, 16, 64):
            for group in (False, True):
                rate = asyncio.run(trades(base, args.steps if group else args.steps // 4,
                                          traders, group))
                kind = "group commit" if group else "serial commits"
                print(f"in-process durable trades, {traders} traders, {kind}: {rate:,.0f}/s")


if __name__ == "__main__":
    main()
