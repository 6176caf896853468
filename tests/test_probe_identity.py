"""The node at an address must prove it is that node: the coordinator's suspicion probe and
the agents' Pings, plaintext, against a real coordinator process and in-process agents
(real gRPC over loopback, real WALs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_util import eventually, peer_stub
from coord_util import running_cluster

from fos_agent import Agent, AgentSettings, ItemReq
from fos_pb import agent_pb2
from fos_raft.api.client import CoordinatorClient
from fos_raft.api.suspicion import ProbeSettings, identity_mismatch, probe_health
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.model import NodeSpec


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(1, tmp_path_factory.mktemp("probe-identity")) as c:
        yield c


@contextlib.asynccontextmanager
async def coordinator(cluster: LocalCluster) -> AsyncIterator[CoordinatorClient]:
    async with CoordinatorClient(cluster.grpc_addresses) as client:
        yield client


async def _register_reporter(cluster: LocalCluster, node: str) -> None:
    """A registered node nobody runs: the test reports suspicions in its name."""
    async with coordinator(cluster) as client:
        await client.register(NodeSpec(node, f"127.0.0.1:{free_port()}", ItemReq(node, 1)))


def make(cluster: LocalCluster, base: Path, node: str, produces: ItemReq,
         requires: tuple[ItemReq, ...] = (), **kw: object) -> Agent:
    return Agent(node, produces, requires, coordinators=cluster.grpc_addresses,
                 data_dir=base / node, **kw)  # type: ignore[arg-type]


async def test_an_impostor_at_the_address_does_not_refute_but_the_node_itself_does(
        cluster: LocalCluster, tmp_path: Path) -> None:
    await _register_reporter(cluster, "pi-rep")
    port = free_port()
    victim = make(cluster, tmp_path, "pi-victim", ItemReq("piv", 1),
                  listen=f"127.0.0.1:{port}",
                  settings=AgentSettings(leave_on_stop=False))  # it dies without a goodbye
    async with victim, coordinator(cluster) as client:
        # the node itself answers: no false death
        outcome, _ = await client.report_suspect("pi-rep", "pi-victim", "test")
        assert outcome == "REFUTED"
    # another factory's agent (another node id) now serves at the dead node's address
    impostor = make(cluster, tmp_path, "pi-other", ItemReq("pio", 1),
                    listen=f"127.0.0.1:{port}")
    async with impostor, coordinator(cluster) as client:
        assert impostor.address == victim.address
        outcome, _ = await client.report_suspect("pi-rep", "pi-victim", "test")
        assert outcome == "MARKED_DOWN"
        nodes = {n.spec.node_id: n for n in (await client.list_nodes()).nodes}
        assert not nodes["pi-victim"].alive and nodes["pi-other"].alive


async def test_the_probe_checks_the_node_id_and_refuses_an_older_incarnation(
        cluster: LocalCluster, tmp_path: Path) -> None:
    fast = ProbeSettings(timeout=2.0, tries=2, interval=0.05, patience=2.0)
    agent = make(cluster, tmp_path, "pi-inc", ItemReq("pii", 1))
    async with agent:
        assert agent.incarnation == 1
        assert await probe_health(agent.address, fast, node="pi-inc", incarnation=1)
        assert not await probe_health(agent.address, fast, node="pi-someone")
        # the coordinator knows a later life of it: this one is a leftover
        assert not await probe_health(agent.address, fast, node="pi-inc", incarnation=2)
    reply = agent_pb2.PingReply(node_id="n", incarnation=3)
    assert identity_mismatch(reply, "n", 3) == "" and identity_mismatch(reply, "n", 2) == ""
    assert "older" in identity_mismatch(reply, "n", 4)


async def test_a_ping_is_believed_only_from_a_proven_flow_neighbour(
        cluster: LocalCluster, tmp_path: Path) -> None:
    sup = make(cluster, tmp_path, "pp-sup", ItemReq("ppw", 1), cycle_s=0.05)
    con = make(cluster, tmp_path, "pp-con", ItemReq("ppf", 1), (ItemReq("ppw", 1),),
               cycle_s=0.05)
    async with sup, con:
        await eventually(lambda: "pp-sup" in con.detector.watched, what="a watched supplier")
        async with peer_stub(con.address) as stub:
            reply = await stub.Ping(agent_pb2.PingRequest(from_node="pp-stranger"), timeout=5)
            # the reply proves who answered; the Ping is not contact from the stranger
            assert reply.node_id == "pp-con" and reply.incarnation == con.incarnation
            assert con.metrics["refused_pings"] == 1
            # a neighbour's name with an incarnation it never proved: not believed either
            await stub.Ping(agent_pb2.PingRequest(from_node="pp-sup", from_incarnation=99),
                            timeout=5)
            assert con.metrics["refused_pings"] == 2
            # an identity query (the coordinator's probe) is neither contact nor refused
            await stub.Ping(agent_pb2.PingRequest(), timeout=5)
            assert con.metrics["refused_pings"] == 2


async def test_spoofed_pings_in_a_dead_suppliers_name_do_not_keep_it_alive(
        cluster: LocalCluster, tmp_path: Path) -> None:
    sup = make(cluster, tmp_path, "ps-sup", ItemReq("psw", 1), cycle_s=0.05,
               settings=AgentSettings(leave_on_stop=False))  # it dies without a goodbye
    con = make(cluster, tmp_path, "ps-con", ItemReq("psf", 1), (ItemReq("psw", 1),),
               cycle_s=0.05, settings=AgentSettings())
    async with con:
        async with sup:
            await eventually(lambda: con.metrics.get("batches_received_from:ps-sup", 0) >= 2,
                             what="trading")
            incarnation = sup.incarnation
        spoofing = True

        async def spoof() -> None:  # in plaintext anyone may claim to be the supplier
            async with peer_stub(con.address) as stub:
                while spoofing:
                    with contextlib.suppress(Exception):
                        await stub.Ping(agent_pb2.PingRequest(
                            from_node="ps-sup", from_incarnation=incarnation), timeout=2)
                    await asyncio.sleep(0.05)

        task = asyncio.ensure_future(spoof())
        try:
            await eventually(lambda: ("ps-sup", "MARKED_DOWN") in con.detector.outcomes,
                             what="the dead supplier reported despite the spoofed pings")
            assert con.metrics["refused_pings"] >= 1
        finally:
            spoofing = False
            await task
