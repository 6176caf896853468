"""Fully durable trades per second between agent PROCESSES over loopback gRPC.

    python -m bench.bench_trades [--seconds 10] [--warmup 3] [--consumers 4]
                                 [--trust-confirmations]

A trade is one batch going supplier QUEUED -> IN_TRANSIT (synced) -> consumer QUEUED
(synced) -> supplier DELIVERED (synced): it is counted when the supplier's DELIVERED is
durable (its ``batches_delivered`` counter). Every agent is a real ``fos-agent`` process
with its own LMDB WAL (sync=True) on a 1-replica coordinator cluster (the coordinator is
off the data path; it only sets up the flow). Stages run as fast as their WALs allow
(``--cycle-s 0``): the supplier is a source, the consumers are sinks.

Scenarios: one pair with group commit and multi-batch calls (the default design); one pair
with one batch per call; one pair with one synced transaction per protocol step and one
batch per call (``--no-group-commit``, the naive design); N consumers on one supplier.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.cli.launcher import LocalCluster, free_port

# fmt: off
FAST = ["--cycle-s", "0", "--workers", "32", "--output-cap", "512", "--prefetch", "256",
        "--inflight", "16", "--per-request", "16", "--long-poll-ms", "200"]
# One batch per RequestBatch call, many calls in flight: what multi-batch calls save.
SINGLE = ["--per-request", "1", "--inflight", "64"]
# fmt: on


@dataclass
class Result:
    name: str
    trades_per_s: float
    produced_per_s: float
    cpu_ms_per_trade: float = 0.0  # CPU of the scenario's agent processes (less load-bound)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def agent_argv(
    node: str,
    address: str,
    coordinators: list[str],
    data_dir: Path,
    produces: str,
    requires: str,
    extra: list[str],
) -> list[str]:
    script = Path(sys.executable).parent / "fos-agent"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fos_agent.cli"]
    argv = [
        *cmd,
        "--node-id",
        node,
        "--listen",
        address,
        "--coordinators",
        ",".join(coordinators),
        "--data-dir",
        str(data_dir),
        "--produces",
        produces,
        "--ready-file",
        str(data_dir) + ".ready",
        "--log-level",
        "WARNING",
        *FAST,
        *extra,
    ]
    return argv + (["--requires", requires] if requires else [])


def counters(address: str) -> dict[str, float]:
    with grpc.insecure_channel(address) as channel:
        reply = agent_pb2_grpc.AgentStub(channel).Stats(agent_pb2.StatsRequest(), timeout=10)
    return dict(reply.counters)


def run_scenario(
    name: str,
    base: Path,
    coordinators: list[str],
    consumers: int,
    extra: list[str],
    warmup: float,
    seconds: float,
) -> Result:
    item = f"{name}-item"
    nodes = {f"{name}-sup": (f"{item}:1", "")}
    for i in range(consumers):
        nodes[f"{name}-con{i}"] = (f"{name}-out{i}:1", f"{item}:1")
    addresses = {n: f"127.0.0.1:{free_port()}" for n in nodes}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for node, (produces, requires) in nodes.items():
            log = open(base / f"{node}.log", "wb")  # noqa: SIM115 - owned by the child
            procs.append(
                subprocess.Popen(
                    agent_argv(
                        node, addresses[node], coordinators, base / node, produces, requires, extra
                    ),
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            )
            log.close()
        deadline = time.monotonic() + 60
        while not all((base / f"{n}.ready").exists() for n in nodes):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{name}: agents did not start; see {base}/*.log")
            time.sleep(0.05)
        supplier = addresses[f"{name}-sup"]
        time.sleep(warmup)  # a benchmark window, not synchronisation
        pids = [p.pid for p in procs]
        c0, t0, cpu0 = counters(supplier), time.monotonic(), cpu_s(pids)
        time.sleep(seconds)
        c1, t1, cpu1 = counters(supplier), time.monotonic(), cpu_s(pids)
        elapsed = t1 - t0
        trades = c1["batches_delivered"] - c0["batches_delivered"]
        return Result(
            name,
            trades / elapsed,
            (c1["batches_produced"] - c0["batches_produced"]) / elapsed,
            (cpu1 - cpu0) * 1000 / max(trades, 1),
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_trades", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, WALs)")
    parser.add_argument("--trust-confirmations", action="store_true",
                        help="agents believe plaintext confirmations (no verifying offer)")
    args = parser.parse_args(argv)
    trust = ["--trust-confirmations"] if args.trust_confirmations else []
    base = Path(tempfile.mkdtemp(prefix="fos-bench-trades-"))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; "
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load avg {os.getloadavg()}"
    )
    try:
        with LocalCluster(1, base / "coord") as cluster:
            cluster.wait_for_leader(timeout=30)
            coordinators = cluster.grpc_addresses
            scenarios = [
                ("pair-group", 1, trust, "1 -> 1, group commit, <=16 batches per call"),
                ("pair-single", 1, [*SINGLE, *trust], "1 -> 1, group commit, 1 batch per call"),
                ("pair-naive", 1, [*SINGLE, "--no-group-commit", *trust],
                 "1 -> 1, one fsync per step, 1 batch per call"),
                (f"fanout{args.consumers}", args.consumers, trust,
                 f"1 -> {args.consumers} consumers, group commit, <=16 per call"),
            ]  # fmt: skip
            for name, consumers, extra, label in scenarios:
                result = run_scenario(
                    name, base, coordinators, consumers, extra, args.warmup, args.seconds
                )
                print(
                    f"{label:46s} {result.trades_per_s:7.0f} durable trades/s "
                    f"(supplier produced {result.produced_per_s:.0f}/s)",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
