"""``agent.lineage()`` and the ``Lineage`` RPC of two in-process agents trading over real
gRPC with real WALs, compaction running every 0.2 s (a real 3-replica coordinator)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_util import eventually, peer_stub

from fos_agent import Agent, AgentSettings, ItemReq
from fos_pb import agent_pb2
from fos_raft.cli.launcher import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    c = LocalCluster(3, tmp_path_factory.mktemp("lineage-agent-coord"))
    try:
        c.start()
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


async def test_lineage_api_and_rpc_over_compacted_wals(cluster: LocalCluster,
                                                       tmp_path: Path) -> None:
    settings = AgentSettings(compact_s=0.2)
    wood = Agent("l10-wood", ItemReq("l10wood", 1), coordinators=cluster.grpc_addresses,
                 data_dir=tmp_path / "wood", cycle_s=0.05, settings=settings)
    frame = Agent("l10-frame", ItemReq("l10frame", 1), (ItemReq("l10wood", 1),),
                  coordinators=cluster.grpc_addresses, data_dir=tmp_path / "frame",
                  cycle_s=0.05, settings=settings)
    async with wood, frame:
        await eventually(lambda: frame.metrics["successful_cycles"] >= 3, what="3 frames")
        made = frame.lineage("l10-frame:1").made
        assert made is not None and made.item == "l10frame"
        ((source, supplier),) = made.inputs
        assert supplier == "l10-wood"
        assert frame.lineage(source).used.into == "l10-frame:1"  # type: ignore[union-attr]
        await eventually(lambda: (m := wood.lineage(source).made) is not None
                         and m.delivered_to == "l10-frame", what="delivery recorded")
        # compaction ran: the consumed input left the frame's live WAL, its genealogy stayed
        await eventually(lambda: source not in frame.engine.wal.load().inbound,  # type: ignore[union-attr]
                         what="input compacted")
        assert frame.engine.node.inbound(source) is None  # type: ignore[union-attr]
        assert frame.lineage("nobody:1").made is None
        async with peer_stub(frame.address) as stub:
            reply = await stub.Lineage(agent_pb2.LineageRequest(
                batch_ids=["l10-frame:1", source, "nobody:1"]), timeout=5)
        assert reply.node_id == "l10-frame"
        assert [m.batch_id for m in reply.made] == ["l10-frame:1"]
        assert [(i.batch_id, i.supplier) for i in reply.made[0].inputs] == [(source, supplier)]
        assert [(u.batch_id, u.into) for u in reply.used] == [(source, "l10-frame:1")]
