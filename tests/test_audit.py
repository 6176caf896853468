"""The batch audit over real WALs, and each anomaly it must name."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from fos_agent.audit import audit, audit_states
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import Arrived, FlowChanged, Message, NewRequest, Produce, Reclaim
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
)
from fos_agent.storage.wal import Wal, wal_path
from fos_raft.model import ItemReq

WOOD, FRAME = ItemReq("wood", 1), ItemReq("frame", 1)


class Agents:
    """Nodes over real WALs under tmp_path/<id>/wal, effects applied synchronously."""

    def __init__(self, base: Path, configs: list[NodeConfig]) -> None:
        self.wals = {c.node_id: Wal.open(wal_path(base / c.node_id), c.node_id)
                     for c in configs}
        self.nodes = {c.node_id: Node.recover(c, self.wals[c.node_id].load())[0]
                      for c in configs}

    def on(self, node_id: str, event: object) -> list[Message]:
        effects = self.nodes[node_id].handle(event)  # type: ignore[arg-type]
        self.wals[node_id].commit(effects.writes)
        return [*effects.messages, *([effects.reply] if effects.reply else [])]

    def trade(self, consumer: str, arrive: bool = True, confirm: bool = True) -> str:
        (req,) = self.on(consumer, NewRequest("S", "wood"))
        (sent,) = self.on("S", req)
        self.on(consumer, sent)
        bid = sent.batch.batch_id  # type: ignore[union-attr]
        if arrive:
            (confirmation,) = self.on(consumer, Arrived(bid))
            if confirm:
                self.on("S", confirmation)
        return bid

    def close(self) -> None:
        for wal in self.wals.values():
            wal.close()


@pytest.fixture
def agents(tmp_path: Path):
    configs = [NodeConfig("S", WOOD), NodeConfig("C1", FRAME, (WOOD,)),
               NodeConfig("C2", FRAME, (WOOD,))]
    a = Agents(tmp_path, configs)
    try:
        a.on("S", FlowChanged(1, frozenset({"C1", "C2"})))
        for _ in range(7):
            a.on("S", Produce())
        a.trade("C1")  # S:1 delivered, then consumed by C1
        (inputs,) = [a.nodes["C1"].hold_inputs()]
        a.on("C1", Produce(inputs))
        a.trade("C1")  # S:2 delivered, QUEUED at C1
        a.trade("C2", confirm=False)  # S:3 QUEUED at C2, confirmation pending
        a.trade("C2", arrive=False)  # S:4 IN_TRANSIT at both
        a.trade("C2")  # S:5 delivered to C2 (which is then decommissioned)
        a.trade("C2", arrive=False)  # S:6 IN_TRANSIT at both
        yield a
    finally:
        a.close()


def test_counts_on_real_wals_while_open_and_after(agents: Agents, tmp_path: Path) -> None:
    report = audit({n: tmp_path / n for n in ("S", "C1", "C2")})  # data dirs resolve
    assert report.ok, report.summary()
    assert (report.produced, report.consumed, report.delivered) == (8, 1, 3)
    assert report.produced_by == {"S": 7, "C1": 1}
    # outbound QUEUED: S:7 and C1:1; inbound QUEUED: S:2 at C1, S:3 and S:5 at C2
    assert report.queued == 5
    assert report.in_transit == ["S:3", "S:4", "S:6"]
    assert report.lost == report.duplicated == report.inconsistent == report.unverified == []
    quiescent = audit([wal_path(tmp_path / n) for n in ("S", "C1", "C2")], quiescent=True)
    assert quiescent.lost == ["S:4", "S:6"]  # S:3 is QUEUED at C2: only unconfirmed

    agents.on("S", FlowChanged(2, frozenset({"C1"})))
    agents.on("S", Reclaim("C2"))
    agents.close()
    partial = audit({"S": tmp_path / "S", "C1": tmp_path / "C1"})  # C2 decommissioned
    # everything still IN_TRANSIT to C2 (S:3 unconfirmed, S:4, S:6) comes back as copies
    assert partial.reclaimed == 3 and partial.produced == 8  # copies are not production
    assert partial.unverified == ["S:5"] and partial.ok
    full = audit([tmp_path / n for n in ("S", "C1", "C2")])
    # C2 (decommissioned) still holds the reclaimed goods
    assert full.duplicated == ["S:3", "S:4", "S:6"], full.summary()
    assert "FAILED" in full.summary() and "reclaimed by S" in full.summary()


def test_deleting_a_consumer_record_shows_as_lost(agents: Agents, tmp_path: Path) -> None:
    agents.close()
    env = lmdb.open(str(wal_path(tmp_path / "C1")), max_dbs=4)
    with env.begin(write=True) as txn:
        assert txn.delete(b"S:2", db=env.open_db(b"inbound", txn=txn))
    env.close()
    report = audit([tmp_path / n for n in ("S", "C1", "C2")])
    assert report.lost == ["S:2"] and not report.ok
    assert any("DELIVERED by S but C1 has no record" in p for p in report.problems)


def test_mapping_must_match_the_node_in_the_wal(agents: Agents, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WAL of 'C1', not 'S'"):
        audit({"S": tmp_path / "C1"})
    with pytest.raises(ValueError, match="two WALs"):
        audit([tmp_path / "S", tmp_path / "S"])


def _batch(bid: str, lineage: tuple[str, ...] = ()) -> Batch:
    producer, seq = bid.split(":")
    return Batch(bid, "wood", 1, producer, int(seq), lineage)


def _states() -> dict[str, DurableState]:
    s, c1, c2 = DurableState("S"), DurableState("C1"), DurableState("C2")
    s.outbound["S:1"] = OutboundRecord(_batch("S:1"), OutState.DELIVERED, "C1", "r1")
    c1.inbound["S:1"] = InboundRecord(_batch("S:1"), InState.CONSUMED, "S")
    c1.outbound["C1:1"] = OutboundRecord(_batch("C1:1", ("S:1",)), OutState.QUEUED)
    return {"S": s, "C1": c1, "C2": c2}


def test_each_anomaly_is_named() -> None:
    assert audit_states(_states()).ok

    states = _states()
    states["C2"].inbound["S:1"] = InboundRecord(_batch("S:1"), InState.QUEUED, "S")
    report = audit_states(states)
    assert report.duplicated == ["S:1"]  # two inbound WALs, and C2 is not its consumer

    states = _states()
    states["C1"].outbound["C1:2"] = OutboundRecord(_batch("C1:2", ("S:1",)), OutState.QUEUED)
    assert audit_states(states).duplicated == ["S:1"]  # consumed twice

    states = _states()
    states["S"].outbound["S:2"] = OutboundRecord(_batch("S:2"), OutState.QUEUED)
    states["C2"].inbound["S:2"] = InboundRecord(_batch("S:2"), InState.QUEUED, "S")
    assert audit_states(states).duplicated == ["S:2"]  # held while still QUEUED at S

    states = _states()
    states["C2"].inbound["S:9"] = InboundRecord(_batch("S:9"), InState.QUEUED, "S")
    assert audit_states(states).inconsistent == ["S:9"]  # S never made it

    states = _states()
    del states["C1"].outbound["C1:1"]
    assert audit_states(states).inconsistent == ["S:1"]  # consumed without output (I5)

    states = _states()
    states["C1"].inbound["S:1"] = InboundRecord(_batch("S:1"), InState.IN_TRANSIT, "S")
    report = audit_states(states)
    assert "S:1" in report.lost and "S:1" in report.inconsistent  # DELIVERED, not arrived
