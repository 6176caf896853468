"""Watch-load benchmark: a real 3-replica cluster with thousands of WatchFlow streams.

    python -m bench.bench_watchers --watchers 1000,3000,10000 [--changes 40] [--per-process 500]

For each size N: a catalog of N nodes (the experiments' layered DAG, ``bench_planner``'s
``make_catalog``) seeds a new 3-replica cluster (``fos_raft.cli.launcher.LocalCluster``,
``--restore``); ``N / --per-process`` client processes (``bench.watch_clients``) open one
stream per node, spread over the replicas (stream i -> replica i mod 3, over several
connections each; a replica's redirect is followed). Then ``--changes`` writes, ``--gap``
seconds apart, cycle through: drain X, undrain X, ReportSuspect of Y (its address refuses
connections, so the probe fails and the leader commits a MarkDown), Rejoin Y.

The bench applies the same commands to its own copy of the state (the pure ``apply``) and
compares every node's neighbourhood before and after: the nodes whose view changed are the
*affected* watchers of that change. Printed per size:

* leader / follower CPU per change: ``/proc/PID/stat`` utime+stime of the replica processes
  over the change phase, minus their idle rate measured just before it, over the changes;
* commit -> last affected watcher notified, p50/p99 over changes, and over every (watcher,
  change) (``bench.stats`` nearest-rank). Measured from the moment the bench *sends* the
  write, so the figure includes the commit itself: an upper bound (a leader's watchers may
  be told before its reply reaches the bench, so the reply is no usable commit instant);
  the write's own latency is printed too;
* missed (an affected watcher with nothing new before the next write) and spurious
  (a message to a watcher whose view did not change) notifications;
* stream set-up rate (first stream opened -> last first message), memory per stream
  (replicas' RSS after set-up minus before, over N), leader changes (term and leader seen
  after every change), the client processes' own CPU (set-up, and per change).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.bench_planner import make_catalog
from bench.stats import sample_percentile
from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster
from fos_raft.model import NodeStatus, Plan
from fos_raft.planner.plan import Planner, plan
from fos_raft.state.commands import Command, Drain, MarkDown, MarkUp, Undrain
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.entry import NodeEntry
from fos_raft.state.snapshot import encode

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DEAD_ADDRESS = "127.0.0.1:9"  # discard port: refuses connections, so a probe fails fast


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def seed_state(nodes: int, seed: int) -> CoordinatorState:
    catalog = {n: dataclasses.replace(s, address=DEAD_ADDRESS)
               for n, s in make_catalog(nodes, 5, seed).items()}
    flow = plan(catalog, {})
    entries = {n: NodeEntry(spec, NodeStatus(), 1, 1) for n, spec in catalog.items()}
    return CoordinatorState(version=1, nodes=entries, flow=flow, history=((1, flow),))


def hood_keys(state: CoordinatorState) -> dict[str, tuple[Any, ...]]:
    """Every node's neighbourhood as plain data (what a WatchFlow reply carries but the
    version), computed here independently of the service's code."""
    out = {}
    members = state.flow.members
    for node_id, entry in state.nodes.items():
        edges = tuple(sorted(state.edges_of(node_id)))
        others = sorted({e.consumer if e.supplier == node_id else e.supplier for e in edges})
        hood = tuple((o, state.nodes[o].spec.address if o in state.nodes else "",
                      o in state.nodes and state.nodes[o].status.alive) for o in others)
        out[node_id] = (node_id in members, entry.status.alive, entry.status.drained,
                        entry.spec, edges, hood)
    return out


@dataclass
class Model:
    """The bench's own copy of the replicated state, advanced by the same commands."""

    state: CoordinatorState
    planner: Planner = field(default_factory=Planner)

    def step(self, command: Command) -> set[str]:
        before = hood_keys(self.state)
        self.state, outcome = apply(self.state, "", command, self._plan)
        assert outcome.error is None, outcome
        after = hood_keys(self.state)
        return {n for n in after if before.get(n) != after[n]}

    def _plan(self, catalog: Any, status: Any, previous: Plan, changed: str) -> Plan:
        return self.planner.after_change(catalog, status, previous, changed)


def pick_targets(state: CoordinatorState, count: int, seed: int) -> list[tuple[str, str]]:
    """(supplier, one of its consumers) pairs: changes that move someone's edges."""
    import random
    suppliers = sorted({(e.supplier, e.consumer) for e in state.flow.edges if e.rank == 0})
    return random.Random(seed).sample(suppliers, min(count, len(suppliers)))


