"""Security (docs/security.md), end to end on real processes.

One throwaway CA (fos_raft.security.certs) signs a certificate per identity. Three coordinator
replicas serve mutual TLS; r0 and r1 share a Raft password, r2 has a wrong one. An agent
host process runs the chain a (wood) -> b (frame) -> c (window), each agent with the
certificate of its node id. Checked: the chain trades over mTLS with a two-replica quorum
while r2 never joins; callers without a certificate (or with one from another CA) are
refused; a node cannot act for another on the coordinator or on a peer
(PERMISSION_DENIED); the admin name (fosctl) can decommission, a node cannot; the suspicion
probe refutes only for a server that carries the suspect's name.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from agent_util import Procs, wait_until

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.api.suspicion import ProbeSettings, probe_health
from fos_raft.cli.launcher import LocalCluster
from fos_raft.security.certs import CertAuthority
from fos_raft.security.tls import TlsConfig, TlsError, sync_channel

NAMES = ("fos-coordinator", "fosctl", "a", "b", "c", "floor-display")
CHAIN = (("a", "wood:1", []), ("b", "frame:1", ["wood:1"]), ("c", "window:1", ["frame:1"]))


@dataclass
class Setup:
    certs: Path
    tls: dict[str, TlsConfig]
    cluster: LocalCluster
    live: list[str]  # gRPC addresses of the replicas that share the Raft password
    agents: dict[str, str]  # node -> address

    def stub(self, who: str) -> pb_grpc.CoordinatorStub:
        return pb_grpc.CoordinatorStub(sync_channel(self.live[0], self.tls[who]))

    def peer(self, who: str, node: str) -> agent_pb2_grpc.AgentStub:
        return agent_pb2_grpc.AgentStub(sync_channel(self.agents[node], self.tls[who], node))


def _denied(call: object, *args: object) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=10)  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
    return str(info.value.details())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("security")
    certs = root / "certs"
    ca = CertAuthority.create()
    ca_pem = ca.write(certs)
    tls = {}
    for name in NAMES:
        issued = ca.issue(name, certs)
        tls[name] = TlsConfig(issued.cert, issued.key, ca_pem).load()
    # fos-coordinator refuses password files others may read and passwords under 16 bytes
    for name, password in (("raft.pw", "correct horse battery"),
                           ("wrong.pw", "battery staple horse")):
        (root / name).write_text(password + "\n")
        (root / name).chmod(0o600)
    cluster = LocalCluster(3, root / "coord", tls=tls["fos-coordinator"],
                           raft_password_file=root / "raft.pw", admin_names="fosctl,ops")
    cluster.replica_flags[2] = ["--raft-password-file", str(root / "wrong.pw")]
    procs = Procs(root)
    try:
        cluster.start()
        cluster.wait_for_leader(20)
        live = cluster.grpc_addresses[:2]
        config = {"tls": {"ca": str(ca_pem), "cert_dir": str(certs)}, "agents": [
            {"node_id": node, "listen": "127.0.0.1:0", "data_dir": str(root / node),
             "produces": produces, "requires": requires, "cycle_s": 0.1}
            for node, produces, requires in CHAIN]}
        (root / "agents.json").write_text(json.dumps(config))
        ready = root / "agents.ready"
        host = procs.start("host", [sys.executable, "-m", "fos_agent.host", "--config",
                                    str(root / "agents.json"), "--coordinators",
                                    ",".join(live), "--ready-file", str(ready)])

        def host_ready() -> bool:
            assert host.poll() is None, procs.log_tail("host")
            return ready.exists()

        wait_until(host_ready, 30, "the agent host")
        yield Setup(certs, tls, cluster, live, json.loads(ready.read_text()))
    finally:
        procs.stop_all()
        cluster.stop()


def _counter(setup: Setup, node: str, name: str) -> float:
    try:
        reply = setup.peer("fosctl", node).Stats(agent_pb2.StatsRequest(), timeout=5)
    except grpc.RpcError:
        return -1.0
    return reply.counters[name]


def test_chain_trades_over_mtls(setup: Setup) -> None:
    wait_until(lambda: _counter(setup, "c", "successful_cycles") >= 3, 30,
               "windows made over mTLS")
    assert _counter(setup, "b", "batches_received") >= 3


def test_the_dashboard_reads_the_cluster_and_agents_over_mtls(setup: Setup,
                                                              tmp_path: Path) -> None:
    """fos-dashboard with a certificate that is neither admin nor a node: reads need none."""
    ready = tmp_path / "url"
    procs = Procs(tmp_path)
    script = Path(sys.executable).parent / "fos-dashboard"
    try:
        procs.start("dashboard", [
            str(script), "--coordinators", ",".join(setup.live), "--listen", "127.0.0.1:0",
            "--ready-file", str(ready), "--tls-cert", str(setup.tls["floor-display"].cert),
            "--tls-key", str(setup.tls["floor-display"].key),
            "--tls-ca", str(setup.tls["floor-display"].ca)])
        wait_until(ready.exists, 30, "the dashboard serving")
        url = ready.read_text().strip() + "api/state"

        def cycles_shown() -> bool:
            with urllib.request.urlopen(url, timeout=10) as reply:
                state = json.loads(reply.read())
            rows = {r["id"]: r for r in state["nodes"]}
            return (set(rows) >= {"a", "b", "c"} and state["cluster"]["reachable"]
                    and rows["c"]["stats"].get("successful_cycles", 0) >= 1)

        wait_until(cycles_shown, 30, "nodes and agents' Stats read over mTLS")
    finally:
        procs.stop_all()


def test_replica_with_the_wrong_raft_password_never_joins(setup: Setup) -> None:
    wait_until(lambda: setup.stub("fosctl").ListNodes(pb.ListNodesRequest(), timeout=5).nodes,
               30, "the agents registered")
    leader = setup.cluster.status(0)
    assert leader.leader and leader.leader != setup.cluster.raft_addresses[2]
    assert leader.applied_index > 0
    outsider = setup.cluster.status(2)  # serves gRPC (same CA), but hears no Raft
    assert outsider.leader == "" and outsider.applied_index < leader.applied_index
    assert outsider.nodes_total == 0 and outsider.state_digest != leader.state_digest
    others = {r.raft_address: r.connected for r in leader.replicas if not r.is_self}
    assert others[setup.cluster.raft_addresses[2]] is False


def test_callers_without_a_valid_certificate_are_refused(setup: Setup, tmp_path: Path) -> None:
    foreign_ca = CertAuthority.create("another CA")
    foreign_ca_pem = foreign_ca.write(tmp_path)
    issued = foreign_ca.issue("fosctl", tmp_path)
    foreign = TlsConfig(issued.cert, issued.key, setup.tls["fosctl"].ca).load()
    no_cert = grpc.ssl_channel_credentials(root_certificates=setup.tls["fosctl"].ca.read_bytes())
    for address, name in ((setup.live[0], "fos-coordinator"), (setup.agents["b"], "b")):
        channels = [
            grpc.insecure_channel(address),
            grpc.secure_channel(address, no_cert,
                                options=[("grpc.ssl_target_name_override", name)]),
            sync_channel(address, foreign, name),
        ]
        for channel in channels:
            with channel, pytest.raises(grpc.RpcError) as info:
                pb_grpc.CoordinatorStub(channel).ClusterStatus(pb.ClusterStatusRequest(),
                                                               timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # our clients do not trust a server whose certificate comes from another CA either
    impostor = TlsConfig(issued.cert, issued.key, foreign_ca_pem).load()
    with sync_channel(setup.live[0], impostor, "fos-coordinator") as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.CoordinatorStub(channel).ClusterStatus(pb.ClusterStatusRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_node_cannot_act_for_another(setup: Setup) -> None:
    a = setup.stub("a")
    message = _denied(a.Drain, pb.NodeRequest(node_id="b"))
    assert "'a' may not drain node 'b'" in message
    _denied(a.Undrain, pb.NodeRequest(node_id="b"))
    _denied(a.Rejoin, pb.RejoinRequest(node_id="b", address="127.0.0.1:1"))
    assert "'a' may not leave as node 'b'" in _denied(a.Leave, pb.LeaveRequest(node_id="b"))
    spec = pb.NodeSpec(node_id="b", address="127.0.0.1:1",
                       produces=pb.ItemReq(item="frame", qty=1))
    _denied(a.Register, pb.RegisterRequest(spec=spec))
    _denied(a.UpdateSpec, pb.UpdateSpecRequest(spec=spec))
    _denied(a.ReportSuspect, pb.ReportSuspectRequest(suspect="c", reporter="b"))
    assert "admin only" in _denied(a.Decommission, pb.NodeRequest(node_id="a"))
    _denied(a.AddMember, pb.MemberRequest(raft_address="127.0.0.1:1"))
    # reads need only a valid certificate
    assert a.ListNodes(pb.ListNodesRequest(), timeout=10).flow_version > 0
    # on the peer links: a request names its caller
    request = agent_pb2.RequestBatchRequest(consumer="c", request_id="forged-1", item="frame",
                                            flow_version=1)
    assert "may not act as consumer 'c'" in _denied(setup.peer("a", "b").RequestBatch, request)
    forged = agent_pb2.RequestBatchRequest(consumer="b", request_id="forged-2", item="wood",
                                           flow_version=1)
    _denied(setup.peer("c", "a").RequestBatch, forged)
    _denied(setup.peer("c", "b").DeliveryConfirmed,
            agent_pb2.BatchRef(supplier="b", consumer="a", batch_id="x"))
    _denied(setup.peer("c", "b").Ping, agent_pb2.PingRequest(from_node="a"))
    assert _counter(setup, "b", "refused_identity") >= 3


def _fosctl(setup: Setup, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    tls = setup.tls[who]
    env = {**os.environ, "FOS_TLS_CERT": str(tls.cert), "FOS_TLS_KEY": str(tls.key),
           "FOS_TLS_CA": str(tls.ca), "FOS_COORDINATORS": ",".join(setup.live)}
    return subprocess.run([sys.executable, "-m", "fos_raft.cli.fosctl", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_only_the_admin_decommissions(setup: Setup) -> None:
    admin = setup.stub("fosctl")
    spec = pb.NodeSpec(node_id="spare", address="127.0.0.1:1",
                       produces=pb.ItemReq(item="bolt", qty=1))
    admin.Register(pb.RegisterRequest(spec=spec), timeout=10)  # an admin acts for any node
    refused = _fosctl(setup, "a", "decommission", "spare")
    assert refused.returncode == 1, refused
    assert "PERMISSION_DENIED" in refused.stderr and "admin only" in refused.stderr
    done = _fosctl(setup, "fosctl", "decommission", "spare")
    assert done.returncode == 0, done.stderr
    nodes = {n.spec.node_id for n in admin.ListNodes(pb.ListNodesRequest(), timeout=10).nodes}
    assert "spare" not in nodes and {"a", "b", "c"} <= nodes


def test_probe_refutes_only_for_the_suspects_own_certificate(setup: Setup) -> None:
    probe = ProbeSettings(timeout=2.0, tries=3, interval=0.05, patience=3.0)
    coordinator = setup.tls["fos-coordinator"]
    address = setup.agents["b"]
    assert asyncio.run(probe_health(address, probe, coordinator, "b")) is True
    # another process answering on a dead node's port does not refute its death
    assert asyncio.run(probe_health(address, probe, coordinator, "gone")) is False


def test_a_certificate_must_name_the_process(setup: Setup, tmp_path: Path) -> None:
    # parsers and checks only: main() would reconfigure this test process's logging
    from fos_agent import cli as agent_cli
    from fos_raft.cli import coordinator as cli_coordinator
    a = setup.tls["a"]
    flags = ["--tls-cert", str(a.cert), "--tls-key", str(a.key), "--tls-ca", str(a.ca)]
    agent_args = ["--listen", "127.0.0.1:0", "--coordinators", setup.live[0],
                  "--data-dir", str(tmp_path / "agent")]
    with pytest.raises(agent_cli.UsageError, match="but the node id 'b' must be one of them"):
        agent_cli.agent_from_args(agent_cli.build_parser().parse_args(
            ["--node-id", "b", *agent_args, *flags]))
    with pytest.raises(agent_cli.UsageError, match="missing --tls-key --tls-ca"):
        agent_cli.agent_from_args(agent_cli.build_parser().parse_args(
            ["--node-id", "a", *agent_args, "--tls-cert", str(a.cert)]))
    coordinator_args = cli_coordinator.build_parser().parse_args(
        ["--id", "x", "--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "x"), *flags])
    with pytest.raises(TlsError, match="the coordinator name 'fos-coordinator'"):
        cli_coordinator.security_from_args(coordinator_args)


def test_a_suspicion_reported_to_a_follower_is_forwarded_over_mtls(setup: Setup) -> None:
    admin = setup.stub("fosctl")
    spec = pb.NodeSpec(node_id="ghost", address="127.0.0.1:1",  # nothing listens there
                       produces=pb.ItemReq(item="nut", qty=1))
    # an agent that registered (alive) and then vanished: an operator's catalog entry would
    # be not-started, and a suspicion of it ALREADY_DOWN
    admin.Register(pb.RegisterRequest(spec=spec, from_agent=True), timeout=10)
    leader = setup.cluster.status(0).leader
    follower = next(i for i in (0, 1) if setup.cluster.raft_addresses[i] != leader)
    a = pb_grpc.CoordinatorStub(sync_channel(setup.live[follower], setup.tls["a"]))
    reply = a.ReportSuspect(pb.ReportSuspectRequest(suspect="ghost", reporter="a"), timeout=15)
    assert reply.outcome == pb.ReportSuspectReply.MARKED_DOWN
