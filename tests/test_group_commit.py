"""Group commit keeps persist-before-acknowledge: 16 concurrent writers compare-and-set their
own node each while random replicas (any one at a time: a minority) are SIGKILLed at random
moments and restarted; afterwards a linearizable read of every node joins the history and
tests/linearizability.py must accept it. An acknowledged write that a kill lost would show
as a later read of an older value. (Power loss is the fsync order of tests/test_journal.py:
nothing is acknowledged or applied before the fsync that covers it.)"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from coord_util import register_all, spec
from linearizability import Op, check

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.launcher import LocalCluster

WRITERS = 16
SECONDS = 10.0
KEYS = [spec(f"gc-{i}", 7400 + i, ("part", 1)) for i in range(WRITERS)]


class Writer(threading.Thread):
    """Owns one key: CAS from the version it knows; after an unknown outcome it reads."""

    values = iter(range(10_000, 10_000_000))  # unique capacities: a value names its write
    values_lock = threading.Lock()

    def __init__(self, number: int, cluster: LocalCluster, history: list[Op],
                 lock: threading.Lock, stop: threading.Event, version: int) -> None:
        super().__init__(daemon=True, name=f"writer-{number}")
        self.number, self.history, self.lock, self.stop = number, history, lock, stop
        self.key = KEYS[number]
        self.version: int | None = version
        self.rng = random.Random(number)
        self.channels = [grpc.insecure_channel(a) for a in cluster.grpc_addresses]
        self.stubs = [pb_grpc.CoordinatorStub(c) for c in self.channels]
        self.acked = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                stub = self.rng.choice(self.stubs)
                if self.version is None:
                    self.read(stub)
                else:
                    self.cas(stub, self.version)
        finally:
            for channel in self.channels:
                channel.close()

    def read(self, stub: pb_grpc.CoordinatorStub) -> None:
        invoke = time.monotonic()
        try:
            reply = stub.ListNodes(pb.ListNodesRequest(consistency=pb.LINEARIZABLE),
                                   timeout=1.0)
        except grpc.RpcError:
            return
        complete = time.monotonic()
        node = next(n for n in reply.nodes if n.spec.node_id == self.key.node_id)
        with self.lock:
            self.history.append(Op(self.number, self.key.node_id, "read", invoke, complete,
                                   value=node.spec.capacity, version=node.spec_version))
        self.version = node.spec_version

    def cas(self, stub: pb_grpc.CoordinatorStub, expected: int) -> None:
        new = pb.NodeSpec()
        new.CopyFrom(self.key)
        with self.values_lock:
            new.capacity = next(self.values)
        base = dict(client=self.number, key=self.key.node_id, kind="cas",
                    invoke=time.monotonic(), value=new.capacity, expected=expected)
        try:
            reply = stub.UpdateSpec(pb.UpdateSpecRequest(spec=new, expected_version=expected),
                                    timeout=1.0)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                op = Op(**base, complete=time.monotonic(), outcome="fail")  # type: ignore[arg-type]
            else:  # a replica died mid-call, a timeout: the write may or may not be in
                op = Op(**base, complete=None, outcome="unknown")  # type: ignore[arg-type]
            with self.lock:
                self.history.append(op)
            self.version = None
            return
        op = Op(**base, complete=time.monotonic(), version=reply.flow_version)  # type: ignore[arg-type]
        with self.lock:
            self.history.append(op)
        self.version = reply.flow_version
        self.acked += 1


def killer(cluster: LocalCluster, stop: threading.Event, kills: list[str]) -> None:
    """SIGKILL one replica (the leader half the time) at a random moment, restart it."""
    rng = random.Random(3)
    while not stop.wait(rng.uniform(0.3, 1.0)):
        leader = cluster.leader_index()
        victim = leader if leader is not None and rng.random() < 0.5 else rng.randrange(3)
        cluster.kill(victim)
        kills.append(f"r{victim}")
        stop.wait(rng.uniform(0.2, 0.6))
        cluster.restart(victim)


def test_no_acknowledged_write_is_lost_when_replicas_are_killed_under_16_writers(
    tmp_path: Path,
) -> None:
    history: list[Op] = []
    kills: list[str] = []
    with LocalCluster(3, tmp_path) as cluster:
        cluster.start()
        leader = cluster.wait_ready()
        register_all(cluster, leader, KEYS)
        cluster.wait_converged()
        initial = {n.spec.node_id: (n.spec.capacity, n.spec_version) for n in
                   cluster.stub(leader).ListNodes(pb.ListNodesRequest(), timeout=5).nodes}
        stop, lock = threading.Event(), threading.Lock()
        writers = [Writer(i, cluster, history, lock, stop, initial[KEYS[i].node_id][1])
                   for i in range(WRITERS)]
        chaos = threading.Thread(target=killer, args=(cluster, stop, kills), daemon=True)
        for writer in writers:
            writer.start()
        chaos.start()
        try:
            stop.wait(SECONDS)
        finally:
            stop.set()
            chaos.join(timeout=30)
            for writer in writers:
                writer.join(timeout=10)
        cluster.start()  # every replica up (the last one killed was restarted)
        cluster.wait_converged(timeout=30)
        invoke = time.monotonic()
        final = cluster.stub(cluster.wait_for_leader()).ListNodes(
            pb.ListNodesRequest(consistency=pb.LINEARIZABLE), timeout=10)
        complete = time.monotonic()
    for node in final.nodes:
        history.append(Op(-1, node.spec.node_id, "read", invoke, complete,
                          value=node.spec.capacity, version=node.spec_version))
    acked = sum(w.acked for w in writers)
    verdicts = check(initial, history)
    bad = [v for v in verdicts if not v.ok]
    assert not bad, f"{bad}; kills {kills}; {acked} acknowledged writes"
    assert len(verdicts) == WRITERS
    assert len(kills) >= 3, kills  # a restart waits until the replica serves gRPC again
    assert acked >= 100, f"only {acked} acknowledged writes"
