"""Scrap, variable output quantity and batch attributes in the pure protocol, the WAL
encoding, the genealogy index and the audit (no processes)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fos_agent.audit import audit, audit_states
from fos_agent.net.pbconv import batch_from_pb, batch_to_pb
from fos_agent.protocol.genealogy import index_puts
from fos_agent.protocol.limits import (
    MAX_ATTR_KEY_LEN,
    MAX_ATTR_VALUE_LEN,
    MAX_ATTRS,
    MAX_ATTRS_BYTES,
    MAX_QTY,
    LimitError,
    check_attrs,
    check_reason,
    normalize_attrs,
)
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import NewRequest, Produce, Scrap
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InboundRecord,
    InState,
    PutInbound,
    decode_inbound,
    decode_outbound,
    encode_inbound,
    encode_outbound,
)
from fos_agent.protocol.transitions import InvalidTransition, ProtocolError, apply_writes
from fos_agent.testing import (
    Op,
    Simulation,
    chain,
    check_schedule,
    fault_schedules,
    two_by_two,
)
from fos_agent.testing.wal_chain import WalChain
from fos_raft.lineage.index import (
    MADE_DB,
    USED_DB,
    MadeEntry,
    UsedEntry,
    decode_made,
    decode_used,
)
from fos_raft.lineage.reader import BatchView, open_offline
from fos_raft.lineage.remote import pb_to_answers, views_to_pb
from fos_raft.model import ItemReq

WOOD, GLUE, FRAME = ItemReq("wood", 2), ItemReq("glue", 1), ItemReq("frame", 1)


def press() -> tuple[Node, DurableState]:
    """A frame press holding two wood and one glue batch, QUEUED."""
    durable = DurableState("press")
    for i, (sup, item) in enumerate([("saw", "wood"), ("saw", "wood"), ("pot", "glue")], 1):
        rec = InboundRecord(Batch(f"{sup}:{i}", item, 1, sup, i), InState.QUEUED, sup)
        durable.inbound[rec.batch_id] = rec
    node, _ = Node.recover(NodeConfig("press", FRAME, (WOOD, GLUE)), durable.copy())
    return node, durable


def test_scrap_consumes_without_output_and_records_the_reason() -> None:
    node, durable = press()
    effects = node.handle(Scrap(("saw:1", "pot:3"), "cracked"))
    apply_writes(durable, effects.writes)  # the WAL's own check accepts it
    for bid in ("saw:1", "pot:3"):
        assert durable.inbound[bid].state is InState.CONSUMED
        assert durable.inbound[bid].scrapped == "cracked"
    assert durable.outbound == {} and durable.inbound["saw:2"].state is InState.QUEUED
    report = audit_states({"press": durable})
    assert (report.consumed, report.scrapped, report.ok) == (2, 2, True), report.summary()
    # the index: a used entry with the reason, going into nothing
    puts = index_puts("press", effects.writes, 5, lambda b: None)
    used = [decode_used(k.decode(), "press", v) for db, k, v in puts if db == USED_DB]
    assert {(u.batch_id, u.into, u.scrapped) for u in used} == {
        ("saw:1", "", "cracked"), ("pot:3", "", "cracked")}


@pytest.mark.parametrize("inputs, reason", [
    ((), "x"), (("saw:1",), ""), (("saw:1",), "a\x1b[2J"), (("saw:1",), "r" * 257),
    (("saw:1", "saw:2"), "two of one item"), (("nope:9",), "unknown"),
])
def test_bad_scraps_are_refused(inputs: tuple[str, ...], reason: str) -> None:
    node, _ = press()
    with pytest.raises(ProtocolError):
        node.handle(Scrap(inputs, reason))


def test_the_wal_check_refuses_a_scrapped_input_in_a_lineage_and_a_reason_on_arrival() -> None:
    node, durable = press()
    effects = node.handle(Produce(("saw:1", "pot:3")))
    bad = [replace(w, record=replace(w.record, scrapped="x"))
           if isinstance(w, PutInbound) and w.record.batch_id == "saw:1" else w
           for w in effects.writes]
    with pytest.raises(InvalidTransition, match="I5"):
        apply_writes(durable.copy(), bad)
    fresh = InboundRecord(Batch("saw:7", "wood", 1, "saw", 7), InState.QUEUED, "saw", "x")
    with pytest.raises(InvalidTransition, match="only a scrap"):
        apply_writes(durable.copy(), [PutInbound(fresh)])


def test_variable_qty_and_attrs_go_with_the_batch_into_wal_and_index() -> None:
    node, durable = press()
    attrs = normalize_attrs({"serial": "SN-0042", "width_mm": 801.5, "pass": 1})
    effects = node.handle(Produce(("saw:1", "pot:3"), qty=3, attrs=attrs))
    apply_writes(durable, effects.writes)
    (out,) = durable.outbound.values()
    assert (out.batch.qty, out.batch.attrs) == (3, attrs)
    assert decode_outbound(encode_outbound(out)) == out
    puts = index_puts("press", effects.writes, 5, lambda b: None)
    (made,) = [decode_made(k.decode(), "press", v) for db, k, v in puts if db == MADE_DB]
    assert (made.qty, made.attrs) == (3, attrs)
    for qty in (0, MAX_QTY + 1):
        again, _ = press()
        with pytest.raises(ProtocolError, match="quantity"):
            again.handle(Produce(("saw:1", "pot:3"), qty=qty))


def test_records_without_the_new_fields_encode_as_before() -> None:
    """Existing WALs stay readable, and new records without attributes or a scrap write
    the very bytes an older agent wrote."""
    old = (b'{"batch":{"id":"saw:1","item":"wood","lineage":[],"producer":"saw","qty":1,'
           b'"seq":1},"state":"CONSUMED","supplier":"saw"}')
    rec = decode_inbound(old)
    assert (rec.scrapped, rec.batch.attrs) == ("", ())
    assert encode_inbound(rec) == old
    scrapped = replace(rec, scrapped="dented")
    assert decode_inbound(encode_inbound(scrapped)) == scrapped


def test_attribute_bounds() -> None:
    assert normalize_attrs(None) == () and normalize_attrs({}) == ()
    assert normalize_attrs({"b": 1, "a": "x"}) == (("a", "x"), ("b", 1))
    too_many = {f"k{i}": i for i in range(MAX_ATTRS + 1)}
    for bad in (too_many, {"": 1}, {"k" * (MAX_ATTR_KEY_LEN + 1): 1},
                {"k": "v" * (MAX_ATTR_VALUE_LEN + 1)}, {"k": True}, {"k": None},
                {"k": float("nan")}, {"k": [1]}, {"k\n": 1}, {"k": 2**64},
                {f"k{i}": "v" * 250 for i in range(MAX_ATTRS_BYTES // 250)}):
        with pytest.raises(LimitError):
            normalize_attrs(bad)  # type: ignore[arg-type]
    with pytest.raises(LimitError, match="sorted"):
        check_attrs((("b", 1), ("a", 2)))
    assert check_reason("ok") == "ok"


keys = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1,
               max_size=MAX_ATTR_KEY_LEN)
values = st.one_of(st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")),
                           max_size=40),
                   st.integers(-2**63, 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False))


@given(st.dictionaries(keys, values, max_size=8))
def test_attrs_round_trip_the_wal_and_the_index(attrs: dict) -> None:  # type: ignore[type-arg]
    try:
        pairs = normalize_attrs(attrs)
    except LimitError:
        return  # over the byte bound
    batch = Batch("p:1", "frame", 2, "p", 1, ("s:1",), pairs)
    rec = InboundRecord(batch, InState.QUEUED, "p")
    assert decode_inbound(encode_inbound(rec)) == rec
    assert len(json.dumps(dict(pairs), ensure_ascii=False).encode()) <= MAX_ATTRS_BYTES


def test_scraps_and_variable_output_in_a_simulated_factory_audit_exactly() -> None:
    """C1 (frames from wood) scraps some cycles and makes 3-frame batches with attributes;
    the kit's convergence check (audit consumed == inputs in outputs + scrapped) holds."""
    sim = Simulation(two_by_two(True))
    for _ in range(4):
        sim.produce("S1")
        sim.flush("S1")
        sim.request("C1", "S1")
        sim.flush("C1")
        sim.heal()
    sim.scrap("C1", 0)
    sim.produce("C1", 3, normalize_attrs({"serial": "SN-1", "ok": "yes"}))
    sim.scrap("C1", 1)
    sim.flush_all()
    sim.heal()
    sim.check_safety()
    sim.check_convergence()
    states = {n: s.store.full() for n, s in sim.nodes.items()}
    report = audit_states(states, quiescent=True)
    assert (report.scrapped, report.ok) == (2, True), report.summary()
    (frame,) = states["C1"].outbound.values()
    assert (frame.batch.qty, dict(frame.batch.attrs)) == (3, {"serial": "SN-1", "ok": "yes"})


