"""Status codes of the coordinator API's edge cases, against real 3-replica processes:
a report from an unregistered reporter, a flow version from the far future, removing a
replica that is no member."""

from __future__ import annotations

import time

import grpc
import pytest
from coord_util import register_all, spec, start_health_server

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.service import AT_VERSION_MARGIN
from fos_raft.cli.launcher import LocalCluster, free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCluster(3, tmp_path_factory.mktemp("api-small"), probe_timeout=2.0)
    try:
        c.start()
        c.wait_ready()
        register_all(c, 0, [spec("as-rep", free_port(), ("asw", 1))])
        c.wait_converged()
        yield c
    finally:
        c.stop()


def follower(c: LocalCluster) -> int:
    leader = c.wait_for_leader(timeout=20)
    return next(i for i in c.running() if i != leader)


def test_a_suspicion_from_an_unregistered_reporter_is_refused(cluster: LocalCluster) -> None:
    server, health, port = start_health_server(delay=0.0, node_id="as-node")
    try:
        register_all(cluster, 0, [spec("as-node", port, ("asn", 1))])
        target = follower(cluster)
        for reporter in ("as-stranger", ""):
            with pytest.raises(grpc.RpcError) as info:
                cluster.stub(target).ReportSuspect(
                    pb.ReportSuspectRequest(reporter=reporter, suspect="as-node"), timeout=10)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not a registered node" in (info.value.details() or "")
        assert health.checks == 0  # refused before any probe
        # a registered reporter's report, sent to a follower, is forwarded and decided
        reply = cluster.stub(target).ReportSuspect(
            pb.ReportSuspectRequest(reporter="as-rep", suspect="as-node"), timeout=10)
        assert reply.outcome == pb.ReportSuspectReply.REFUTED and health.checks == 1
    finally:
        server.stop(0).wait()


def test_get_flow_far_beyond_the_applied_version_fails_fast(cluster: LocalCluster) -> None:
    target = follower(cluster)
    current = cluster.status(target).flow_version
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        cluster.stub(target).GetFlow(
            pb.GetFlowRequest(at_version=current + AT_VERSION_MARGIN + 5), timeout=10)
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE, info.value.details()
    assert time.monotonic() - started < 5.0  # did not wait out the deadline
    # within the margin a lagging follower may yet apply it: it waits (here: in vain)
    with pytest.raises(grpc.RpcError) as info:
        cluster.stub(target).GetFlow(pb.GetFlowRequest(at_version=current + 5), timeout=1.0)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                 grpc.StatusCode.DEADLINE_EXCEEDED)


def test_removing_a_non_member_is_not_found(cluster: LocalCluster) -> None:
    with pytest.raises(grpc.RpcError) as info:
        cluster.stub(follower(cluster)).RemoveMember(
            pb.MemberRequest(raft_address=f"127.0.0.1:{free_port()}"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not a member" in (info.value.details() or "")
    members = cluster.stub(0).ListMembers(pb.ClusterStatusRequest(), timeout=10).replicas
    assert len(members) == 3


@pytest.mark.parametrize("raft_address", ["\x1b]0;owned\x07\x1b[2J:7100", "a b:7100", "x"])
def test_adding_a_member_at_a_bad_address_is_refused_before_raft_sees_it(
    cluster: LocalCluster, raft_address: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        cluster.stub(follower(cluster)).AddMember(
            pb.MemberRequest(raft_address=raft_address, grpc_address="127.0.0.1:7000"),
            timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "\x1b" not in (info.value.details() or "")
    members = cluster.stub(0).ListMembers(pb.ClusterStatusRequest(), timeout=10).replicas
    assert len(members) == 3
