"""A Jepsen-style run against a real 3-replica cluster (issue 15): client threads read and
compare-and-set (`UpdateSpec` with ``expected_version``) a few nodes while a nemesis
SIGKILLs and restarts the leader, SIGSTOPs a replica for 3 s and partitions one replica
from the others (tests/faultproxy.py). The history goes to tests/linearizability.py.

Used by tests/test_nemesis.py; ``python tests/nemesis.py [seconds]`` runs both read modes
and prints the verdicts (the serializable figures in bench/RESULTS.md).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from coord_util import register_all, spec
from faultproxy import FaultProxy, proxied_cluster
from linearizability import Op, Verdict, check

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.launcher import LocalCluster

KEYS = [spec("saw-1", 7301, ("wood", 3)), spec("saw-2", 7302, ("wood", 3)),
        spec("glass-1", 7303, ("glass", 2))]
CALL_TIMEOUT = 1.0


@dataclass
class Run:
    history: list[Op] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class Client(threading.Thread):
    """One client: its own channels (replicas restart under it), random replica per call."""

    values = itertools.count(1000)  # unique capacities: a value names its write

    def __init__(self, number: int, cluster: LocalCluster, consistency: int, run: Run,
                 stop: threading.Event, lock: threading.Lock) -> None:
        super().__init__(daemon=True, name=f"client-{number}")
        self.number, self.consistency, self.run_, self.stop, self.lock = (
            number, consistency, run, stop, lock)
        self.random = random.Random(number)
        self.channels = [grpc.insecure_channel(a) for a in cluster.grpc_addresses]
        self.stubs = [pb_grpc.CoordinatorStub(c) for c in self.channels]
        self.known: dict[str, int] = {}  # key -> spec_version last read

    def record(self, op: Op, what: str) -> None:
        with self.lock:
            self.run_.history.append(op)
            self.run_.count(what)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                stub = self.random.choice(self.stubs)
                key = self.random.choice(KEYS)
                if key.node_id not in self.known or self.random.random() < 0.5:
                    self.read(stub)
                else:
                    self.cas(stub, key)
        finally:
            for channel in self.channels:
                channel.close()

    def read(self, stub: pb_grpc.CoordinatorStub) -> None:
        invoke = time.monotonic()
        try:
            reply = stub.ListNodes(pb.ListNodesRequest(consistency=self.consistency),
                                   timeout=CALL_TIMEOUT)
        except grpc.RpcError:
            self.record_count("read failed")
            return
        complete = time.monotonic()
        with self.lock:
            for node in reply.nodes:  # one atomic snapshot: a read of every key
                self.run_.history.append(Op(self.number, node.spec.node_id, "read", invoke,
                                            complete, value=node.spec.capacity,
                                            version=node.spec_version))
                self.known[node.spec.node_id] = node.spec_version
            self.run_.count("read ok")

    def record_count(self, what: str) -> None:
        with self.lock:
            self.run_.count(what)

    def cas(self, stub: pb_grpc.CoordinatorStub, key: pb.NodeSpec) -> None:
        new = pb.NodeSpec()
        new.CopyFrom(key)
        new.capacity = next(self.values)
        expected = self.known[key.node_id]
        request = pb.UpdateSpecRequest(spec=new, expected_version=expected)
        invoke = time.monotonic()
        base = dict(client=self.number, key=key.node_id, kind="cas", invoke=invoke,
                    value=new.capacity, expected=expected)
        try:
            reply = stub.UpdateSpec(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                self.record(Op(**base, complete=time.monotonic(), outcome="fail"), "cas fail")
            else:  # timeout, unavailable, a replica that died mid-call: unknown outcome
                self.record(Op(**base, complete=None, outcome="unknown"), "cas unknown")
            return
        self.record(Op(**base, complete=time.monotonic(), version=reply.flow_version),
                    "cas ok")
        self.known[key.node_id] = reply.flow_version


def nemesis(cluster: LocalCluster, proxy: FaultProxy, run: Run, stop: threading.Event) -> None:
    """kill+restart the leader, SIGSTOP a replica 3 s, isolate a replica 3 s; repeat."""
    rng = random.Random(7)

    def pause(seconds: float) -> bool:
        return not stop.wait(seconds)

    while pause(1.5):
        leader = cluster.leader_index()
        if leader is not None:
            run.faults.append(f"kill r{leader}")
            cluster.kill(leader)
            if not pause(1.0):
                cluster.restart(leader)
                break
            cluster.restart(leader)
            run.faults.append(f"restart r{leader}")
        if not pause(1.5):
            break
        victim = rng.randrange(3)
        pid = cluster.pid(victim)
        if pid is not None:
            run.faults.append(f"sigstop r{victim} 3s")
            os.kill(pid, signal.SIGSTOP)
            try:
                stop.wait(3.0)
            finally:
                os.kill(pid, signal.SIGCONT)
        if not pause(1.5):
            break
        lonely = rng.randrange(3)
        run.faults.append(f"isolate r{lonely} 3s")
        proxy.isolate(cluster.raft_addresses[lonely])
        stop.wait(3.0)
        proxy.heal()


def run_nemesis(base_dir: Path, consistency: int, seconds: float, clients: int = 4) -> Run:
    run = Run()
    with proxied_cluster(3, base_dir) as (cluster, proxy):
        register_all(cluster, 0, KEYS)
        cluster.wait_converged()
        initial = {n.spec.node_id: (n.spec.capacity, n.spec_version)
                   for n in cluster.stub(0).ListNodes(pb.ListNodesRequest(), timeout=5).nodes}
        stop, lock = threading.Event(), threading.Lock()
        workers = [Client(i, cluster, consistency, run, stop, lock) for i in range(clients)]
        chaos = threading.Thread(target=nemesis, args=(cluster, proxy, run, stop), daemon=True)
        for worker in workers:
            worker.start()
        chaos.start()
        try:
            stop.wait(seconds)
        finally:
            stop.set()
            chaos.join(timeout=30)
            for worker in workers:
                worker.join(timeout=10)
            proxy.heal()
        cluster.wait_converged(timeout=30)
        run.verdicts = check(initial, run.history)
    return run


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 25.0
    for name, mode in (("linearizable", pb.LINEARIZABLE), ("serializable", pb.SERIALIZABLE)):
        with tempfile.TemporaryDirectory() as tmp:
            run = run_nemesis(Path(tmp), mode, seconds)
        bad = [v for v in run.verdicts if not v.ok]
        print(f"{name}: {len(run.history)} ops {dict(sorted(run.counts.items()))}; "
              f"faults {run.faults}; keys linearizable "
              f"{len(run.verdicts) - len(bad)}/{len(run.verdicts)}")
        for verdict in bad:
            print(f"  {verdict.key}: {verdict.detail}")


if __name__ == "__main__":
    main()