@settings(max_examples=60, deadline=None)
@given(fault_schedules(min_size=40, max_size=150))
def test_fault_schedules_with_scrap_keep_the_audit_exact(schedule: list[Op]) -> None:
    check_schedule(chain(True), schedule)


def test_attrs_and_scrap_cross_the_wire() -> None:
    """The peer conversion (BatchSent / OfferBatch) and the Lineage RPC (online trace)."""
    pairs = normalize_attrs({"serial": "SN-1", "n": -3, "w": 0.25, "empty": ""})
    batch = Batch("p:4", "frame", 3, "p", 4, ("s:1",), pairs)
    assert batch_from_pb(batch_to_pb(batch)) == batch
    plain = Batch("p:5", "frame", 1, "p", 5)
    assert batch_from_pb(batch_to_pb(plain)) == plain
    views = {"p:4": BatchView(made=MadeEntry("p:4", "n", "frame", 3, 4, 7, attrs=pairs)),
             "s:1": BatchView(used=UsedEntry("s:1", "n", "s", "wood", 1, "", 8,
                                             scrapped="dented"))}
    answers = pb_to_answers(views_to_pb("n", views))
    made = answers["p:4"].made
    assert made is not None and made.attrs == pairs
    assert (answers["s:1"].into, answers["s:1"].scrapped) == ("", "dented")


