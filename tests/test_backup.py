"""Backup and recovery with real replicas (docs/operations.md): snapshot save and restore
into a new cluster, recovery after losing the majority (from the one survivor's data
dir), and replacing a replica whose disk is gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable, wait_until
from ops_util import fosctl, run_cli

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster

pytestmark = pytest.mark.slow


def catalog(cluster: LocalCluster, i: int) -> tuple[int, list[tuple[str, bool, bool, str]]]:
    reply = retry_unavailable(lambda: cluster.stub(i).ListNodes(pb.ListNodesRequest(),
                                                                timeout=5))
    return reply.flow_version, sorted((n.spec.node_id, n.alive, n.drained, n.spec.address)
                                      for n in reply.nodes)


def flow_edges(cluster: LocalCluster, i: int) -> list[tuple[str, str, str]]:
    reply = retry_unavailable(lambda: cluster.stub(i).GetFlow(pb.GetFlowRequest(), timeout=5))
    return sorted((e.supplier, e.consumer, e.item) for e in reply.flow.edges)


def seeded_cluster(tmp_path: Path, name: str) -> LocalCluster:
    cluster = LocalCluster(3, tmp_path / name)
    try:
        cluster.start()
        cluster.wait_ready()
        register_all(cluster, 0, WINDOW_FACTORY)
        retry_unavailable(lambda: cluster.stub(0).Drain(pb.NodeRequest(node_id="saw-2"),
                                                        timeout=5))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def restore_into_new_cluster(tmp_path: Path, backup: Path, expected) -> None:
    fresh = LocalCluster(3, tmp_path / "restored")
    fresh.replica_flags[0] = ["--restore", str(backup)]
    with fresh:
        fresh.wait_ready()
        version, nodes = expected[0]
        wait_until(lambda: catalog(fresh, 1)[0] == version, 20, "restored flow version")
        assert catalog(fresh, 1) == (version, nodes)
        assert flow_edges(fresh, 2) == expected[1]
        fresh.wait_converged()
        # the restored cluster goes on from the restored version
        reply = retry_unavailable(lambda: fresh.stub(1).Undrain(
            pb.NodeRequest(node_id="saw-2"), timeout=5))
        assert reply.flow_version == version + 1
        # a --restore that finds state already there changes nothing (apply refuses a
        # seed once the committed state has nodes, whatever a lagging replica saw)
        fresh.restart(0)
        fresh.wait_ready()
        fresh.wait_converged()
        assert catalog(fresh, 0)[0] == version + 1


def test_snapshot_save_inspect_and_restore(tmp_path: Path):
    backup = tmp_path / "backup.fos"
    with seeded_cluster(tmp_path, "original") as original:
        expected = (catalog(original, 0), flow_edges(original, 0))
        saved = fosctl(original, "snapshot", "save", str(backup), "--json")
        assert saved.returncode == 0, saved.stderr
        report = json.loads(saved.stdout)
        assert report["from_leader"] and report["flow_version"] == expected[0][0]
    checked = run_cli("fos_raft.cli.fosctl", "snapshot", "inspect", str(backup))
    assert checked.returncode == 0 and "valid" in checked.stdout
    damaged = tmp_path / "damaged.fos"
    damaged.write_bytes(backup.read_bytes().replace(b"saw-1", b"saw-9", 1))
    refused = run_cli("fos_raft.cli.fosctl", "snapshot", "inspect", str(damaged))
    assert refused.returncode == 2 and "checksum mismatch" in refused.stderr
    bad_start = run_cli("fos_raft.cli.coordinator", "--id", "x", "--raft", "127.0.0.1:1",
                        "--grpc", "127.0.0.1:0", "--data-dir", str(tmp_path / "x"),
                        "--restore", str(damaged))
    assert bad_start.returncode == 2
    assert "checksum mismatch" in bad_start.stderr.strip().splitlines()[-1]
    restore_into_new_cluster(tmp_path, backup, expected)


def test_majority_lost_recover_from_the_survivors_data_dir(tmp_path: Path):
    backup = tmp_path / "survivor.fos"
    original = seeded_cluster(tmp_path, "original")
    try:
        original.wait_converged()
        expected = (catalog(original, 0), flow_edges(original, 0))
        for i in range(3):  # the site burns: every replica dies, two disks are lost
            original.kill(i)
        shutil.rmtree(original.data_dir(1))
        shutil.rmtree(original.data_dir(2))
        original.restart(0)  # the survivor, alone, from its data dir: no quorum
        saved = fosctl(original, "snapshot", "save", str(backup), indices=[0])
        assert saved.returncode == 0, saved.stderr
        assert "NOT a leader" in saved.stdout
    finally:
        original.stop()
    restore_into_new_cluster(tmp_path, backup, expected)


def test_replace_a_replica_whose_disk_is_gone(tmp_path: Path):
    with seeded_cluster(tmp_path, "cluster") as cluster:
        before = catalog(cluster, 0)
        cluster.kill(2)
        shutil.rmtree(cluster.data_dir(2))
        removed = fosctl(cluster, "members", "remove", cluster.raft_addresses[2],
                         indices=[0, 1])
        assert removed.returncode == 0, removed.stderr
        new = cluster.add_replica()  # empty data dir, --join
        # plaintext Raft refuses the join request from the network: add it with fosctl
        added = fosctl(cluster, "members", "add", cluster.raft_addresses[new], "--grpc",
                       cluster.grpc_addresses[new], indices=[0, 1])
        assert added.returncode == 0, added.stderr
        cluster.wait_converged([0, 1, new], timeout=30)
        assert catalog(cluster, new) == before
        members = fosctl(cluster, "members", "list", "--json", indices=[new])
        listed = {r["raft_address"] for r in json.loads(members.stdout)["replicas"]}
        assert listed == {cluster.raft_addresses[i] for i in (0, 1, new)}
        wait_until(lambda: fosctl(cluster, "health", indices=[0, 1, new]).returncode == 0,
                   30, "healthy with the new replica")
