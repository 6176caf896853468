"""Forged and malformed peer messages against real agents (plaintext: anyone on the plant
network may send anything and name any node).

Real gRPC over loopback, real LMDB WALs, a real 3-replica coordinator cluster; agents in
the test's event loop. The protocol refuses what is malformed before the WAL
(fos_agent.protocol.validate) and believes a plaintext confirmation only when the
consumer itself answers the supplier's offer.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest
from agent_util import eventually, peer_stub
from coord_util import running_cluster

from fos_agent import Agent, AgentSettings, ItemReq
from fos_agent.audit import audit
from fos_agent.protocol.records import InState, OutState
from fos_agent.runtime.inputs import FetchSettings
from fos_agent.storage.wal import read_wal, wal_path
from fos_pb import agent_pb2
from fos_raft.cli.launcher import LocalCluster

NO_FETCH = AgentSettings(fetch=FetchSettings(prefetch=0))  # the test decides who asks


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(3, tmp_path_factory.mktemp("agent-forgery-coord")) as c:
        yield c


def make(cluster: LocalCluster, base: Path, node: str, produces: ItemReq,
         requires: tuple[ItemReq, ...] = (), **kw: object) -> Agent:
    return Agent(node, produces, requires, coordinators=cluster.grpc_addresses,
                 data_dir=base / node, **kw)  # type: ignore[arg-type]


def _batch(batch_id: str, item: str = "fgwood", qty: int = 1, producer: str = "fg-saw",
           seq: int = 4, lineage: tuple[str, ...] = ()) -> agent_pb2.Batch:
    return agent_pb2.Batch(batch_id=batch_id, item=item, qty=qty, producer=producer, seq=seq,
                           lineage=list(lineage))


async def test_forged_offers_are_refused_and_never_taken(cluster: LocalCluster,
                                                         tmp_path: Path):
    saw = make(cluster, tmp_path, "fg-saw", ItemReq("fgwood", 1))
    press = make(cluster, tmp_path, "fg-press", ItemReq("fgframe", 1),
                 (ItemReq("fgwood", 1),), settings=NO_FETCH)
    forged = {
        "qty": ("fg-saw", _batch("fg-saw:4", qty=-3)),
        "batch_id": ("fg-saw", _batch("x")),
        "item": ("fg-saw", _batch("fg-saw:4", item="gold")),
        "producer": ("ghost", _batch("ghost:1", item="gold", producer="ghost", seq=1)),
        "lineage": ("fg-saw", _batch("fg-saw:4", lineage=("fg-saw:1" + "0" * 3_000_000,))),
        "not ours": ("fg-saw", _batch("fg-saw:4", producer="fg-saw2")),
    }
    async with saw, press:
        async with peer_stub(press.address) as stub:
            for case, (supplier, batch) in forged.items():
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.OfferBatch(agent_pb2.OfferBatchRequest(
                        batch=batch, supplier=supplier, consumer="fg-press"), timeout=10)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
            # a 1 MB batch id is answered as invalid, not as a WAL failure
            for call in (stub.DeliveryConfirmed, stub.WaitingForBatch):
                with pytest.raises(grpc.aio.AioRpcError) as huge:
                    await call(agent_pb2.BatchRef(batch_id="x" * 1_000_000, supplier="fg-press",
                                                  consumer="fg-saw"), timeout=10)
                assert huge.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "recovering" not in (huge.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as lineage:
                await stub.Lineage(agent_pb2.LineageRequest(batch_ids=["y" * 1_000_000]),
                                   timeout=10)
            assert lineage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # a well-formed offer from the real supplier's name is still taken (goods sent
            # must not be lost, flow or no flow)
            good = await stub.OfferBatch(agent_pb2.OfferBatchRequest(
                batch=_batch("fg-saw:4"), supplier="fg-saw", consumer="fg-press"), timeout=10)
            assert good.state == agent_pb2.INBOUND_QUEUED
        refused_total = sum(v for k, v in press.metrics.items() if k.startswith("refused:"))
        assert refused_total == len(forged) + 2
        assert press.metrics["refused:qty"] == 1 and press.metrics["refused:item"] == 2
        assert press.metrics["batches_received"] == 1
    assert set(read_wal(wal_path(tmp_path / "fg-press")).inbound) == {"fg-saw:4"}


async def test_posing_as_a_consumer_does_not_lose_the_batch(cluster: LocalCluster,
                                                            tmp_path: Path):
    """A forged request in a consumer's name takes a batch off the supplier, and a forged
    confirmation 2 ms later would settle it: the supplier asks the real consumer instead,
    which takes the batch, so the audit finds it exactly once."""
    saw = make(cluster, tmp_path, "fh-saw", ItemReq("fhwood", 1))
    press = make(cluster, tmp_path, "fh-press", ItemReq("fhframe", 1),
                 (ItemReq("fhwood", 1),), settings=NO_FETCH)
    async with saw, press:
        await eventually(lambda: "fh-press" in saw.flow.consumers, what="the flow")
        made = await saw.emit()
        async with peer_stub(saw.address) as stub:
            reply = await stub.RequestBatch(agent_pb2.RequestBatchRequest(
                request_id="fh-press~1~99", consumer="fh-press", item="fhwood", qty=1,
                flow_version=saw.flow.version), timeout=10)
            assert reply.sent.batch_id == made.batch_id  # the forger has it
            await stub.DeliveryConfirmed(agent_pb2.BatchRef(
                batch_id=made.batch_id, supplier="fh-saw", consumer="fh-press"), timeout=10)
            # a confirmation of a batch never sent to that consumer is refused
            with pytest.raises(grpc.aio.AioRpcError) as never:
                await stub.DeliveryConfirmed(agent_pb2.BatchRef(
                    batch_id="fh-saw:999", supplier="fh-saw", consumer="fh-press"),
                    timeout=10)
            assert never.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        node = press.engine.node
        await eventually(lambda: node.inbound(made.batch_id) is not None, what="press has it")
        await eventually(lambda: saw.engine.node.outbound(made.batch_id).state
                         is OutState.DELIVERED, what="settled by the press's own answer")
        assert press.engine.node.inbound(made.batch_id).state is InState.QUEUED
        assert saw.metrics["refused:not_sent"] == 1
    report = audit([tmp_path / "fh-saw", tmp_path / "fh-press"])
    assert report.ok and not report.lost, report.summary()
    assert report.unverified == [], report.summary()
