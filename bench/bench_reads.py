"""Read latency per consistency mode (issue 15): serializable vs linearizable.

    python -m bench.bench_reads [--reads 400] [--concurrency 16] [--seconds 4]

Real processes: a 3-replica LocalCluster on loopback with 32 registered nodes.

1. Sequential ListNodes latency, each mode, on the leader and on a follower, interleaved
   (serializable, linearizable, serializable, ...) so both see the same machine load.
2. Throughput with ``--concurrency`` clients (grpc.aio) per mode, and how many read
   barriers the linearizable reads shared (ClusterStatus commit index before/after:
   one log entry per barrier round).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import grpc

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.launcher import LocalCluster
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

NODES = 32
MODES = {"serializable": pb.SERIALIZABLE, "linearizable": pb.LINEARIZABLE}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential(cluster: LocalCluster, target: int, reads: int) -> dict[str, list[float]]:
    stub = cluster.stub(target)
    out: dict[str, list[float]] = {name: [] for name in MODES}
    for _ in range(reads):
        for name, mode in MODES.items():
            started = time.perf_counter()
            stub.ListNodes(pb.ListNodesRequest(consistency=mode), timeout=10)
            out[name].append(time.perf_counter() - started)
    return out


async def throughput(address: str, mode: int, clients: int, seconds: float) -> int:
    keep_grpc_aio_running()
    done = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        deadline = time.monotonic() + seconds

        async def client() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await stub.ListNodes(pb.ListNodesRequest(consistency=mode), timeout=10)
                done += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(3, Path(tmp)) as cluster:
        cluster.start()
        leader = cluster.wait_ready()
        for i in range(NODES):
            node = pb.NodeSpec(node_id=f"bench-{i}", address=f"127.0.0.1:{20000 + i}",
                               produces=pb.ItemReq(item="part", qty=1))
            cluster.stub(leader).Register(pb.RegisterRequest(spec=node, from_agent=True),
                                          timeout=10)  # alive at once, as its agent would
        cluster.wait_converged()
        follower = next(i for i in range(3) if i != leader)
        for where, target in (("leader", leader), ("follower", follower)):
            result = sequential(cluster, target, args.reads)
            for name, values in result.items():
                ms = [v * 1000 for v in values]
                print(f"sequential {where:8} {name:12} n={len(ms)} p50 {_pct(ms, 0.5):.2f} ms "
                      f"p90 {_pct(ms, 0.9):.2f} ms p99 {_pct(ms, 0.99):.2f} ms")
        for where, target in (("leader", leader), ("follower", follower)):
            for name, mode in MODES.items():
                before = cluster.status(leader).commit_index
                n = asyncio.run(throughput(cluster.grpc_addresses[target], mode,
                                           args.concurrency, args.seconds))
                entries = cluster.status(leader).commit_index - before
                print(f"throughput {where:8} {name:12} {args.concurrency} clients: "
                      f"{n / args.seconds:.0f} reads/s; log entries (barriers) {entries}")


if __name__ == "__main__":
    main()
