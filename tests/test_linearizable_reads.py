"""Linearizable reads (issue 15) against three real fos-coordinator processes: a follower
and a deposed (SIGSTOPped) old leader never answer older than a completed write, and a
replica cut off from the majority refuses instead of answering stale.

One cluster serves the module; each test leaves every replica running (SIGCONT in finally).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable, wait_until

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster

LIN = pb.LINEARIZABLE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(3, tmp_path_factory.mktemp("lin"))
    try:
        c.start()
        c.wait_ready()
        register_all(c, 0, WINDOW_FACTORY[:2])
        c.wait_converged()
        yield c
    finally:
        c.stop()


@contextmanager
def stopped(cluster: LocalCluster, *indices: int) -> Iterator[None]:
    """SIGSTOP the given replicas (by PID); SIGCONT them on the way out, even on failure."""
    pids = [cluster.pid(i) for i in indices]
    assert all(pids)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def bump(cluster: LocalCluster, via: int, capacity: int) -> int:
    """UpdateSpec saw-1's capacity through replica ``via``; returns the new flow version."""
    spec = pb.NodeSpec()
    spec.CopyFrom(WINDOW_FACTORY[0])
    spec.capacity = capacity
    reply = retry_unavailable(
        lambda: cluster.stub(via).UpdateSpec(pb.UpdateSpecRequest(spec=spec), timeout=5.0),
        timeout=30.0,
    )
    return reply.flow_version


def test_every_replica_reads_its_own_writes_and_others(cluster: LocalCluster) -> None:
    for round_ in range(5):
        version = bump(cluster, round_ % 3, 10 + round_)
        for i in range(3):  # no wait in between: a serializable follower read may lag here
            nodes = cluster.stub(i).ListNodes(pb.ListNodesRequest(consistency=LIN), timeout=5)
            assert nodes.flow_version >= version, f"r{i} answered {nodes.flow_version} < {version}"
            saw = next(n for n in nodes.nodes if n.spec.node_id == "saw-1")
            assert saw.spec.capacity == 10 + round_ or nodes.flow_version > version
            flow = cluster.stub(i).GetFlow(pb.GetFlowRequest(consistency=LIN), timeout=5)
            assert flow.flow.version >= version
            status = cluster.stub(i).ClusterStatus(
                pb.ClusterStatusRequest(consistency=LIN), timeout=5)
            assert status.flow_version >= version


def test_deposed_leader_does_not_answer_stale(cluster: LocalCluster) -> None:
    old = cluster.wait_for_leader(timeout=20)
    others = [i for i in range(3) if i != old]
    with stopped(cluster, old):
        def new_leader() -> str | None:
            for i in others:
                try:
                    leader = cluster.status(i, timeout=1.0).leader
                except grpc.RpcError:
                    continue
                if leader and leader != cluster.raft_addresses[old]:
                    return leader
            return None

        wait_until(new_leader, timeout=20, what="a new leader among the others")
        version = bump(cluster, others[0], 99)
    # The old leader wakes up still believing it leads (until it hears the new term).
    reply = cluster.stub(old).GetFlow(pb.GetFlowRequest(consistency=LIN), timeout=10)
    assert reply.flow.version >= version


def test_minority_refuses_linearizable_reads_within_deadline(cluster: LocalCluster) -> None:
    cluster.wait_converged()
    lone = 0
    with stopped(cluster, 1, 2):
        # Serializable: answered from the local state at once, possibly stale.
        stale = cluster.stub(lone).ListNodes(pb.ListNodesRequest(), timeout=5)
        assert stale.nodes
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            cluster.stub(lone).ListNodes(pb.ListNodesRequest(consistency=LIN), timeout=1.5)
        took = time.monotonic() - started
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        assert "linearizable read" in (err.value.details() or "")
        assert took < 5.0  # within the deadline (plus scheduling on a loaded machine)
    cluster.wait_for_leader(timeout=20)
    version = bump(cluster, lone, 7)
    reply = cluster.stub(2).ListNodes(pb.ListNodesRequest(consistency=LIN), timeout=10)
    assert reply.flow_version >= version


def test_fosctl_consistency_flag(cluster: LocalCluster) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    fosctl = Path(sys.executable).parent / "fosctl"
    base = [str(fosctl), "--coordinators", ",".join(cluster.grpc_addresses), "--timeout", "10"]
    for mode in ("linearizable", "serializable"):
        done = subprocess.run([*base, "--consistency", mode, "nodes", "--json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert {n["node_id"] for n in json.loads(done.stdout)["nodes"]} >= {"saw-1", "saw-2"}
    bad = subprocess.run([*base, "--consistency", "eventual", "nodes"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    # With every other replica stopped a linearizable read (the default for nodes) refuses,
    # fast and in one line; serializable still answers.
    with stopped(cluster, 1, 2):
        lone = [str(fosctl), "--coordinators", cluster.grpc_addresses[0], "--timeout", "1.5"]
        refused = subprocess.run([*lone, "nodes"], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
        ok = subprocess.run([*lone, "--consistency", "serializable", "nodes"],
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        # status answers without a quorum by default: it is how an operator sees this
        status = subprocess.run([*lone, "status", "--json"], capture_output=True, text=True,
                                timeout=60)
        assert status.returncode == 0, status.stderr
        strict = subprocess.run([*lone, "--consistency", "linearizable", "status"],
                                capture_output=True, text=True, timeout=60)
        assert strict.returncode != 0
    cluster.wait_for_leader(timeout=20)
