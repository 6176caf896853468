"""How fast health tells the truth: a 3-replica cluster loses its majority, then gets it back.

    python -m bench.bench_health [--rounds 5]

Each round (real fos-coordinator processes on loopback, default Raft timing): SIGKILL two
replicas, time until the survivor's grpc.health.v1 says NOT_SERVING; restart them, time
until the survivor says SERVING again, and until every replica does. Printed per round
and as medians. Polling every 10 ms bounds the resolution.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fos_raft.cli.launcher import LocalCluster

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(cluster: LocalCluster, i: int) -> int:
    try:
        return health_pb2_grpc.HealthStub(cluster.channel(i)).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1.0).status
    except grpc.RpcError:
        return -1


def seconds_until(cluster: LocalCluster, indices: list[int], wanted: int,
                  timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(status(cluster, i) == wanted for i in indices):
            return time.monotonic() - started
        time.sleep(0.01)
    raise TimeoutError(f"replicas {indices} not {wanted} within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_health", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lost, back, all_back = [], [], []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(3, Path(tmp)) as cluster:
        cluster.wait_ready()
        seconds_until(cluster, [0, 1, 2], SERVING)
        for n in range(args.rounds):
            survivor = n % 3
            others = [i for i in range(3) if i != survivor]
            for i in others:
                cluster.kill(i)
            lost.append(seconds_until(cluster, [survivor], NOT_SERVING))
            started = time.monotonic()
            for i in others:
                cluster.restart(i)
            restarted = time.monotonic() - started
            back.append(restarted + seconds_until(cluster, [survivor], SERVING))
            all_back.append(restarted + seconds_until(cluster, [0, 1, 2], SERVING))
            print(f"round {n + 1}: NOT_SERVING after {lost[-1]:.2f} s; SERVING again "
                  f"{back[-1]:.2f} s after the restarts began (all three: {all_back[-1]:.2f} s)"
                  f"; load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"median: quorum lost -> NOT_SERVING {statistics.median(lost):.2f} s, "
          f"restart -> survivor SERVING {statistics.median(back):.2f} s, "
          f"-> all SERVING {statistics.median(all_back):.2f} s")


if __name__ == "__main__":
    main()