def start_clients(cluster: LocalCluster, nodes_file: Path, total: int,
                  per_process: int, env: dict[str, str],
                  nice: int = 0) -> list[subprocess.Popen[str]]:
    procs = []
    for first in range(0, total, per_process):
        count = min(per_process, total - first)
        channels = max(2, -(-count // (len(cluster.grpc_addresses) * 60)))
        procs.append(subprocess.Popen(
            [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "-m",
             "bench.watch_clients", "--addresses",
             ",".join(cluster.grpc_addresses), "--nodes", str(nodes_file), "--first",
             str(first), "--count", str(count), "--channels", str(channels)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
    return procs


def read_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"client {proc.pid} ended (code {proc.poll()})")
    return dict(json.loads(line))


def terms(cluster: LocalCluster, leader: int) -> tuple[int, str]:
    """The leader's term and leader as it says (outside the measured window: a status
    computes the state digest, seconds at 10,000 nodes)."""
    try:
        st = cluster.status(leader, timeout=60.0)
    except grpc.RpcError:
        return 0, ""
    return int(st.term), st.leader


def leader_now(cluster: LocalCluster, ask: int) -> str:
    """The leader's Raft address as replica ``ask`` sees it. ListMembers, not ClusterStatus:
    a status carries the state digest, which costs a pass over the whole state and history
    once per version: a bench that asked it per change would measure that."""
    try:
        reply = cluster.stub(ask).ListMembers(pb.ClusterStatusRequest(), timeout=2.0)
    except grpc.RpcError:
        return ""
    return next((r.raft_address for r in reply.replicas if r.is_leader), "")


def write(cluster: LocalCluster, leader: int, kind: str, node: str, reporter: str) -> int:
    stub = cluster.stub(leader)
    if kind == "drain":
        return int(stub.Drain(pb.NodeRequest(node_id=node), timeout=10).flow_version)
    if kind == "undrain":
        return int(stub.Undrain(pb.NodeRequest(node_id=node), timeout=10).flow_version)
    if kind == "down":
        reply = stub.ReportSuspect(pb.ReportSuspectRequest(
            reporter=reporter, suspect=node, reason="bench"), timeout=10)
        assert reply.outcome == pb.ReportSuspectReply.MARKED_DOWN, reply
        return int(reply.flow_version)
    return int(stub.Rejoin(pb.RejoinRequest(node_id=node), timeout=10).flow_version)


def command_of(kind: str, node: str) -> Command:
    if kind == "drain":
        return Drain(node)
    if kind == "undrain":
        return Undrain(node)
    if kind == "up":
        return MarkUp(node, "")
    return MarkDown(node, "suspected by a neighbour: bench", suspicion=True)


def run_size(n: int, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    state = seed_state(n, args.seed)
    model = Model(state)
    snap = base / "seed.json"
    snap.write_bytes(encode(state))
    nodes_file = base / "nodes.txt"
    nodes_file.write_text("\n".join(sorted(state.nodes)) + "\n")
    flags: dict[str, Any] = dict(
        probe_timeout=0.2, probe_tries=1, probe_interval=0.05, probe_patience=0,
        grpc_max_rpcs=0, grpc_max_rpcs_per_peer=0, grpc_max_connections=0)
    flags.update(args.replica_flag)
    cluster = LocalCluster(3, base / "cluster", **flags)
    cluster.replica_flags[0] = ["--restore", str(snap)]
    clients: list[subprocess.Popen[str]] = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    try:
        cluster.start()
        leader = cluster.wait_ready(60)
        first = min(state.nodes)
        for i in range(3):  # GetFlow, not ClusterStatus: a status computes the digest
            cluster.stub(i).GetFlow(pb.GetFlowRequest(node_id=first, min_version=1),
                                    timeout=120)
        pids = {i: cluster.pid(i) or 0 for i in range(3)}
        rss0 = {i: proc_rss(p) for i, p in pids.items()}
        streams = n if args.streams is None else min(n, args.streams)
        watched = set(sorted(state.nodes)[:streams])  # the nodes_file's first lines
        clients = start_clients(cluster, nodes_file, streams, args.per_process, env,
                                args.client_nice)
        ready = [read_json(c) for c in clients]
        opened = min((r["opened_ns"] for r in ready), default=0)
        last_first = max((r["last_first_ns"] for r in ready), default=0)
        time.sleep(2.0)  # let the set-up's garbage settle before measuring memory
        rss1 = {i: proc_rss(p) for i, p in pids.items()}
        targets = pick_targets(model.state, args.changes, args.seed)
        # the first write after a seed plans in full on every replica: not a steady change
        warm_node = targets[-1][0]
        for kind in ("drain", "undrain"):
            write(cluster, leader, kind, warm_node, "")
            model.step(command_of(kind, warm_node))
        time.sleep(args.gap)
        idle_cpu = {i: proc_cpu(p) for i, p in pids.items()}
        time.sleep(args.idle)
        idle_rate = {i: (proc_cpu(p) - idle_cpu[i]) / args.idle for i, p in pids.items()}
        term0, leader_addr0 = terms(cluster, leader)
        leaders_seen = {leader_addr0}
        client_cpu0 = sum(r["cpu"] for r in ready)
        cpu0 = {i: proc_cpu(p) for i, p in pids.items()}
        t0 = time.monotonic()
        changes: list[tuple[int, int, set[str], str]] = []  # version, sent ns, affected, kind
        write_ms: list[float] = []
        cycle = ("drain", "undrain", "down", "up")
        for k in range(args.changes):
            kind = cycle[k % 4]
            supplier, consumer = targets[(k // 2) % len(targets)]
            sent = time.monotonic_ns()
            version = write(cluster, leader, kind, supplier, consumer)
            ack = time.monotonic_ns()
            write_ms.append((ack - sent) / 1e6)
            affected = model.step(command_of(kind, supplier)) & watched
            if version != model.state.version:
                raise AssertionError(f"cluster at {version}, model at {model.state.version}")
            changes.append((version, sent, affected, kind))
            seen = leader_now(cluster, leader)
            leaders_seen.add(seen)
            if seen in cluster.raft_addresses:
                leader = cluster.raft_addresses.index(seen)
            time.sleep(max(0.0, args.gap - (time.monotonic_ns() - sent) / 1e9))
        elapsed = time.monotonic() - t0
        cpu1 = {i: proc_cpu(p) for i, p in pids.items()}
        seen = leader_now(cluster, leader)
        leader = cluster.raft_addresses.index(seen) if seen in cluster.raft_addresses else leader
        term1, _ = terms(cluster, leader)
        dumps = []
        for c in clients:
            assert c.stdin is not None
            c.stdin.write("dump\n")
            c.stdin.flush()
        dumps = [read_json(c) for c in clients]
    finally:
        for c in clients:
            if c.poll() is None and c.stdin is not None:
                try:
                    c.stdin.write("quit\n")
                    c.stdin.flush()
                except BrokenPipeError:
                    pass
        for c in clients:
            try:
                c.wait(20)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        cluster.stop()
    out = report(n, streams, args, changes, dumps, ready, pids, leader, cpu0, cpu1, idle_rate,
                 elapsed, rss0, rss1, opened, last_first, term0, term1, leaders_seen, client_cpu0)
    out["write_p50_ms"] = sample_percentile(write_ms, 50)
    out["write_max_ms"] = max(write_ms)
    return out


def report(n: int, streams: int, args: argparse.Namespace,
           changes: list[tuple[int, int, set[str], str]],
           dumps: list[dict[str, Any]], ready: list[dict[str, Any]], pids: dict[int, int],
           leader: int, cpu0: dict[int, float], cpu1: dict[int, float],
           idle_rate: dict[int, float], elapsed: float, rss0: dict[int, int],
           rss1: dict[int, int], opened: int, last_first: int, term0: int, term1: int,
           leaders_seen: set[str], client_cpu0: float) -> dict[str, Any]:
    by_node: dict[str, list[tuple[int, int]]] = {}
    for d in dumps:
        for node, version, t in d["records"]:
            by_node.setdefault(node, []).append((version, t))
    lasts: list[float] = []
    each: list[float] = []
    missed = spurious = 0
    versions = [v for v, _, _, _ in changes]
    for idx, (version, sent, affected, _) in enumerate(changes):
        until = changes[idx + 1][1] if idx + 1 < len(changes) else None
        worst = None
        for node in affected:
            got = [t for v, t in by_node.get(node, []) if v >= version
                   and (until is None or t < until)]
            if not got:
                missed += 1
                continue
            lat = (min(got) - sent) / 1e6
            each.append(lat)
            worst = lat if worst is None else max(worst, lat)
        if worst is not None:
            lasts.append(worst)
    affected_by_version = {v: a for v, _, a, _ in changes}
    for node, recs in by_node.items():
        for v, _ in recs:
            known = affected_by_version.get(v)
            if (node not in known) if known is not None else v > versions[0]:
                spurious += 1
    net = {i: (cpu1[i] - cpu0[i] - idle_rate[i] * elapsed) * 1000 / len(changes) for i in pids}
    raw = {i: (cpu1[i] - cpu0[i]) * 1000 / len(changes) for i in pids}
    followers = [i for i in pids if i != leader]
    affected_counts = [len(a) for _, _, a, _ in changes]
    client_cpu = sum(d["cpu"] for d in dumps)
    setup_s = (last_first - opened) / 1e9
    out = {
        "watchers": streams, "catalog": n, "changes": len(changes), "gap_s": args.gap,
        "ready": sum(r["ready"] for r in ready), "client_processes": len(ready),
        "affected_mean": sum(affected_counts) / len(affected_counts),  # watched ones
        "affected_max": max(affected_counts),
        "leader_cpu_ms_per_change": net[leader], "leader_raw_ms": raw[leader],
        "follower_cpu_ms_per_change": [net[i] for i in followers],
        "follower_raw_ms": [raw[i] for i in followers],
        "idle_cpu_ms_per_s": {f"r{i}": idle_rate[i] * 1000 for i in pids},
        "notify_last_p50_ms": sample_percentile(lasts, 50) if lasts else None,
        "notify_last_p99_ms": sample_percentile(lasts, 99) if lasts else None,
        "notify_each_p50_ms": sample_percentile(each, 50) if each else None,
        "notify_each_p99_ms": sample_percentile(each, 99) if each else None,
        "missed": missed, "spurious": spurious,
        "setup_s": setup_s, "setup_streams_per_s": streams / setup_s if setup_s > 0 else None,
        "redirects": sum(d["redirects"] for d in dumps),
        "kib_per_stream": sum(rss1[i] - rss0[i] for i in pids) / 1024 / max(1, streams),
        "rss_mib": {f"r{i}": rss1[i] / 2**20 for i in pids},
        "term_changes": term1 - term0, "leaders_seen": len(leaders_seen - {""}),
        "client_cpu_setup_s": client_cpu0,
        "client_cpu_ms_per_change": (client_cpu - client_cpu0) * 1000 / len(changes),
        "leader": f"r{leader}",
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="1000,3000,10000")
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between writes")
    parser.add_argument("--idle", type=float, default=3.0, help="idle-CPU window, seconds")
    parser.add_argument("--per-process", type=int, default=500)
    parser.add_argument("--streams", type=int, default=None,
                        help="open streams for only the first N nodes (0: none; the "
                        "cost of a change without watchers)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--client-nice", type=int, default=0, metavar="N",
                        help="run the client processes under nice -n N (the replicas keep "
                        "the bench's own priority)")
    parser.add_argument("--replica-flag", action="append", default=[], type=_flag,
                        metavar="NAME=VALUE", help="extra replica flag (e.g. "
                        "grpc_max_watch_streams=0), repeatable")
    parser.add_argument("--json", action="store_true", help="one JSON line per size")
    args = parser.parse_args(argv)
    args.replica_flag = dict(args.replica_flag)
    for n in (int(s) for s in args.watchers.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-watchers-") as tmp:
            result = run_size(n, args, Path(tmp))
        print(json.dumps(result) if args.json else render(result), flush=True)


def _flag(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name.replace("-", "_"), value


def render(r: dict[str, Any]) -> str:
    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"
    fol = ", ".join(f"{v:.1f}" for v in r["follower_cpu_ms_per_change"])
    return "\n".join([
        f"== {r['watchers']} watchers of a {r['catalog']}-node catalog ({r['ready']} ready, "
        f"{r['client_processes']} client processes), {r['changes']} changes {r['gap_s']} s "
        f"apart, affected watchers per change mean {r['affected_mean']:.1f} "
        f"max {r['affected_max']}",
        f"  CPU per change (net of idle): leader {r['leader']} {r['leader_cpu_ms_per_change']:.1f}"
        f" ms, followers {fol} ms (raw leader {r['leader_raw_ms']:.1f})",
        f"  writes: p50 {r['write_p50_ms']:.1f} ms, max {r['write_max_ms']:.1f} ms\n"
        f"  commit (write sent) -> last affected notified: p50 {ms(r['notify_last_p50_ms'])} ms, "
        f"p99 {ms(r['notify_last_p99_ms'])} ms; per watcher p50 {ms(r['notify_each_p50_ms'])}"
        f" p99 {ms(r['notify_each_p99_ms'])}; missed {r['missed']}, spurious {r['spurious']}",
        f"  set-up {r['setup_s']:.2f} s = {r['setup_streams_per_s'] or 0:.0f} streams/s "
        f"(redirects {r['redirects']}); memory {r['kib_per_stream']:.1f} KiB/stream; RSS "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in r["rss_mib"].items()),
        f"  leader changes: {r['term_changes']} term changes, {r['leaders_seen']} leader(s) "
        f"seen; clients' CPU: set-up {r['client_cpu_setup_s']:.1f} s, "
        f"{r['client_cpu_ms_per_change']:.1f} ms per change",
    ])


if __name__ == "__main__":
    main()
