"""The batch protocol under a lossy, duplicating, reordering network with crash-restarts.

Built from the public kit (fos_agent.testing / fos_agent.testing.machine): 2 suppliers and
2 consumers of one item, and a 3-level chain, and the two-by-two with an adversary forging
and malforming messages. Safety after every step, convergence (I2, I3) after healing.
HYPOTHESIS_PROFILE=deep runs 50x the examples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from fos_agent.protocol.limits import MAX_QTY, normalize_attrs
from fos_agent.protocol.messages import (
    BatchSent,
    DeliveryConfirmed,
    Message,
    OfferBatch,
    RequestBatch,
    WaitingForBatch,
)
from fos_agent.protocol.records import Batch
from fos_agent.testing import SimTopology, chain, two_by_two
from fos_agent.testing.machine import BatchProtocolMachine

DEEP = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 1


class TwoByTwo(BatchProtocolMachine):
    """S1, S2 supply wood to C1, C2; consumers move between suppliers; one may leave."""


class Chain(BatchProtocolMachine):
    """wood -> frame -> window: the frame makers are consumers and suppliers at once."""

    topology_factory = staticmethod(chain)


attr_values = st.one_of(st.text(max_size=12).filter(str.isprintable),
                        st.integers(-2**63, 2**63 - 1),
                        st.floats(allow_nan=False, allow_infinity=False))
attrs = st.dictionaries(st.text(min_size=1, max_size=8).filter(str.isprintable),
                        attr_values, max_size=4)


class ScrapAndVariableOutput(BatchProtocolMachine):
    """The chain with explicit scrap and variable-output rules: any quantity up to
    MAX_QTY, random attributes, partial scraps; the kit checks at teardown that the audit
    is exact (every input consumed went into one output or was scrapped, none twice)."""

    topology_factory = staticmethod(chain)

    @rule(node=st.integers(0, 63), qty=st.integers(1, MAX_QTY), values=attrs)
    def produce_variable(self, node: int, qty: int, values: dict[str, object]) -> None:
        assert self.sim is not None
        ids = self.sim.node_ids
        self.sim.produce(ids[node % len(ids)], qty, normalize_attrs(values))  # type: ignore[arg-type]

    @rule(node=st.integers(0, 63), index=st.integers(0, 63))
    def scrap(self, node: int, index: int) -> None:
        assert self.sim is not None
        ids = self.sim.node_ids
        self.sim.scrap(ids[node % len(ids)], index)


TestTwoByTwo = TwoByTwo.TestCase
TestTwoByTwo.settings = settings(max_examples=200 * DEEP, stateful_step_count=150)

TestChain = Chain.TestCase
TestChain.settings = settings(max_examples=100 * DEEP, stateful_step_count=150)

TestScrapAndVariableOutput = ScrapAndVariableOutput.TestCase
TestScrapAndVariableOutput.settings = settings(max_examples=60 * DEEP,
                                               stateful_step_count=150)

# ---- an adversary on the plant network -----------------------------------------------------

GHOST = "ghost"
MALFORMED_BATCHES = ("id", "seq", "producer", "item", "qty", "lineage_count",
                     "lineage_bytes", "lineage_id")


def _malformed(kind: str, producer: str, item: str) -> Batch:
    """A batch ``producer`` might offer that breaks one rule of fos_agent.protocol.validate."""
    good = Batch(f"{producer}:7", item, 1, producer, 7)
    return {
        "id": replace(good, batch_id="x"),
        "seq": replace(good, batch_id=f"{producer}:0", seq=0),
        "producer": replace(good, producer=f"{producer}x"),
        "item": replace(good, item="gold"),
        "qty": replace(good, qty=-3),
        "lineage_count": replace(good, lineage=tuple(f"{producer}:{i}" for i in range(1, 200))),
        "lineage_bytes": replace(good, lineage=("a" * 3_000_000 + ":1",)),
        "lineage_id": replace(good, lineage=("x",)),
    }[kind]


def _verifying(factory: Callable[[bool], SimTopology]) -> Callable[[bool], SimTopology]:
    """The topology with every node verifying confirmations (plaintext agents do)."""
    def make(immediate_arrival: bool) -> SimTopology:
        topo = factory(immediate_arrival)
        return SimTopology(tuple(replace(c, verify_confirmations=True) for c in topo.configs),
                           topo.edges)
    return make


class Adversary(BatchProtocolMachine):
    """Two-by-two under faults, plus a forger on the network who may name any node: it
    offers malformed batches, confirms and waits for batches (real ids, others', made-up
    ones), and requests batches posing as a real consumer (its replies go to the forger).

    Properties: a malformed message is refused with no write; a forged one writes nothing
    that loses, duplicates or invents a batch (the safety invariant after every step and
    convergence after healing, with the audit, are the base machine's)."""

    topology_factory = staticmethod(_verifying(two_by_two))

    def _inject(self, to: str, msg: Message, must_refuse: bool) -> None:
        assert self.sim is not None
        target = self.sim.nodes[to]
        if target.decommissioned:
            return
        effects = target.node.handle(msg)
        if must_refuse:
            assert effects.refusal is not None, f"{msg!r} was not refused"
            assert not effects.writes, f"refused {msg!r} but wrote {effects.writes}"
        if isinstance(msg, DeliveryConfirmed | WaitingForBatch):
            assert not effects.writes, f"a forged {type(msg).__name__} wrote {effects.writes}"
        # what it writes and sends goes on as usual (durable at once); a reply goes back
        # to the forger
        target.pending.append(replace(effects, reply=None))
        self.sim.flush(to, len(target.pending))

    @rule(kind=st.sampled_from(MALFORMED_BATCHES), a=st.integers(0, 63),
          sent=st.booleans(), ghost=st.booleans())
    def forge_batch(self, kind: str, a: int, sent: bool, ghost: bool) -> None:
        assert self.sim is not None
        consumers = [s for s in self.sim.live() if s.config.requires]
        suppliers = [s for s in self.sim.live() if not s.config.requires]
        if not consumers or not suppliers:
            return
        consumer = consumers[a % len(consumers)]
        producer = GHOST if ghost else suppliers[a % len(suppliers)].node_id
        batch = _malformed(kind, producer, consumer.config.requires[0].item)
        msg: Message = (BatchSent(producer, consumer.node_id, f"{consumer.node_id}~0~{a}", batch)
                        if sent else OfferBatch(producer, consumer.node_id, batch))
        self._inject(consumer.node_id, msg, must_refuse=True)

    @rule(a=st.integers(0, 63), b=st.integers(0, 63), which=st.sampled_from(
        ("real", "other", "unmade", "malformed")), confirm=st.booleans())
    def forge_confirmation(self, a: int, b: int, which: str, confirm: bool) -> None:
        assert self.sim is not None
        live = self.sim.live()
        supplier, claimed = live[a % len(live)], live[b % len(live)]
        sending = [s for s in live if s.node.outbound_in_transit()]
        if which == "real" and sending:
            supplier = sending[a % len(sending)]
        records = supplier.node.outbound_records()
        in_transit = supplier.node.outbound_in_transit()
        if which == "real" and in_transit:  # posing as the consumer it is on its way to
            rec = in_transit[b % len(in_transit)]
            batch_id, claimed = rec.batch_id, self.sim.nodes[rec.to]
        elif which == "real" and records:
            batch_id = records[b % len(records)].batch_id
        elif which == "other":
            batch_id = f"{claimed.node_id}:1"
        elif which == "unmade":
            batch_id = f"{supplier.node_id}:{supplier.node.next_seq + b}"
        else:
            batch_id = "x" * (1 + b * 20_000)
        ours = batch_id.startswith(f"{supplier.node_id}:")
        made = ours and batch_id in {r.batch_id for r in records}
        msg: Message = (DeliveryConfirmed(supplier.node_id, claimed.node_id, batch_id) if confirm
                        else WaitingForBatch(supplier.node_id, claimed.node_id, batch_id))
        self._inject(supplier.node_id, msg, must_refuse=not ours or (which == "unmade")
                     or (made and supplier.node.outbound(batch_id).to != claimed.node_id))

    @rule(a=st.integers(0, 63), b=st.integers(0, 63), request_id=st.sampled_from(
        ("", "r1", "C1~1~1", "x" * 5000, "bad id")))
    def forge_request(self, a: int, b: int, request_id: str) -> None:
        assert self.sim is not None
        live = self.sim.live()
        supplier, claimed = live[a % len(live)], live[b % len(live)]
        msg = RequestBatch(supplier.node_id, claimed.node_id, request_id or f"forged~{a}",
                           supplier.config.produces.item, 1, self.sim.flow_version)
        malformed = request_id in ("x" * 5000, "bad id")
        self._inject(supplier.node_id, msg, must_refuse=malformed)


TestAdversary = Adversary.TestCase
TestAdversary.settings = settings(max_examples=40 * DEEP, stateful_step_count=100)
