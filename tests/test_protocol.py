"""The pure batch protocol, event by event, and the transition rules every store enforces."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fos_agent.protocol.machine import Node, NodeConfig, ProtocolError
from fos_agent.protocol.messages import (
    Arrived,
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    Effects,
    FlowChanged,
    NewRequest,
    OfferBatch,
    OfferReply,
    Produce,
    Reclaim,
    RefusalReason,
    RequestBatch,
    RequestRefused,
    Tick,
    WaitingForBatch,
)
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    PutRequest,
    SetNextSeq,
)
from fos_agent.protocol.transitions import InvalidTransition, apply_writes
from fos_agent.testing import (
    chain as chain_topology,
)
from fos_agent.testing import (
    check_schedule,
    fault_schedules,
    two_by_two,
)
from fos_raft.model import ItemReq

DEEP = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 1
WOOD, FRAME = ItemReq("wood", 1), ItemReq("frame", 1)


class Pair:
    """A supplier S and a consumer C with in-memory stores, effects applied at once."""

    def __init__(self, immediate: bool = False) -> None:
        self.ds, self.dc = DurableState("S", incarnation=1), DurableState("C", incarnation=1)
        self.s, _ = Node.recover(NodeConfig("S", WOOD), self.ds.copy())
        self.c, _ = Node.recover(NodeConfig("C", FRAME, (WOOD,), immediate), self.dc.copy())
        self.s.handle(FlowChanged(1, frozenset({"C"})))

    def on_s(self, event: object) -> Effects:
        effects = self.s.handle(event)  # type: ignore[arg-type]
        apply_writes(self.ds, effects.writes)
        return effects

    def on_c(self, event: object) -> Effects:
        effects = self.c.handle(event)  # type: ignore[arg-type]
        apply_writes(self.dc, effects.writes)
        return effects

    def request(self) -> tuple[RequestBatch, Effects]:
        (req,) = self.on_c(NewRequest("S", "wood")).messages
        assert isinstance(req, RequestBatch)
        return req, self.on_s(req)


def test_source_production_allocates_seq_in_the_same_step() -> None:
    p = Pair()
    effects = p.on_s(Produce())
    assert [type(w) for w in effects.writes] == [PutOutbound, SetNextSeq]
    assert p.ds.outbound["S:1"].state is OutState.QUEUED and p.ds.next_seq == 2
    p.on_s(Produce())
    assert [b.batch_id for b in p.s.outbound_queued()] == ["S:1", "S:2"]
    assert p.s.queued_outbound_count == 2 and not effects.messages


def test_full_trade_and_cycle() -> None:
    p = Pair()
    p.on_s(Produce())
    req, sent = p.request()
    assert isinstance(sent.reply, BatchSent) and sent.reply.batch.batch_id == "S:1"
    assert [type(w) for w in sent.writes] == [PutOutbound, PutRequest]
    assert p.ds.outbound["S:1"].to == "C" and p.ds.requests[("C", req.request_id)] == "S:1"
    accepted = p.on_c(sent.reply)
    assert p.dc.inbound["S:1"].state is InState.IN_TRANSIT
    assert accepted.messages == (WaitingForBatch("S", "C", "S:1"),)
    assert p.on_s(accepted.messages[0]) == Effects() and p.s.is_waiting("S:1")
    arrived = p.on_c(Arrived("S:1"))
    assert arrived.messages == (DeliveryConfirmed("S", "C", "S:1"),)
    p.on_s(arrived.messages[0])
    assert p.ds.outbound["S:1"].state is OutState.DELIVERED and not p.s.is_waiting("S:1")
    inputs = p.c.hold_inputs()
    assert inputs == ("S:1",)
    p.on_c(Produce(inputs))
    assert p.dc.inbound["S:1"].state is InState.CONSUMED
    assert p.dc.outbound["C:1"].batch.lineage == ("S:1",) and not p.c.held


def test_retried_request_gets_the_same_batch_and_no_write() -> None:
    p = Pair()
    p.on_s(Produce())
    p.on_s(Produce())
    req, first = p.request()
    again = p.on_s(req)
    assert again.writes == () and again.reply == first.reply
    p.s.handle(FlowChanged(2, frozenset()))  # even once C left the flow: same batch
    assert p.on_s(req).reply == first.reply
    assert p.s.queued_outbound_count == 1


def test_unavailable_and_refusals_write_nothing() -> None:
    p = Pair()
    _, empty = p.request()
    assert isinstance(empty.reply, BatchUnavailable) and empty.writes == ()
    p.on_s(Produce())
    cases = [
        (RequestBatch("S", "X", "r1", "wood", 1, flow_version=1), RefusalReason.NOT_A_CONSUMER),
        (RequestBatch("S", "X", "r2", "wood", 1, flow_version=9), RefusalReason.FLOW_NEWER),
        (RequestBatch("S", "C", "r3", "nails", 1), RefusalReason.WRONG_ITEM),
        (RequestBatch("T", "C", "r4", "wood", 1), RefusalReason.WRONG_SUPPLIER),
    ]
    for req, reason in cases:
        effects = p.on_s(req)
        assert isinstance(effects.reply, RequestRefused) and effects.reply.reason is reason
        assert effects.writes == () and effects.reply.flow_version == 1
    assert p.ds.outbound["S:1"].state is OutState.QUEUED


def test_a_fresh_node_refuses_everyone_until_it_knows_the_flow() -> None:
    s, _ = Node.recover(NodeConfig("S", WOOD), DurableState("S", incarnation=1))
    s.handle(Produce())
    reply = s.handle(RequestBatch("S", "C", "r", "wood", 1)).reply
    assert isinstance(reply, RequestRefused) and reply.reason is RefusalReason.NOT_A_CONSUMER
    assert s.handle(FlowChanged(3, frozenset({"C"}))) == Effects()
    assert s.handle(FlowChanged(2, frozenset())).notes  # an older flow is ignored
    assert s.flow_consumers == {"C"} and s.flow_version == 3


def test_consumer_answers_duplicates_from_its_state() -> None:
    p = Pair()
    p.on_s(Produce())
    _, sent = p.request()
    p.on_c(sent.reply)
    dup = p.on_c(sent.reply)
    assert dup.writes == () and dup.messages == (WaitingForBatch("S", "C", "S:1"),)
    p.on_c(Arrived("S:1"))
    for event in (sent.reply, Arrived("S:1")):
        again = p.on_c(event)
        assert again.writes == () and again.messages == (DeliveryConfirmed("S", "C", "S:1"),)
    assert p.on_c(Arrived("S:9")).notes and p.on_c(Arrived("S:9")).writes == ()


def test_immediate_arrival_queues_in_one_step() -> None:
    p = Pair(immediate=True)
    p.on_s(Produce())
    _, sent = p.request()
    accepted = p.on_c(sent.reply)
    assert p.dc.inbound["S:1"].state is InState.QUEUED
    assert accepted.messages == (DeliveryConfirmed("S", "C", "S:1"),)


def test_offers_accept_unknown_and_report_state() -> None:
    p = Pair()
    batch = Batch("S:1", "wood", 1, "S", 1)
    reply = p.on_c(OfferBatch("S", "C", batch)).reply
    assert reply == OfferReply("S", "C", "S:1", InState.IN_TRANSIT)
    p.on_c(Arrived("S:1"))
    assert p.on_c(OfferBatch("S", "C", batch)).reply.state is InState.QUEUED  # type: ignore
    refused = [OfferBatch("S", "D", Batch("S:2", "wood", 1, "S", 2)),  # not addressed to C
               OfferBatch("T", "C", Batch("S:3", "wood", 1, "S", 3)),  # not its producer
               OfferBatch("S", "C", Batch("S:1", "wood", 7, "S", 1))]  # differs from record
    for offer in refused:
        effects = p.on_c(offer)
        assert effects.writes == () and effects.reply.state is None  # type: ignore[union-attr]


def test_supplier_confirmation_rules() -> None:
    p = Pair()
    p.on_s(Produce())
    p.on_s(Produce())
    p.request()
    p.request()
    assert p.on_s(DeliveryConfirmed("S", "X", "S:1")).writes == ()  # not its consumer
    assert p.on_s(OfferReply("S", "C", "S:1", InState.IN_TRANSIT)).writes == ()
    assert p.s.is_waiting("S:1")
    assert p.on_s(OfferReply("S", "C", "S:2", None)).notes
    assert p.on_s(OfferReply("S", "C", "S:1", InState.CONSUMED)).writes
    assert p.on_s(DeliveryConfirmed("S", "C", "S:1")).writes == ()  # idempotent
    assert p.ds.outbound["S:1"].state is OutState.DELIVERED
    tick = p.on_s(Tick())
    assert [m.batch.batch_id for m in tick.messages] == ["S:2"]  # type: ignore[union-attr]
    assert p.on_s(Tick(consumer="X")).messages == ()


def test_reclaim_only_for_a_consumer_outside_the_flow() -> None:
    p = Pair()
    for _ in range(3):
        p.on_s(Produce())
    p.request()
    p.request()
    p.on_s(DeliveryConfirmed("S", "C", "S:1"))
    with pytest.raises(ProtocolError, match="still a consumer"):
        p.s.handle(Reclaim("C"))
    p.s.handle(FlowChanged(2, frozenset()))
    effects = p.on_s(Reclaim("C"))
    assert p.ds.outbound["S:2"].state is OutState.RECLAIMED
    assert p.ds.outbound["S:1"].state is OutState.DELIVERED  # delivered goods stay delivered
    copy = p.ds.outbound["S:4"]
    assert copy.reclaimed_from == "S:2" and copy.batch.lineage == ("S:2",)
    assert copy.state is OutState.QUEUED and p.ds.next_seq == 5
    assert isinstance(effects.writes[-1], SetNextSeq)
    assert p.on_s(DeliveryConfirmed("S", "C", "S:2")).writes == ()  # too late: ignored
    assert [b.batch_id for b in p.s.outbound_queued()] == ["S:3", "S:4"]


def test_produce_refuses_bad_inputs_without_effects() -> None:
    p = Pair()
    for _ in range(2):
        p.on_s(Produce())
    for _ in range(2):
        _, sent = p.request()
        p.on_c(sent.reply)
    p.on_c(Arrived("S:1"))
    bad = [("S:2",), ("S:1", "S:1"), ("S:9",), ()]
    for inputs in bad:
        with pytest.raises(ProtocolError):
            p.c.handle(Produce(inputs))
    with pytest.raises(ProtocolError):
        p.s.handle(Produce(("S:1",)))  # a source consumes nothing
    assert p.dc.inbound["S:1"].state is InState.QUEUED


def test_workers_hold_different_inputs() -> None:
    p = Pair(immediate=True)
    for _ in range(2):
        p.on_s(Produce())
        _, sent = p.request()
        p.on_c(sent.reply)
    first, second = p.c.hold_inputs(), p.c.hold_inputs()
    assert {first, second} == {("S:1",), ("S:2",)} and p.c.hold_inputs() is None
    p.c.release(first)  # type: ignore[arg-type]
    assert p.c.hold_inputs() == first
    assert p.c.inbound_queued_counts() == {"wood": 2}


def test_recover_reoffers_and_reconfirms_from_durable_records_only() -> None:
    p = Pair()
    for _ in range(3):
        p.on_s(Produce())
    sent = [p.request()[1].reply for _ in range(2)]
    for reply in sent:
        p.on_c(reply)
    p.on_c(Arrived("S:1"))
    p.ds.incarnation = p.dc.incarnation = 2
    s, s_fx = Node.recover(p.s.config, p.ds.copy())
    c, c_fx = Node.recover(p.c.config, p.dc.copy())
    assert {(type(m).__name__, m.batch.batch_id) for m in s_fx.messages} == {  # type: ignore
        ("OfferBatch", "S:1"), ("OfferBatch", "S:2")}
    assert set(c_fx.messages) == {DeliveryConfirmed("S", "C", "S:1"),
                                  WaitingForBatch("S", "C", "S:2")}
    assert s_fx.writes == c_fx.writes == ()
    assert [b.batch_id for b in s.outbound_queued()] == ["S:3"] and s.next_seq == 4
    assert [r.batch_id for r in c.inbound_queued("wood")] == ["S:1"]
    (req,) = c.handle(NewRequest("S", "wood")).messages
    assert req.request_id.startswith("C~2~")  # type: ignore[union-attr]
    with pytest.raises(ProtocolError):
        Node(p.c.config, p.ds.copy())  # another node's records


def _out(bid: str, state: OutState, **kw: object) -> PutOutbound:
    producer, seq = bid.split(":")
    lineage = kw.pop("lineage", ())
    batch = Batch(bid, "wood", 1, producer, int(seq), lineage)  # type: ignore[arg-type]
    return PutOutbound(OutboundRecord(batch, state, **kw))  # type: ignore[arg-type]


def _in(bid: str, state: InState, supplier: str = "S") -> PutInbound:
    producer, seq = bid.split(":")
    return PutInbound(InboundRecord(Batch(bid, "wood", 1, producer, int(seq)), state, supplier))


@pytest.mark.parametrize("writes, error", [
    ([_out("S:1", OutState.IN_TRANSIT, to="C")], "absent -> IN_TRANSIT"),
    ([_out("T:1", OutState.QUEUED), SetNextSeq(2)], "its own batches"),
    ([_out("S:1", OutState.QUEUED)], "seq counter must move"),
    ([SetNextSeq(1)], "may only grow"),
    ([_in("S:1", InState.CONSUMED)], "absent -> CONSUMED"),
    ([_in("S:1", InState.QUEUED, supplier="T")], "not its producer"),
    ([PutRequest("C", "r", "S:1")], "not IN_TRANSIT"),
    ([_out("S:1", OutState.QUEUED, to="C"), SetNextSeq(2)], "no consumer yet"),
])
def test_illegal_writes_on_an_empty_store(writes: Sequence, error: str) -> None:
    state = DurableState("S")
    with pytest.raises(InvalidTransition, match=error):
        apply_writes(state, writes)
    assert state == DurableState("S")  # nothing applied


def test_illegal_writes_on_existing_records() -> None:
    state = DurableState("C")
    apply_writes(state, [_in("S:1", InState.QUEUED), _in("S:2", InState.QUEUED)])
    apply_writes(state, [_out("C:1", OutState.QUEUED), SetNextSeq(2)])
    apply_writes(state, [_out("C:1", OutState.IN_TRANSIT, to="D", request_id="r"),
                         PutRequest("D", "r", "C:1")])
    before = state.copy()
    bad = {
        "backwards": [_in("S:1", InState.IN_TRANSIT)],
        "consumed without output": [_in("S:1", InState.CONSUMED)],
        "lineage": [_in("S:1", InState.CONSUMED), _out("C:2", OutState.QUEUED,
                                                        lineage=("S:1", "S:2")), SetNextSeq(3)],
        "one input, two outputs": [_in("S:1", InState.CONSUMED),
                                   _out("C:2", OutState.QUEUED, lineage=("S:1",)),
                                   _out("C:3", OutState.QUEUED, lineage=("S:1",)),
                                   SetNextSeq(4)],
        "seq reuse": [_out("C:0", OutState.QUEUED), SetNextSeq(3)],
        "consumer changes": [_out("C:1", OutState.DELIVERED, to="E", request_id="r")],
        "request twice": [PutRequest("D", "r", "C:1")],
        "same state": [_out("C:1", OutState.IN_TRANSIT, to="D", request_id="r")],
        "copy w/o original": [_out("C:2", OutState.QUEUED, lineage=("C:1",),
                                   reclaimed_from="C:1"), SetNextSeq(3)],
        "reclaim w/o copy": [_out("C:1", OutState.RECLAIMED, to="D", request_id="r")],
    }
    for name, writes in bad.items():
        with pytest.raises(InvalidTransition):
            apply_writes(state, writes)
        assert state == before, name
    # two cycles merged into one group by the I/O layer are fine
    apply_writes(state, [_in("S:1", InState.CONSUMED),
                         _out("C:2", OutState.QUEUED, lineage=("S:1",)), SetNextSeq(3),
                         _in("S:2", InState.CONSUMED),
                         _out("C:3", OutState.QUEUED, lineage=("S:2",)), SetNextSeq(4)])
    assert state.inbound["S:2"].state is InState.CONSUMED and state.next_seq == 4


def flaky_stage(node_id: str, inputs: Sequence[Batch]) -> bool:
    """Factory code that rejects some inputs (a failed cycle gives its inputs back)."""
    return not any(b.seq % 3 == 0 for b in inputs)


@settings(max_examples=150 * DEEP)
@given(schedule=fault_schedules(), immediate=st.booleans())
def test_public_kit_chain_with_a_flaky_stage(schedule, immediate: bool) -> None:
    sim = check_schedule(chain_topology(immediate), schedule, stage=flaky_stage)
    for node in sim.nodes.values():
        for rec in node.store.durable.outbound.values():
            assert not any(int(src.split(":")[1]) % 3 == 0 for src in rec.batch.lineage)


def test_public_kit_runs_a_hand_written_schedule() -> None:
    from fos_agent.testing import Op

    # nodes are picked from sorted ids [C1, C2, S1, S2]; b % 3 != 0 settles the step
    schedule = [Op("produce", 2, 1), Op("request", 0, 4), Op("deliver", 0, 1),
                Op("crash", 0), Op("drop", 0), Op("arrive", 0, 1)]
    sim = check_schedule(two_by_two(), schedule)
    assert sim.nodes["S1"].store.durable.outbound["S1:1"].state is OutState.DELIVERED
    assert sim.nodes["C1"].store.durable.inbound["S1:1"].state is InState.QUEUED
    assert sim.nodes["C1"].store.durable.incarnation == 2 and sim.network.dropped == 1


def test_goods_of_an_input_dropped_by_a_spec_change_are_taken_from_its_old_supplier() -> None:
    """A batch on its way when the consumer stopped requiring its item is taken (goods sent
    must not be lost) from the supplier it took that item from, and from nobody else."""
    p = Pair(immediate=True)
    p.on_c(OfferBatch("S", "C", Batch("S:1", "wood", 1, "S", 1)))  # traded wood with S
    p.c.config = NodeConfig("C", FRAME, (ItemReq("glass", 1),), True)
    late = p.on_c(OfferBatch("S", "C", Batch("S:2", "wood", 1, "S", 2)))
    assert late.reply.state is InState.QUEUED and late.refusal is None  # type: ignore
    stranger = p.on_c(OfferBatch("T", "C", Batch("T:1", "wood", 1, "T", 1)))
    assert stranger.writes == () and stranger.refusal is not None
    assert stranger.refusal.reason == "item"
