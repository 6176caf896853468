"""fos-coordinator beside etcd: the same workload, the same Python gRPC client, taking turns.

    python -m bench.bench_peer [--rounds 3] [--writes 300] [--reads 300] [--seconds 4]
        [--concurrency 16] [--kills 5] [--isolate 5] [--etcd-defaults] [--no-etcd]

Each round starts a fresh 3-member loopback cluster of each system in turn (fos, then etcd
when ``etcd`` is on PATH; otherwise it is skipped with a message) and measures:

* single-client write p50/p99 via the leader (fos: Drain/Undrain, a durable Raft commit;
  etcd: Put), and ``--concurrency`` clients' writes/s and p50/p99 (grpc.aio);
* fsyncs per write on the leader under that load (fos: its journal's counter) and the
  cluster's CPU per write (user+system of the 3 processes, /proc);
* linearizable and serializable read p50 via the leader (fos: ListNodes of 32 nodes;
  etcd: Range over 32 keys);
* idle RSS of the 3 processes;
* leader SIGKILL -> first write started after it and committed, ``--kills`` times, and
  leader SIGSTOP (hung, its sockets stay open) -> first write, then SIGCONT; for fos also
  leader isolation (``--isolate`` rounds, its Raft traffic cut by tests/faultproxy.py).

Figures are medians over rounds; the last table prints fos/etcd ratios beside the goals.
etcd runs with heartbeat 50 ms / election 250 ms unless ``--etcd-defaults``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bench import etcd_peer
from bench.stats import sample_percentile
from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

NODES = 32
GOALS = {  # metric: (fos/etcd bound, "<=" or ">=")
    "throughput": (1.0, ">="), "write_p50": (1.5, "<="), "lin_read_p50": (1.5, "<="),
    "idle_rss": (1.2, "<="),
}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class Fos:
    name = "fos"

    def __init__(self, tmp: Path) -> None:
        self.cluster = LocalCluster(3, tmp, metrics="127.0.0.1:0")

    def start(self) -> None:
        self.cluster.start()
        leader = self.cluster.wait_ready()
        for i in range(NODES):
            spec = pb.NodeSpec(node_id=f"bench-{i}", address=f"127.0.0.1:{20000 + i}",
                               produces=pb.ItemReq(item="part", qty=1))
            self.cluster.stub(leader).Register(pb.RegisterRequest(spec=spec), timeout=5)
        self.cluster.wait_converged()

    def stop(self) -> None:
        self.cluster.stop()

    def leader(self) -> int:
        return self.cluster.wait_for_leader(timeout=20)

    def pids(self) -> list[int]:
        return [p for i in range(3) if (p := self.cluster.pid(i)) is not None]

    def pid(self, i: int) -> int:
        pid = self.cluster.pid(i)
        assert pid is not None
        return pid

    def write(self, i: int, k: int, timeout: float = 5.0) -> None:
        call = self.cluster.stub(i).Drain if k % 2 == 0 else self.cluster.stub(i).Undrain
        call(pb.NodeRequest(node_id="bench-0"), timeout=timeout)

    def write_future(self, i: int, k: int, timeout: float) -> Any:
        stub = self.cluster.stub(i)
        call = stub.Drain if k % 2 == 0 else stub.Undrain
        return call.future(pb.NodeRequest(node_id="bench-0"), timeout=timeout)

    def read(self, i: int, linearizable: bool) -> None:
        mode = pb.LINEARIZABLE if linearizable else pb.SERIALIZABLE
        self.cluster.stub(i).ListNodes(pb.ListNodesRequest(consistency=mode), timeout=5)

    def aio_writer(self, channel: grpc.aio.Channel) -> Callable[[int, int], Any]:
        stub = pb_grpc.CoordinatorStub(channel)

        def call(client: int, k: int) -> Any:
            method = stub.Drain if k % 2 == 0 else stub.Undrain
            return method(pb.NodeRequest(node_id=f"bench-{1 + client % (NODES - 1)}"),
                          timeout=5.0)
        return call

    def address(self, i: int) -> str:
        return self.cluster.grpc_addresses[i]

    def fsyncs(self, i: int) -> float | None:
        import urllib.request

        lines = (self.cluster.base_dir / f"r{i}.out").read_text().splitlines()
        ready = [ln for ln in lines if '"metrics"' in ln]
        if not ready:
            return None
        import json

        address = json.loads(ready[-1])["metrics"]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("fos_journal_fsyncs"):
                    return float(line.split()[-1])
        return None

    def kill(self, i: int) -> None:
        self.cluster.kill(i)

    def restart(self, i: int) -> None:
        self.cluster.restart(i)
        self.cluster.wait_converged(timeout=30)


class Etcd:
    name = "etcd"

    def __init__(self, tmp: Path, tuned: bool) -> None:
        self.cluster = etcd_peer.EtcdCluster(tmp, tuned=tuned)

    def start(self) -> None:
        self.cluster.start()
        leader = self.leader()
        deadline = time.monotonic() + 30
        for i in range(NODES):
            while True:
                try:
                    self.cluster.stub(leader).put(etcd_peer.put_request(f"bench-{i}", "0"),
                                                  timeout=5)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def stop(self) -> None:
        self.cluster.stop()

    def leader(self) -> int:
        return self.cluster.leader_index()

    def pids(self) -> list[int]:
        return [p.pid for p in self.cluster.procs if p is not None and p.poll() is None]

    def pid(self, i: int) -> int:
        return self.cluster.pid(i)

    def write(self, i: int, k: int, timeout: float = 5.0) -> None:
        self.cluster.stub(i).put(etcd_peer.put_request("bench-0", str(k % 2)), timeout=timeout)

    def write_future(self, i: int, k: int, timeout: float) -> Any:
        return self.cluster.stub(i).put.future(
            etcd_peer.put_request("bench-0", str(k % 2)), timeout=timeout)

    def read(self, i: int, linearizable: bool) -> None:
        self.cluster.stub(i).range(etcd_peer.range_request("bench-", not linearizable),
                                   timeout=5)

    def aio_writer(self, channel: grpc.aio.Channel) -> Callable[[int, int], Any]:
        put = etcd_peer.EtcdStub(channel).put

        def call(client: int, k: int) -> Any:
            return put(etcd_peer.put_request(f"bench-{1 + client % (NODES - 1)}", str(k % 2)),
                       timeout=5.0)
        return call

    def address(self, i: int) -> str:
        return self.cluster.client_addresses[i]

    def fsyncs(self, i: int) -> float | None:
        return None  # etcd keeps no counter of its own: strace it (bench/RESULTS.md)

    def kill(self, i: int) -> None:
        self.cluster.kill(i)

    def restart(self, i: int) -> None:
        self.cluster.restart(i)
        self.cluster.leader_index()


System = Fos | Etcd


async def _throughput(system: System, address: str, clients: int,
                      seconds: float) -> tuple[int, float, list[float]]:
    keep_grpc_aio_running()
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = system.aio_writer(channel)
        stop_at = time.perf_counter() + seconds

        async def client(c: int) -> None:
            k = 0
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                await call(c, k)
                latencies.append(time.perf_counter() - started)
                k += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        return len(latencies), time.perf_counter() - started, latencies


def failover_round(system: System, how: str, proxy: Any = None) -> float:
    """Seconds from SIGKILL/SIGSTOP/isolation of the leader to the first completed write
    among those started after it. Writes are open-loop (one every 10 ms to the survivors,
    round robin, 2 s deadline each), so a write stuck on the old leader does not hold back
    the next one: the figure is the cluster's, not one client's deadline."""
    leader = system.leader()
    survivors = [i for i in range(3) if i != leader]
    done: list[tuple[float, float]] = []  # (started, completed) of successful writes
    lock = threading.Lock()
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                future = system.write_future(survivors[k % 2], k, timeout=2.0)
            except grpc.RpcError:
                future = None

            def finished(f: Any, started: float = started) -> None:
                if f.exception() is None:
                    with lock:
                        done.append((started, time.monotonic()))

            if future is not None:
                future.add_done_callback(finished)
            k += 1
            stop.wait(0.01)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(done) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = system.pid(leader)
    at = time.monotonic()
    if how == "kill":
        system.kill(leader)
    elif how == "isolate":
        proxy.isolate(system.cluster.raft_addresses[leader])  # type: ignore[union-attr]
    else:
        os.kill(pid, signal.SIGSTOP)

    def first_after() -> float | None:
        with lock:
            after = [c for s, c in done if s >= at]
        return min(after) if after else None

    try:
        while time.monotonic() < at + 20 and first_after() is None:
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join(10)
        if how == "stop":
            os.kill(pid, signal.SIGCONT)
        elif how == "isolate":
            proxy.heal()
    first = first_after()
    time.sleep(2.1)  # let the open-loop writes end before the next round
    if how == "kill":
        system.restart(leader)
    else:
        system.leader()
    return (first - at) if first is not None else float("inf")


def measure(system: System, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    time.sleep(1.0)  # settle start-up work before the idle figure
    out["idle_rss"] = rss_bytes(system.pids()) / 1e6
    leader = system.leader()
    samples = []
    for k in range(args.writes):
        started = time.perf_counter()
        system.write(leader, k)
        samples.append(time.perf_counter() - started)
    out["write_p50"] = sample_percentile(samples, 50) * 1e3
    out["write_p99"] = sample_percentile(samples, 99) * 1e3
    for name, lin in (("lin_read_p50", True), ("ser_read_p50", False)):
        reads = []
        for _ in range(args.reads):
            started = time.perf_counter()
            system.read(leader, lin)
            reads.append(time.perf_counter() - started)
        out[name] = sample_percentile(reads, 50) * 1e3
    pids = system.pids()
    fsyncs_before = system.fsyncs(leader)
    cpu_before = cpu_seconds(pids)
    done, elapsed, latencies = asyncio.run(
        _throughput(system, system.address(leader), args.concurrency, args.seconds))
    cpu = cpu_seconds(pids) - cpu_before
    fsyncs_after = system.fsyncs(leader)
    out["throughput"] = done / elapsed
    out["conc_p50"] = sample_percentile(latencies, 50) * 1e3
    out["conc_p99"] = sample_percentile(latencies, 99) * 1e3
    out["cpu_per_write"] = cpu / max(1, done) * 1e3
    if fsyncs_before is not None and fsyncs_after is not None:
        out["leader_fsyncs_per_write"] = (fsyncs_after - fsyncs_before) / max(1, done)
    for how in ("kill", "stop") if args.kills else ():
        rounds = [failover_round(system, how) for _ in range(args.kills)]
        out[f"failover_{how}_p50"] = sample_percentile(rounds, 50)
        if args.verbose:
            print(f"  {system.name} {how}: " + " ".join(f"{r:.3f}" for r in rounds))
    return out


def fos_isolation(args: argparse.Namespace) -> list[float]:
    """Leader isolation rounds on a fos cluster whose Raft traffic runs through the test
    suite's fault proxy (tests/faultproxy.py: a source checkout only)."""
    tests = Path(__file__).resolve().parent.parent / "tests"
    if not (tests / "faultproxy.py").exists():
        print("isolation: tests/faultproxy.py not found (not a source checkout), skipped")
        return []
    sys.path.insert(0, str(tests))
    from faultproxy import FaultProxy  # type: ignore[import-not-found]

    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-iso-") as tmp:
        fos = Fos(Path(tmp))
        cluster = fos.cluster
        cluster.raft_bind_addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        proxy = FaultProxy(dict(zip(cluster.raft_addresses, cluster.raft_bind_addresses,
                                    strict=True)))
        proxy.start()
        try:
            fos.start()
            for _ in range(args.isolate):
                rounds.append(failover_round(fos, "isolate", proxy))
                fos.cluster.wait_converged(timeout=30)
        finally:
            try:
                fos.stop()
            finally:
                proxy.stop()
    return rounds


