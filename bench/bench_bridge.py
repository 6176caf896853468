"""What the agent's private loop thread costs a caller (issue 13).

    python -m bench.bench_bridge [--emits N]

A source stage registered with a one-replica coordinator calls ``emit()`` N times (each a
durable step: one synced WAL commit), serially, three ways:
- ``Agent(private_loop=False)``: on the caller's loop (no bridge);
- ``Agent`` (default): every call crosses to the agent's own loop thread and back;
- ``SyncAgent``: the same from synchronous code (a blocking ``.result()`` per call).
Printed: emits/s and the median and p99 latency of one emit, per way.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from fos_agent import Agent, AgentSettings, ItemReq, SyncAgent
from fos_raft.cli.launcher import LocalCluster


def _summary(way: str, lat: list[float], total: float) -> str:
    lat = sorted(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    median = statistics.median(lat)
    return (f"{way:28s} {len(lat) / total:8.0f} emits/s   median {median * 1e3:6.2f} ms"
            f"   p99 {p99 * 1e3:6.2f} ms")


async def async_emits(coords: list[str], base: Path, n: int, private: bool) -> str:
    settings = replace(AgentSettings(), private_loop=private)
    node = f"bb-{'thread' if private else 'inloop'}"
    lat: list[float] = []
    async with Agent(node, ItemReq("bb", 1), coordinators=coords, data_dir=base / node,
                     settings=settings) as agent:
        t0 = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await agent.emit()
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
    way = "Agent, private loop thread" if private else "Agent, caller's loop"
    return _summary(way, lat, total)


def sync_emits(coords: list[str], base: Path, n: int) -> str:
    lat: list[float] = []
    with SyncAgent("bb-sync", ItemReq("bb", 1), coordinators=coords,
                   data_dir=base / "bb-sync") as agent:
        t0 = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            agent.emit()
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
    return _summary("SyncAgent", lat, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--emits", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fos-bench-bridge-") as tmp:
        base = Path(tmp)
        cluster = LocalCluster(1, base / "coord")
        try:
            cluster.start()
            cluster.wait_for_leader(30)
            coords = cluster.grpc_addresses
            print(asyncio.run(async_emits(coords, base, args.emits, private=False)))
            print(asyncio.run(async_emits(coords, base, args.emits, private=True)))
            print(sync_emits(coords, base, args.emits))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
