"""The protocol invariants as checks over a set of nodes' durable stores (public via
fos_agent.testing): I1, I4, I6 as each write lands (`WriteMonitor`), I1, I5, I6 and
persist-before-send over the whole history (`check_safety`), and after a heal I2, I3, the
audit and each node's in-memory view against its store (`check_convergence`).

Shared by the protocol model driver (fos_agent.testing.sim) and the simulated factory
(fos_agent.testing.factory): one implementation of every check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from fos_agent.audit import AuditReport, audit_states
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.records import (
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    Write,
)
from fos_agent.protocol.transitions import IN_RANK, OUT_RANK


class Store(Protocol):
    """A node's durable records (fos_agent.testing.sim.MemoryStore): the live state and
    the records compaction moved out of it."""

    durable: DurableState
    settled_out: dict[str, OutboundRecord]
    settled_in: dict[str, InboundRecord]

    def full(self) -> DurableState: ...


class Held(Protocol):
    """What the checks read of one node: its config, its store, its protocol state and
    whether it left the factory for good."""

    @property
    def node_id(self) -> str: ...
    @property
    def config(self) -> NodeConfig: ...
    @property
    def store(self) -> Store: ...
    @property
    def node(self) -> Node: ...
    @property
    def decommissioned(self) -> bool: ...


class WriteMonitor:
    """Checks every durable write as it lands: I4 (a record never moves backwards), I6 (a
    batch id is created once, across crashes) and no record written again after it was
    compacted (dedup kept)."""

    def __init__(self) -> None:
        self._ever_created: dict[str, set[str]] = {}  # node -> ids made durable, across crashes
        self._rank: dict[tuple[str, str, str], int] = {}  # (node, side, id) -> rank

    def check(self, held: Held, writes: Sequence[Write]) -> None:
        node_id, store = held.node_id, held.store
        for w in writes:
            if isinstance(w, PutOutbound):
                bid = w.record.batch_id
                assert bid not in store.settled_out, (
                    f"I1/I4: {node_id} writes {bid} again after it settled "
                    "and was compacted (dedup lost)")
                key, rank = (node_id, "out", bid), OUT_RANK[w.record.state]
                if bid not in store.durable.outbound:  # a creation
                    created = self._ever_created.setdefault(node_id, set())
                    assert bid not in created, f"I6: {bid} created twice (seq reused)"
                    created.add(bid)
            elif isinstance(w, PutInbound):
                bid = w.record.batch_id
                assert bid not in store.settled_in, (
                    f"I1/I4: {node_id} writes {bid} again after it settled "
                    "and was compacted (dedup lost)")
                key, rank = (node_id, "in", bid), IN_RANK[w.record.state]
            else:
                continue
            assert rank >= self._rank.get(key, -1), f"I4: {key} moved backwards"
            self._rank[key] = rank


def check_safety(nodes: Mapping[str, Held]) -> None:
    """I1, I5, I6, and persist-before-send in both directions: every inbound record is
    backed by its supplier's durable IN_TRANSIT/DELIVERED to that consumer, and every
    DELIVERED by the consumer's durable QUEUED/CONSUMED."""
    holders: dict[str, str] = {}
    consumed_into: dict[str, str] = {}
    full = {n: s.store.full() for n, s in nodes.items()}
    for sim in nodes.values():
        d = full[sim.node_id]
        for bid, held in d.inbound.items():
            assert bid not in holders, f"I1: {bid} in inbound WALs of {holders[bid]} " \
                                       f"and {sim.node_id}"
            holders[bid] = sim.node_id
            sup = nodes.get(held.supplier)
            sent = full[sup.node_id].outbound.get(bid) if sup else None
            assert sent is not None and sent.state is not OutState.QUEUED \
                and sent.to == sim.node_id, (
                    f"{sim.node_id} holds {bid} but its supplier's durable record is "
                    f"{sent} (a message left before its write was durable)")
        lineage_of: dict[str, str] = {}
        wanted = sorted(r.item for r in sim.config.requires)
        for rec in d.outbound.values():
            assert rec.batch.seq < d.next_seq, f"I6: {rec.batch_id} >= counter"
            if rec.state is OutState.DELIVERED:
                got = full[rec.to].inbound.get(rec.batch_id)
                assert got is not None and got.state in (InState.QUEUED, InState.CONSUMED), (
                    f"{rec.batch_id} DELIVERED by {sim.node_id} while {rec.to} has {got} "
                    "(a confirmation left before its write was durable)")
            if rec.reclaimed_from:
                continue
            for src in rec.batch.lineage:
                assert src not in consumed_into, f"I1: {src} consumed twice"
                consumed_into[src] = rec.batch_id
                lineage_of[src] = rec.batch_id
                inb = d.inbound.get(src)
                assert inb is not None and inb.state is InState.CONSUMED, (
                    f"I5: {rec.batch_id} made from {src} which is not CONSUMED")
                assert not inb.scrapped, f"{rec.batch_id} made from scrapped {src}"
            got_items = sorted(d.inbound[s].batch.item for s in rec.batch.lineage)
            assert got_items == wanted, \
                f"I5: {rec.batch_id} made from {got_items}, needs {wanted}"
        for bid, inb in d.inbound.items():
            if inb.state is InState.CONSUMED and not inb.scrapped:
                assert bid in lineage_of, f"I5: {bid} CONSUMED at {sim.node_id} " \
                                          "without an output"
            assert not inb.scrapped or inb.state is InState.CONSUMED, \
                f"{bid} carries a scrap reason but is {inb.state.value}"


