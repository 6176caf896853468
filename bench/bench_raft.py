"""Coordinator cluster benchmark: durable write latency and throughput, and leader failover.

    python -m bench.bench_raft [--writes 500] [--concurrency 16] [--seconds 5] [--kills 12]
        [--compare-password]

Real processes: a 3-replica LocalCluster on loopback (fsynced LMDB journals in a temp dir).

1. Sequential write latency (Drain/Undrain alternately, each a durable Raft commit: leader
   and one follower fsync before the reply), sent to the leader and to a follower.
2. Throughput: ``--concurrency`` clients writing for ``--seconds`` (grpc.aio).
3. Leader SIGKILL -> next committed write, ``--kills`` times: one client writes in a loop to
   the survivors; the time is from the kill to the completion of the first write started
   after it. After each round the killed replica restarts and every replica's state digest
   is compared (a divergence would show here). At the end the journals are compared entry by
   entry (Raft log matching) and replicas' stderr is searched for pysyncobj's
   "truncating already-applied log entries" message.

``--compare-password`` runs all of it twice, plaintext Raft then with a Raft password
(Fernet-authenticated frames), and prints the password/plaintext ratio of each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from bench.stats import sample_percentile
from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.journal import read_journal
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

NODES = 32


def _spec(i: int) -> pb.NodeSpec:
    return pb.NodeSpec(
        node_id=f"bench-{i}",
        address=f"127.0.0.1:{20000 + i}",
        produces=pb.ItemReq(item="part", qty=1),
    )


def _write(stub: pb_grpc.CoordinatorStub, node: str, drain: bool, timeout: float) -> int:
    request = pb.NodeRequest(node_id=node)
    call = stub.Drain if drain else stub.Undrain
    return call(request, timeout=timeout).flow_version


def sequential_latency(cluster: LocalCluster, target: int, writes: int) -> list[float]:
    stub = cluster.stub(target)
    samples = []
    for k in range(writes):
        started = time.perf_counter()
        _write(stub, "bench-0", k % 2 == 0, 5.0)
        samples.append(time.perf_counter() - started)
    return samples


async def _throughput(address: str, concurrency: int, seconds: float) -> tuple[int, float]:
    done = 0
    keep_grpc_aio_running()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        stop_at = time.perf_counter() + seconds

        async def client(i: int) -> None:
            nonlocal done
            node = f"bench-{1 + i % (NODES - 1)}"
            k = 0
            while time.perf_counter() < stop_at:
                call = stub.Drain if k % 2 == 0 else stub.Undrain
                await call(pb.NodeRequest(node_id=node), timeout=5.0)
                done += 1
                k += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        return done, time.perf_counter() - started


def leader_kill_round(cluster: LocalCluster) -> tuple[float, bool]:
    """Kill the leader under a write load; (seconds to next committed write, digests equal)."""
    leader = cluster.wait_for_leader(timeout=20)
    survivors = [i for i in range(cluster.n) if i != leader]
    results: list[tuple[float, float]] = []  # (started, finished) of successful writes
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set():
            target = survivors[k % len(survivors)]
            started = time.monotonic()
            try:
                _write(cluster.stub(target), "bench-0", k % 2 == 0, 2.0)
                results.append((started, time.monotonic()))
            except grpc.RpcError:
                pass
            k += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(results) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    killed_at = time.monotonic()
    cluster.kill(leader)
    while time.monotonic() < killed_at + 20:
        after = [done for started, done in results if started >= killed_at]
        if after:
            break
        time.sleep(0.005)
    stop.set()
    thread.join(10)
    after = [done for started, done in results if started >= killed_at]
    failover = (after[0] - killed_at) if after else float("inf")
    cluster.restart(leader)
    try:
        cluster.wait_converged(timeout=30)
        converged = True
    except TimeoutError:
        converged = False
    return failover, converged


def compare_journals(cluster: LocalCluster) -> tuple[int, int]:
    """(indices compared, mismatching indices) over entries present in every journal."""
    logs = []
    for i in range(cluster.n):
        entries, _, _ = read_journal(str(cluster.data_dir(i) / "raft.lmdb"))
        logs.append({idx: (cmd, term) for cmd, idx, term in entries})
    common = set.intersection(*(set(log) for log in logs))
    mismatches = sum(1 for idx in common if len({log[idx] for log in logs}) > 1)
    return len(common), mismatches


def run(args: argparse.Namespace, password_file: Path | None) -> dict[str, float]:
    """One cluster's figures (seconds, writes/s); ``password_file``: authenticated Raft."""
    figures: dict[str, float] = {}
    extra: dict[str, Any] = {} if password_file is None else {"raft_password_file": password_file}
    with (
        tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp,
        LocalCluster(3, Path(tmp), **extra) as cluster,
    ):
        leader = cluster.wait_ready()
        for i in range(NODES):
            # alive at once, as if each agent registered itself: the writes then re-plan
            cluster.stub(leader).Register(pb.RegisterRequest(spec=_spec(i), from_agent=True),
                                          timeout=5)
        follower = next(i for i in range(3) if i != leader)
        for name, target in (("leader", leader), ("follower", follower)):
            samples = sequential_latency(cluster, target, args.writes)
            figures[f"write_p50_{name}"] = sample_percentile(samples, 50)
            print(
                f"durable write latency via {name}: n={len(samples)} "
                f"p50={sample_percentile(samples, 50) * 1e3:.2f} ms "
                f"p99={sample_percentile(samples, 99) * 1e3:.2f} ms "
                f"mean={statistics.mean(samples) * 1e3:.2f} ms"
            )
        done, elapsed = asyncio.run(
            _throughput(cluster.grpc_addresses[leader], args.concurrency, args.seconds)
        )
        figures["throughput"] = done / elapsed
        print(
            f"throughput: {done / elapsed:.0f} writes/s "
            f"({done} writes, {args.concurrency} concurrent clients, {elapsed:.1f} s)"
        )
        failovers = []
        diverged = 0
        for _ in range(args.kills):
            seconds, converged = leader_kill_round(cluster)
            failovers.append(seconds)
            diverged += 0 if converged else 1
        if failovers:
            figures["failover_p50"] = sample_percentile(failovers, 50)
            print(
                f"leader SIGKILL -> next committed write over {len(failovers)} kills: "
                f"p50={sample_percentile(failovers, 50):.3f} s "
                f"p90={sample_percentile(failovers, 90):.3f} s "
                f"max={max(failovers):.3f} s min={min(failovers):.3f} s"
            )
        print(f"rounds whose replicas did not converge to one digest: {diverged}")
        cluster.stop()
        compared, mismatches = compare_journals(cluster)
        truncations = sum(
            (Path(tmp) / f"r{i}.err").read_text(errors="replace").count("truncating already")
            for i in range(3)
        )
        print(
            f"journals: {compared} common indices compared, {mismatches} mismatching; "
            f"pysyncobj 'truncating already-applied' messages: {truncations}"
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--compare-password", action="store_true",
                        help="run twice, plaintext then with --raft-password-file "
                        "(authenticated Raft), and print the ratios")
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    if not args.compare_password:
        run(args, None)
        return 0
    print("== plaintext Raft")
    plain = run(args, None)
    with tempfile.TemporaryDirectory(prefix="bench-raft-pw-") as tmp:
        password_file = Path(tmp) / "raft.pw"
        password_file.write_text(secrets.token_urlsafe(32) + "\n")  # >= 16 bytes, as required
        password_file.chmod(0o600)
        print("== password (authenticated Raft)")
        secure = run(args, password_file)
    for key in sorted(plain):
        if key in secure and plain[key] > 0:
            print(f"password/plaintext {key}: {secure[key] / plain[key]:.2f}x "
                  f"({plain[key]:.4g} -> {secure[key]:.4g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