def test_a_scrap_survives_compaction_in_a_real_wal(tmp_path: Path) -> None:
    """Real LMDB: n1 scraps one input and makes one batch of 3 with attributes; after
    compaction the audit (records rebuilt from the index) still counts the scrap, and
    the index keeps the attributes."""

    chain = WalChain(tmp_path, 2)
    try:
        for _ in range(2):
            chain._handle("n0", Produce(()))
            chain._deliver(chain._handle("n1", NewRequest("n0", "i0", flow_version=1)))
        first = chain.nodes["n1"].hold_inputs()
        assert first is not None
        chain._handle("n1", Scrap(first, "warped"))
        second = chain.nodes["n1"].hold_inputs()
        assert second is not None
        chain._handle("n1", Produce(second, 3, normalize_attrs({"serial": "SN-9"})))
        chain.compact()
        made = chain.wals["n1"].load(settled=True)
        assert chain.nodes["n1"].inbound(first[0]) is None  # compacted out of memory
    finally:
        chain.close()
    report = audit([chain.data_dir(n) for n in chain.ids])
    assert (report.ok, report.consumed, report.scrapped) == (True, 2, 1), report.summary()
    assert made.inbound[first[0]].scrapped == "warped"
    reader = open_offline(chain.data_dir("n1"))
    try:
        (out_id,) = [b for b in made.outbound]
        view = reader.lookup([out_id, first[0]])
    finally:
        reader.env.close()
    assert view[out_id].made is not None and view[out_id].made.attrs == (("serial", "SN-9"),)
    assert view[first[0]].used is not None and view[first[0]].used.scrapped == "warped"


def test_an_offered_batch_with_attributes_out_of_bounds_is_refused() -> None:
    from fos_agent.protocol.limits import MAX_ATTRS
    from fos_agent.protocol.records import Batch
    from fos_agent.protocol.validate import check_batch

    ok = Batch("p:1", "wood", 1, "p", 1, attrs=(("serial", "SN-1"),))
    assert check_batch(ok, "p", {"wood"}) is None
    many = tuple((f"k{i:03d}", i) for i in range(MAX_ATTRS + 1))
    refusal = check_batch(Batch("p:1", "wood", 1, "p", 1, attrs=many), "p", {"wood"})
    assert refusal is not None and refusal.reason == "attrs"