def check_view(sim: Held) -> None:
    """With nothing pending, the node's in-memory view is exactly its durable records."""
    d, node, store = sim.store.durable, sim.node, sim.store
    mem_out = {r.batch_id: r for r in node.outbound_records()}
    mem_in = {r.batch_id: r for r in node.inbound_records()}
    # a node that did not forget compacted records still holds them (settled, equal)
    assert mem_out == d.outbound | {b: store.settled_out[b] for b in mem_out
                                    if b in store.settled_out}, \
        f"{sim.node_id}: in-memory outbound differs from its WAL"
    assert mem_in == d.inbound | {b: store.settled_in[b] for b in mem_in
                                  if b in store.settled_in}, \
        f"{sim.node_id}: in-memory inbound differs from its WAL"
    views: list[tuple[set[str], OutState | InState, Mapping[str, Any]]] = [
        ({b.batch_id for b in node.outbound_queued()}, OutState.QUEUED, d.outbound),
        ({r.batch_id for r in node.outbound_in_transit()}, OutState.IN_TRANSIT, d.outbound),
        ({r.batch_id for r in node.inbound_queued()}, InState.QUEUED, d.inbound),
        ({r.batch_id for r in node.inbound_in_transit()}, InState.IN_TRANSIT, d.inbound),
    ]
    for seen, state, records in views:
        durable = {bid for bid, r in records.items() if r.state is state}
        assert seen == durable, f"{sim.node_id}: {state} view {seen} != WAL {durable}"
    assert node.next_seq == d.next_seq, f"{sim.node_id}: seq counter differs from WAL"


def check_convergence(nodes: Mapping[str, Held]) -> AuditReport:
    """After a heal (nothing in flight, nothing pending): the audit (0 lost, 0 duplicated,
    nothing in transit), I2 (no loss) and I3 (agreement) between the nodes still in the
    factory, and every such node's memory equal to its store. Returns the audit."""
    live = [s for _, s in sorted(nodes.items()) if not s.decommissioned]
    full = {s.node_id: s.store.full() for s in nodes.values()}
    states = {s.node_id: full[s.node_id] for s in live}
    report = audit_states(states, quiescent=True)
    assert report.ok and not report.in_transit, report.summary()
    # exact accounting: every input consumed went into one output or was scrapped
    scrapped = sum(1 for d in states.values() for r in d.inbound.values() if r.scrapped)
    used = sum(len(r.batch.lineage) for d in states.values() for r in d.outbound.values()
               if not r.reclaimed_from)
    assert report.scrapped == scrapped, report.summary()
    assert report.consumed == used + scrapped, report.summary()
    for sim in live:
        check_view(sim)
        for rec in full[sim.node_id].outbound.values():
            if rec.state in (OutState.QUEUED, OutState.RECLAIMED):
                continue
            consumer = nodes[rec.to]
            if consumer.decommissioned:
                assert rec.state is OutState.DELIVERED, (
                    f"{rec.batch_id} still IN_TRANSIT to decommissioned {rec.to}, "
                    "not reclaimed")
                continue
            inb = full[rec.to].inbound.get(rec.batch_id)
            assert rec.state is OutState.DELIVERED, (
                f"I2: {rec.batch_id} still {rec.state.value} at {sim.node_id}")
            assert inb is not None and inb.state in (InState.QUEUED, InState.CONSUMED), (
                f"I2: {rec.batch_id} DELIVERED by {sim.node_id} but {rec.to} has {inb}")
        for bid, inb in full[sim.node_id].inbound.items():
            sup = nodes[inb.supplier]
            if sup.decommissioned:
                continue
            out = full[sup.node_id].outbound[bid]
            assert inb.state in (InState.QUEUED, InState.CONSUMED), (
                f"I2: {bid} still {inb.state.value} at {sim.node_id}")
            assert out.state is OutState.DELIVERED, (
                f"I3: {bid} is {inb.state.value} at {sim.node_id} but "
                f"{out.state.value} at {inb.supplier}")
    return report
