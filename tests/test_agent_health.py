"""An agent's health: SERVING once it has a flow and a writable WAL, NOT_SERVING when its
WAL stops taking writes; /readyz and /metrics on a real fos-agent process; a --metrics
port in use fails in one line."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc.aio
import pytest
from agent_util import Procs, agent_command, eventually, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ops_util import http_get

from fos_agent import Agent, ItemReq
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCluster(3, tmp_path_factory.mktemp("agent-health-coord"))
    try:
        c.start()
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


@pytest.fixture
def procs(tmp_path: Path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


async def health_of(address: str) -> int:
    keep_grpc_aio_running()
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    return reply.status


async def test_agent_not_serving_once_its_wal_cannot_commit(cluster: LocalCluster,
                                                           tmp_path: Path):
    # no stage (no cycle_s): nothing commits behind the test's back and reopens the WAL
    agent = Agent("h-wood", ItemReq("hwood", 1), (), coordinators=cluster.grpc_addresses,
                  data_dir=tmp_path / "h-wood")
    async with agent:
        await eventually(lambda: agent.flow.version > 0, what="a flow")
        await eventually(lambda: agent.health.current.serving, what="serving")
        assert await health_of(agent.address) == health_pb2.HealthCheckResponse.SERVING
        await agent.engine.close()  # the WAL is gone: nothing can be made durable
        await eventually(lambda: not agent.health.current.serving, what="not serving")
        assert "WAL" in agent.health.current.reason
        assert await health_of(agent.address) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_agent_process_readyz_and_metrics(cluster: LocalCluster, procs: Procs,
                                          tmp_path: Path):
    metrics = f"127.0.0.1:{free_port()}"
    ready = tmp_path / "ready"
    procs.start("p-wood", [*agent_command(), "--node-id", "p-wood", "--listen",
                           "127.0.0.1:0", "--coordinators", ",".join(cluster.grpc_addresses),
                           "--data-dir", str(tmp_path / "p-wood"), "--produces", "pwood:1",
                           "--cycle-s", "0.05", "--metrics", metrics,
                           "--ready-file", str(ready)])
    wait_until(ready.exists, 30, "agent ready")
    wait_until(lambda: http_get(f"http://{metrics}/readyz")[0] == 200, 30, "readyz 200")
    assert http_get(f"http://{metrics}/healthz")[0] == 200
    text = http_get(f"http://{metrics}/metrics")[1]
    for name in ('fos_agent_wal_commit_seconds_bucket{le="+Inf",node="p-wood"}',
                 "fos_agent_cycle_seconds_count", "fos_build_info{",
                 "process_cpu_seconds_total", 'fos_agent_flow_version{node="p-wood"}'):
        assert name in text, name


def test_agent_metrics_port_in_use_is_one_line(cluster: LocalCluster, tmp_path: Path):
    from ops_util import run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("fos_agent.cli", "--node-id", "x-wood", "--listen", "127.0.0.1:0",
                       "--coordinators", ",".join(cluster.grpc_addresses), "--data-dir",
                       str(tmp_path / "x"), "--produces", "xwood:1",
                       "--metrics", f"127.0.0.1:{port}")
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "--metrics" in done.stderr and "Traceback" not in done.stderr
