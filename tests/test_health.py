"""Truthful health on real replicas: a replica without a quorum says NOT_SERVING (gRPC
health, /readyz, fosctl health exits 1) and serves again once the majority is back."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from coord_util import WINDOW_FACTORY, register_all, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ops_util import fosctl, http_get, ready_line

from fos_raft.cli.launcher import LocalCluster

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def grpc_health(cluster: LocalCluster, i: int) -> int:
    try:
        return health_pb2_grpc.HealthStub(cluster.channel(i)).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2).status
    except grpc.RpcError:
        return -1


@pytest.fixture
def cluster(tmp_path: Path):
    c = LocalCluster(3, tmp_path / "cluster")
    for i in range(3):
        c.replica_flags[i] = ["--metrics", "127.0.0.1:0"]
    with c:
        c.wait_ready()
        yield c


def test_replica_without_quorum_is_not_serving_and_recovers(cluster: LocalCluster):
    wait_until(lambda: fosctl(cluster, "health").returncode == 0, 30, "fosctl health 0")
    done = fosctl(cluster, "health")
    assert len(done.stdout.splitlines()) == 3
    assert all("SERVING" in line and "quorum=yes" in line for line in done.stdout.splitlines())
    register_all(cluster, 0, WINDOW_FACTORY[:2])
    metrics = ready_line(cluster, 0)["metrics"]
    for path, code in (("/healthz", 200), ("/readyz", 200)):
        assert http_get(f"http://{metrics}{path}")[0] == code
    text = http_get(f"http://{metrics}/metrics")[1]
    for name in ("fos_build_info{", "fos_coordinator_rpc_seconds_bucket{",
                 "process_resident_memory_bytes", 'fos_node_up{node="saw-1"',
                 'fos_node_drained{node="saw-1"', 'fos_node_in_flow{node="saw-1"',
                 "fos_coordinator_leader_changes_total", "fos_coordinator_has_quorum"):
        assert name in text, name
    assert "fos_journal_fsync_seconds_count" in text
    assert "fos_coordinator_raft_commit_seconds_count" in http_get(
        f"http://{ready_line(cluster, cluster.leader_index())['metrics']}/metrics")[1]

    cluster.kill(1)
    cluster.kill(2)
    wait_until(lambda: grpc_health(cluster, 0) == NOT_SERVING, 20, "survivor NOT_SERVING")
    status, body = http_get(f"http://{metrics}/readyz")
    assert status == 503 and "not serving" in body
    assert http_get(f"http://{metrics}/healthz")[0] == 200  # alive all the same
    alone = fosctl(cluster, "health", "--json", indices=[0])
    assert alone.returncode == 1, alone.stdout + alone.stderr
    report = json.loads(alone.stdout)
    assert report["healthy"] is False and report["endpoints"][0]["status"] == "NOT_SERVING"
    every = fosctl(cluster, "health")
    assert every.returncode == 1 and "UNREACHABLE" in every.stdout

    cluster.restart(1)
    cluster.restart(2)
    wait_until(lambda: grpc_health(cluster, 0) == SERVING, 30, "survivor SERVING again")
    wait_until(lambda: fosctl(cluster, "health").returncode == 0, 30, "fosctl health 0 again")
    assert http_get(f"http://{metrics}/readyz")[0] == 200


async def test_coordinator_reports_seconds_since_each_nodes_last_receipt(tmp_path: Path):
    from agent_util import eventually

    from fos_agent import Agent, ItemReq

    c = LocalCluster(1, tmp_path / "solo")
    c.replica_flags[0] = ["--metrics", "127.0.0.1:0"]
    with c:
        c.wait_ready()
        metrics = ready_line(c, 0)["metrics"]
        wood = Agent("r-wood", ItemReq("rwood", 1), (), coordinators=c.grpc_addresses,
                     data_dir=tmp_path / "r-wood", cycle_s=0.05)
        frame = Agent("r-frame", ItemReq("rframe", 1), (ItemReq("rwood", 1),),
                      coordinators=c.grpc_addresses, data_dir=tmp_path / "r-frame",
                      cycle_s=0.05)
        series = ('fos_node_seconds_since_last_receipt{item="rwood",node="r-frame",'
                  'replica="r0"}')

        def since() -> float | None:
            for line in http_get(f"http://{metrics}/metrics")[1].splitlines():
                if line.startswith(series):
                    return float(line.split()[-1])
            return None

        async with wood, frame:
            await eventually(lambda: frame.metrics["batches_received"] >= 3, what="trades")
            # the watcher polls every 5 s: a fresh receipt shows within a couple of polls
            await eventually(lambda: (v := since()) is not None and v < 5.0, timeout=30,
                             what="seconds since the last receipt")
        # the suppliers stopped: the number grows (the node is still registered)
        await eventually(lambda: (v := since()) is not None and v > 5.0, timeout=30,
                         what="a growing gap")
