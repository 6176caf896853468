"""Five real fos-coordinator processes: two SIGKILLs are survived; with three of five killed
there is no quorum, writes fail UNAVAILABLE within their deadline and nothing is applied."""

from __future__ import annotations

import time

import grpc
import pytest
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCluster(5, tmp_path_factory.mktemp("c5"))
    try:
        c.start()
        c.wait_ready()
        register_all(c, 0, WINDOW_FACTORY[:4])
        c.wait_converged()
        yield c
    finally:
        c.stop()


def test_two_sigkills_are_survived_three_stop_writes(cluster: LocalCluster):
    leader = cluster.wait_for_leader()
    victims = [leader, (leader + 1) % 5]
    for i in victims:
        cluster.kill(i)
    survivors = [i for i in range(5) if i not in victims]
    reply = retry_unavailable(
        lambda: cluster.stub(survivors[0]).Drain(pb.NodeRequest(node_id="saw-1"), timeout=5)
    )
    cluster.wait_converged(survivors)
    assert {v for v, _ in cluster.digests(survivors).values()} == {reply.flow_version}

    # A third kill leaves 2 of 5: no quorum.
    cluster.kill(survivors[0])
    left = survivors[1:]
    before = cluster.wait_converged(left)
    deadline = 1.5
    for target in left:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            cluster.stub(target).Undrain(pb.NodeRequest(node_id="saw-1"), timeout=deadline)
        elapsed = time.monotonic() - started
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert elapsed < deadline + 0.5
        assert "leader" in (info.value.details() or "")
    # Nothing was applied, now or a little later.
    for _ in range(5):
        assert {d for _, d in cluster.digests(left).values()} == {before}
        time.sleep(0.2)
    status = cluster.status(left[0])
    assert not status.has_quorum

    # Quorum back: the cluster serves writes again and everybody converges.
    for i in range(5):
        if not cluster.is_running(i):
            cluster.restart(i)
    cluster.wait_for_leader(timeout=20)
    retry_unavailable(
        lambda: cluster.stub(left[0]).Undrain(pb.NodeRequest(node_id="saw-1"), timeout=5)
    )
    cluster.wait_converged()
