"""Hot-path cost of the operator metrics (issue 11).

    python -m bench.bench_metrics [--n N] [--calls C]

Figures printed (median of 5 rounds):
- agent: `Buckets.observe` (one WAL commit, cycle or peer RPC), `Metrics.receipt` with
  the reroute check, per call in ns;
- coordinator: prometheus_client `Histogram.observe` (one Raft commit), per call in ns;
- a real grpc.aio unary call over loopback (ClusterStatus-sized reply) served with and
  without the `RpcTimer` interceptor: us per call and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from fos_agent.core.metrics import Buckets, Metrics
from fos_raft.api.metrics import LatencyHistograms, RpcTimer
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running


def per_call_ns(fn: Callable[[int], None], n: int) -> float:
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        fn(n)
        rounds.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(rounds)


def buckets_loop(n: int) -> None:
    b = Buckets()
    for i in range(n):
        b.observe((i % 1000) * 1e-5)


def receipts_loop(n: int) -> None:
    m = Metrics("frame-1")
    m.suppliers_changed({"wood": ["saw-1", "saw-2"]})
    for i in range(n):
        m.receipt("saw-1", "wood", f"saw-1:{i}")


def histogram_loop(n: int) -> None:
    h = LatencyHistograms(CollectorRegistry()).commit
    for i in range(n):
        h.observe((i % 1000) * 1e-5)


async def grpc_us_per_call(calls: int, timed: bool) -> float:
    keep_grpc_aio_running()
    interceptors = (RpcTimer(LatencyHistograms(CollectorRegistry()).rpc),) if timed else ()
    server = grpc.aio.server(interceptors=interceptors)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            for _ in range(200):  # warm up
                await stub.Check(request)
            rounds = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(calls):
                    await stub.Check(request)
                rounds.append((time.perf_counter() - t0) / calls * 1e6)
            return statistics.median(rounds)
    finally:
        await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="observations per round")
    parser.add_argument("--calls", type=int, default=2_000, help="gRPC calls per round")
    args = parser.parse_args()
    print(f"agent Buckets.observe          {per_call_ns(buckets_loop, args.n):8.0f} ns")
    print(f"agent Metrics.receipt          {per_call_ns(receipts_loop, args.n):8.0f} ns")
    print(f"coordinator Histogram.observe  {per_call_ns(histogram_loop, args.n):8.0f} ns")
    plain = asyncio.run(grpc_us_per_call(args.calls, timed=False))
    timed = asyncio.run(grpc_us_per_call(args.calls, timed=True))
    print(f"grpc.aio unary call, plain     {plain:8.1f} us")
    print(f"grpc.aio unary call, RpcTimer  {timed:8.1f} us  (+{timed - plain:.1f} us)")


if __name__ == "__main__":
    main()
