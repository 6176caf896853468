"""Network partitions between real replicas (issue 15): all Raft traffic goes through the
fault-injecting proxy (tests/faultproxy.py). The minority side refuses writes within the
deadline, there is never more than one leader able to commit, and after healing every
replica has the same digest. One cluster serves the module; each test heals on the way out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc
import pytest
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable, wait_until
from faultproxy import FaultProxy, proxied_cluster

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster

LIN = pb.LINEARIZABLE


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, FaultProxy]]:
    with proxied_cluster(3, tmp_path_factory.mktemp("part")) as (cluster, proxy):
        register_all(cluster, 0, WINDOW_FACTORY[:2])
        cluster.wait_converged()
        assert proxy.forwarded > 0  # Raft really goes through the proxy
        yield cluster, proxy


@pytest.fixture
def healed(net: tuple[LocalCluster, FaultProxy]) -> Iterator[tuple[LocalCluster, FaultProxy]]:
    cluster, proxy = net
    try:
        yield net
    finally:
        proxy.set_faults(delay=0.0, drop=0.0)
        proxy.heal()
    cluster.wait_converged(timeout=30)


def update(cluster: LocalCluster, via: int, capacity: int, timeout: float) -> int:
    spec = pb.NodeSpec()
    spec.CopyFrom(WINDOW_FACTORY[0])
    spec.capacity = capacity
    reply = cluster.stub(via).UpdateSpec(pb.UpdateSpecRequest(spec=spec), timeout=timeout)
    return reply.flow_version


def capacity_on(cluster: LocalCluster, i: int) -> int:
    nodes = cluster.stub(i).ListNodes(pb.ListNodesRequest(), timeout=5).nodes
    return next(n.spec.capacity for n in nodes if n.spec.node_id == "saw-1")


def majority_leader(cluster: LocalCluster, others: list[int], old: str) -> str:
    def leader() -> str:
        for i in others:
            try:
                st = cluster.status(i, timeout=1.0)
            except grpc.RpcError:
                continue
            if st.leader and st.leader != old and st.has_quorum:
                return st.leader
        return ""

    return wait_until(leader, timeout=20, what="a leader on the majority side")


def test_isolated_leader_refuses_writes_and_majority_goes_on(healed) -> None:
    cluster, proxy = healed
    old = cluster.wait_for_leader(timeout=20)
    others = [i for i in range(3) if i != old]
    old_term = cluster.status(old).term
    proxy.isolate(cluster.raft_addresses[old])
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        update(cluster, old, 41, timeout=2.0)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 6.0  # refused within the deadline (loaded machine)
    new = majority_leader(cluster, others, cluster.raft_addresses[old])
    version = retry_unavailable(lambda: update(cluster, others[0], 42, timeout=5.0), 30)
    # No split brain: the isolated replica stops claiming leadership (it hears no
    # majority; with pre-vote its term stays put, so the term says nothing) and cannot
    # serve a linearizable read.
    gone = cluster.raft_addresses[old]
    wait_until(lambda: cluster.status(old).leader != gone, timeout=10,
               what="the isolated leader to step down")
    assert cluster.status(old).term == old_term  # pre-vote: an isolated replica keeps its term
    with pytest.raises(grpc.RpcError):
        cluster.stub(old).ListNodes(pb.ListNodesRequest(consistency=LIN), timeout=1.5)
    proxy.heal()
    digest = cluster.wait_converged(timeout=30)
    assert all(d == digest for _, d in cluster.digests().values())
    # The minority's write never committed: the majority's one is what everybody has.
    assert {capacity_on(cluster, i) for i in range(3)} == {42}
    assert cluster.status(old).flow_version >= version
    assert cluster.status(old).leader == new or cluster.wait_for_leader(timeout=20) is not None


def test_one_way_partition_deposes_the_leader(healed) -> None:
    cluster, proxy = healed
    old = cluster.wait_for_leader(timeout=20)
    others = [i for i in range(3) if i != old]
    # The leader hears everybody but nobody hears the leader.
    for i in others:
        proxy.block(cluster.raft_addresses[old], cluster.raft_addresses[i])
    majority_leader(cluster, others, cluster.raft_addresses[old])
    version = retry_unavailable(lambda: update(cluster, others[1], 43, timeout=5.0), 30)
    reply = cluster.stub(others[0]).ListNodes(pb.ListNodesRequest(consistency=LIN), timeout=5)
    assert reply.flow_version >= version
    proxy.heal()
    cluster.wait_converged(timeout=30)
    assert {capacity_on(cluster, i) for i in range(3)} == {43}


def test_slow_lossy_links_lose_no_acknowledged_write(healed) -> None:
    cluster, proxy = healed
    proxy.set_faults(delay=0.02, drop=0.02)
    acknowledged = 0
    for k in range(12):
        acknowledged = retry_unavailable(
            lambda k=k: update(cluster, k % 3, 100 + k, timeout=5.0), timeout=30)
    proxy.set_faults(delay=0.0, drop=0.0)
    cluster.wait_converged(timeout=30)
    for i in range(3):
        assert cluster.status(i).flow_version >= acknowledged
        assert capacity_on(cluster, i) == 111


def test_a_returning_replica_does_not_depose_the_leader(healed) -> None:
    """Pre-vote (fos_raft.replica.prevote): a follower cut off for many election timeouts
    asks before it raises its term, gets no grants, and on its return simply follows the
    leader again: the majority never loses its leader."""
    cluster, proxy = healed
    cycles = int(os.environ.get("FOS_ISOLATION_CYCLES", "2"))
    leader = cluster.wait_for_leader(timeout=20)
    name = cluster.raft_addresses[leader]
    term = cluster.status(leader).term
    follower = next(i for i in range(3) if i != leader)
    for _ in range(cycles):
        proxy.isolate(cluster.raft_addresses[follower])
        wait_until(lambda: cluster.status(follower).leader != name, timeout=10,
                   what="the cut-off follower to lose its leader")
        time.sleep(1.0)  # the cut lasts: several election timeouts (0.2-0.5 s) run out
        proxy.heal()
        wait_until(lambda: cluster.status(follower).leader == name, timeout=15,
                   what="the follower to follow the same leader again")
        status = cluster.status(leader)
        assert (status.leader, status.term) == (name, term)
        assert cluster.status(follower).term == term
    cluster.wait_converged(timeout=30)
