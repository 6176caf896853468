"""Snapshots: with log compaction every 20 entries, a follower that missed compacted entries
catches up from the leader's snapshot, and SIGKILL + restart of every replica restores the
state from snapshot + journal tail (the pickled state reloads to the same digest)."""

from __future__ import annotations

import pytest
from cluster_forensics import converge_or_explain
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable, wait_until

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.journal import read_journal


def _toggle(cluster: LocalCluster, target: int, count: int) -> None:
    for k in range(count):
        request = pb.NodeRequest(node_id="saw-1")
        call = cluster.stub(target).Drain if k % 2 == 0 else cluster.stub(target).Undrain
        retry_unavailable(lambda call=call, request=request: call(request, timeout=5))


def test_snapshot_catch_up_and_restore(tmp_path):
    with LocalCluster(3, tmp_path, log_compaction_entries=20) as cluster:
        leader = cluster.wait_ready()
        register_all(cluster, leader, WINDOW_FACTORY[:4])
        _toggle(cluster, leader, 50)
        cluster.wait_converged()
        wait_until(
            lambda: all((cluster.data_dir(i) / "raft.dump").exists() for i in range(3)),
            what="every replica to write a snapshot",
        )

        lagging = next(i for i in range(3) if i != leader)
        cluster.kill(lagging)
        survivor = next(i for i in range(3) if i not in (leader, lagging))
        _toggle(cluster, survivor, 60)
        entries, _, _ = read_journal(str(cluster.data_dir(leader) / "raft.lmdb"))
        lagging_entries, _, _ = read_journal(str(cluster.data_dir(lagging) / "raft.lmdb"))
        # The leader compacted past everything the lagging replica has: only a snapshot helps.
        assert entries[0][1] > lagging_entries[-1][1]
        cluster.restart(lagging)
        # On a timeout: each replica's indexes, version and digest, live and on disk, and the
        # cluster directory kept (a divergence after snapshot catch-up must be diagnosable).
        digest = converge_or_explain(cluster, 30, "snapshot-catch-up")

        before = cluster.status(lagging)
        assert before.state_digest == digest
        for i in range(3):
            cluster.kill(i)
        cluster.start()
        cluster.wait_for_leader(timeout=20)
        assert converge_or_explain(cluster, 30, "snapshot-restore") == digest
        after = cluster.status(lagging)
        assert after.flow_version == before.flow_version
        nodes = cluster.stub(lagging).ListNodes(pb.ListNodesRequest(), timeout=5).nodes
        assert len(nodes) == 4 and all(n.alive for n in nodes)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