UNITS = {
    "write_p50": "ms", "write_p99": "ms", "throughput": "writes/s", "conc_p50": "ms",
    "conc_p99": "ms", "cpu_per_write": "ms", "leader_fsyncs_per_write": "",
    "lin_read_p50": "ms", "ser_read_p50": "ms", "idle_rss": "MB",
    "failover_kill_p50": "s", "failover_stop_p50": "s", "failover_isolate_p50": "s",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kills", type=int, default=5, help="failover rounds per kind")
    parser.add_argument("--etcd-defaults", action="store_true",
                        help="etcd's default heartbeat/election timing (else 50/250 ms)")
    parser.add_argument("--no-etcd", action="store_true", help="measure fos only")
    parser.add_argument("--verbose", action="store_true", help="print every failover round")
    parser.add_argument("--isolate", type=int, default=5,
                        help="fos leader-isolation rounds (through tests/faultproxy.py; 0: none)")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}, "
          f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    names = ["fos"]
    if args.no_etcd:
        pass
    elif etcd_peer.installed() is None:
        print("etcd: not on PATH, skipped (Debian: apt-get install etcd-server)")
    else:
        names.append("etcd")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names:
            with tempfile.TemporaryDirectory(prefix=f"bench-peer-{name}-") as tmp:
                system: System = Fos(Path(tmp)) if name == "fos" else Etcd(
                    Path(tmp), tuned=not args.etcd_defaults)
                try:
                    system.start()
                    figures = measure(system, args)
                finally:
                    system.stop()
            results[name].append(figures)
            print(f"round {r + 1} {name}: " + ", ".join(
                f"{k}={v:.3g}" for k, v in figures.items()))
    isolation = fos_isolation(args) if args.isolate else []
    if isolation:
        results["fos"][-1]["failover_isolate_p50"] = sample_percentile(isolation, 50)
        print("fos leader isolation -> first write: " + " ".join(f"{r:.3f}" for r in isolation))
    print(f"\nmedian of {args.rounds} rounds")
    print(f"{'metric':26} " + " ".join(f"{n:>12}" for n in names)
          + ("  fos/etcd  goal" if "etcd" in names else ""))
    for metric, unit in UNITS.items():
        values = {n: statistics.median(f[metric] for f in results[n] if metric in f)
                  for n in names if any(metric in f for f in results[n])}
        if "fos" not in values:
            continue
        row = f"{metric + (' (' + unit + ')' if unit else ''):26} " + " ".join(
            f"{values[n]:>12.4g}" if n in values else f"{'-':>12}" for n in names)
        if "etcd" in values and values["etcd"] > 0:
            ratio = values["fos"] / values["etcd"]
            goal = GOALS.get(metric)
            mark = ""
            if goal is not None:
                met = ratio >= goal[0] if goal[1] == ">=" else ratio <= goal[0]
                mark = f"{goal[1]} {goal[0]}x {'met' if met else 'NOT met'}"
            row += f"  {ratio:7.2f}x  {mark}"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
