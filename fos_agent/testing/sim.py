"""The test kit's model driver: the real protocol nodes (fos_agent.protocol.machine.Node), their
in-memory durable stores and the queues of effects not yet durable, a lossy network, the
flow, an operation for every fault, and the safety and convergence checks (public via
fos_agent.testing)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from fos_agent.protocol.compaction import inbound_settled, outbound_settled
from fos_agent.protocol.limits import Attrs
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import (
    Arrived,
    Effects,
    Event,
    FlowChanged,
    NewRequest,
    Produce,
    Reclaim,
    RequestBatch,
    Scrap,
    Tick,
)
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InboundRecord,
    OutboundRecord,
    Write,
)
from fos_agent.protocol.transitions import apply_writes
from fos_agent.testing.invariants import WriteMonitor, check_convergence, check_safety
from fos_agent.testing.network import LossyNetwork
from fos_agent.testing.topology import SimTopology, StageCode, always_succeeds


class MemoryStore:
    """A node's durable records in memory, checked like the LMDB WAL (same rules).

    ``durable`` is the live state (what recovery loads); ``settled_*`` model the records
    compaction moved into the genealogy index (fos_agent.protocol.compaction). It is also
    the node's SettledLookup."""

    def __init__(self, node_id: str) -> None:
        self.durable = DurableState(node_id=node_id, incarnation=1)
        self.settled_out: dict[str, OutboundRecord] = {}
        self.settled_in: dict[str, InboundRecord] = {}
        self.settled_requests: dict[tuple[str, str], str] = {}

    def apply(self, writes: Sequence[Write]) -> None:
        apply_writes(self.durable, writes)

    def compact(self) -> tuple[list[str], list[str]]:
        """One atomic step: settled records leave the live state (their request keys with
        them). Returns the (outbound, inbound) ids moved."""
        d = self.durable
        out_ids = [b for b, r in d.outbound.items() if outbound_settled(r)]
        in_ids = [b for b, r in d.inbound.items() if inbound_settled(r)]
        gone = set(out_ids)
        for key, bid in list(d.requests.items()):
            if bid in gone:
                self.settled_requests[key] = d.requests.pop(key)
        for bid in out_ids:
            self.settled_out[bid] = d.outbound.pop(bid)
        for bid in in_ids:
            self.settled_in[bid] = d.inbound.pop(bid)
        return out_ids, in_ids

    def settled_inbound(self, batch_id: str) -> str | None:
        rec = self.settled_in.get(batch_id)
        return rec.supplier if rec else None

    def settled_request(self, consumer: str, request_id: str) -> Batch | None:
        bid = self.settled_requests.get((consumer, request_id))
        return self.settled_out[bid].batch if bid is not None else None

    def full(self) -> DurableState:
        """Live and settled records together: the history the invariants are about."""
        state = self.durable.copy()
        state.outbound.update(self.settled_out)
        state.inbound.update(self.settled_in)
        state.requests.update(self.settled_requests)
        return state

    def restart(self) -> DurableState:
        self.durable.incarnation += 1
        return self.durable.copy()


@dataclass
class SimNode:
    config: NodeConfig
    store: MemoryStore
    node: Node
    pending: deque[Effects] = field(default_factory=deque)
    decommissioned: bool = False

    @property
    def node_id(self) -> str:
        return self.config.node_id


class Simulation:
    """The protocol model driver: every method is one operation of a fault schedule."""

    def __init__(self, topology: SimTopology, stage: StageCode = always_succeeds) -> None:
        self.topology = topology
        self.stage = stage
        self.network = LossyNetwork()
        self.edges = set(topology.edges)
        self.flow_version = 1
        self.nodes: dict[str, SimNode] = {}
        self._monitor = WriteMonitor()  # I1, I4, I6 as each write lands
        self._pushed: dict[str, frozenset[str]] = {}  # the flow each node was last told
        for config in topology.configs:
            store = MemoryStore(config.node_id)
            node, effects = Node.recover(config, store.durable.copy(), store)
            sim = SimNode(config, store, node)
            self.nodes[config.node_id] = sim
            self._enqueue(sim, effects)
            self.push_flow(config.node_id)

    # ---- views -------------------------------------------------------------------------------

    @property
    def node_ids(self) -> list[str]:
        return sorted(self.nodes)

    def live(self) -> list[SimNode]:
        return [n for _, n in sorted(self.nodes.items()) if not n.decommissioned]

    def consumers_of(self, supplier: str) -> frozenset[str]:
        return frozenset(c for s, c in self.edges if s == supplier)

    def suppliers_for(self, consumer: str) -> list[str]:
        """Every node making an item ``consumer`` requires (alternatives included)."""
        wanted = {r.item for r in self.nodes[consumer].config.requires}
        return [n.node_id for n in self.live() if n.config.produces.item in wanted]

    # ---- operations --------------------------------------------------------------------------

    def handle(self, node_id: str, event: Event) -> Effects:
        sim = self.nodes[node_id]
        if sim.decommissioned:
            return Effects()
        effects = sim.node.handle(event)
        if isinstance(event, RequestBatch) and effects.writes:
            # authorisation: a batch only goes to a consumer of the flow the supplier knows
            assert event.consumer in self._pushed.get(node_id, ()), (
                f"{node_id} wrote IN_TRANSIT to {event.consumer}, not its consumer")
        self._enqueue(sim, effects)
        return effects

    def _enqueue(self, sim: SimNode, effects: Effects) -> None:
        if effects.writes or effects.messages or effects.reply is not None:
            sim.pending.append(effects)

    def flush(self, node_id: str, count: int = 1) -> None:
        """Make the oldest ``count`` effects durable, then send their messages."""
        sim = self.nodes[node_id]
        for _ in range(count):
            if not sim.pending:
                return
            effects = sim.pending.popleft()
            self._check_monotone(sim, effects.writes)
            sim.store.apply(effects.writes)
            out = list(effects.messages)
            if effects.reply is not None:
                out.append(effects.reply)
            self.network.send(out)

    def flush_all(self) -> None:
        for sim in self.live():
            self.flush(sim.node_id, len(sim.pending))

    def crash(self, node_id: str) -> None:
        """Crash-restart: pending effects and in-memory state are lost; records are kept."""
        sim = self.nodes[node_id]
        if sim.decommissioned:
            return
        sim.pending.clear()
        sim.node, effects = Node.recover(sim.config, sim.store.restart(), sim.store)
        self._enqueue(sim, effects)
        self.push_flow(node_id)  # the agent reads the current flow when it starts

    def compact(self, node_id: str, forget: bool = True) -> None:
        """Compaction: settled records leave the store's live state (one atomic step);
        then, unless ``forget`` is False (a crash may land between the two), the node drops
        them from memory."""
        sim = self.nodes[node_id]
        if sim.decommissioned:
            return
        out_ids, in_ids = sim.store.compact()
        if forget:
            sim.node.forget(out_ids, in_ids)

    def produce(self, node_id: str, qty: int | None = None, attrs: Attrs = ()) -> None:
        sim = self.nodes[node_id]
        if sim.decommissioned:
            return
        inputs = sim.node.hold_inputs()
        if inputs is None:
            return
        batches = [sim.node.inbound(b).batch for b in inputs]  # type: ignore[union-attr]
        if not self.stage(node_id, batches):
            sim.node.release(inputs)
            return
        self.handle(node_id, Produce(inputs, qty, attrs))

    def scrap(self, node_id: str, index: int = 0) -> None:
        """Scrap the first ``1 + index % n`` of the ``n`` inputs a cycle would hold (the
        rest go back), with a reason naming ``index``. A source stage has none."""
        sim = self.nodes[node_id]
        if sim.decommissioned:
            return
        inputs = sim.node.hold_inputs()
        if not inputs:
            return
        take = inputs[:1 + index % len(inputs)]
        sim.node.release(inputs[len(take):])
        self.handle(node_id, Scrap(take, f"bad part #{index}"))

    def request(self, consumer: str, supplier: str) -> None:
        sim = self.nodes[consumer]
        item = self.nodes[supplier].config.produces.item
        if sim.decommissioned or item not in {r.item for r in sim.config.requires}:
            return
        self.handle(consumer, NewRequest(supplier, item, flow_version=self.flow_version))

    def arrive(self, consumer: str, index: int = 0) -> None:
        in_transit = self.nodes[consumer].node.inbound_in_transit()
        if in_transit:
            self.handle(consumer, Arrived(in_transit[index % len(in_transit)].batch_id))

    def tick(self, node_id: str) -> None:
        self.handle(node_id, Tick())

    def deliver(self, index: int = 0) -> str | None:
        """Deliver one message (any one: reordering); returns the node it went to."""
        msg = self.network.take(index)
        if msg is None or self.nodes[msg.to].decommissioned:
            return None
        self.handle(msg.to, msg)
        return msg.to

    def push_flow(self, node_id: str) -> None:
        consumers = self.consumers_of(node_id)
        if not self.nodes[node_id].decommissioned:
            self._pushed[node_id] = consumers
        self.handle(node_id, FlowChanged(self.flow_version, consumers))

    def move(self, consumer: str) -> None:
        """The coordinator moves ``consumer`` to the next alternative supplier of each
        input (suppliers learn it through ``push_flow``)."""
        for req in self.nodes[consumer].config.requires:
            options = [s for s in self.suppliers_for(consumer)
                       if self.nodes[s].config.produces.item == req.item]
            current = [s for s in options if (s, consumer) in self.edges]
            if len(options) < 2 or not current:
                continue
            nxt = options[(options.index(current[0]) + 1) % len(options)]
            self.edges.discard((current[0], consumer))
            self.edges.add((nxt, consumer))
        self.flow_version += 1

    def decommission(self, node_id: str) -> None:
        """The node leaves for good (its records stay for inspection)."""
        sim = self.nodes[node_id]
        sim.decommissioned = True
        sim.pending.clear()
        self.edges = {(s, c) for s, c in self.edges if node_id not in (s, c)}
        self.flow_version += 1

    def reclaim(self, supplier: str) -> None:
        """The supplier learns the flow and takes back goods sent to decommissioned nodes."""
        if self.nodes[supplier].decommissioned:
            return
        self.push_flow(supplier)
        gone = {r.to for r in self.nodes[supplier].node.outbound_in_transit()
                if self.nodes[r.to].decommissioned}
        for consumer in sorted(gone):
            self.handle(supplier, Reclaim(consumer))

    def heal(self, max_rounds: int = 60) -> int:
        """Faults stop: flows are pushed, retries fire and every message is delivered until
        nothing is in flight. Returns the rounds it took (max_rounds + 1 if it never
        settled, which check_convergence then reports)."""
        for rounds in range(1, max_rounds + 1):
            for sim in self.live():
                self.reclaim(sim.node_id)
            self.flush_all()
            while self.network.in_flight:
                self.deliver(0)
                self.flush_all()
            for sim in self.live():
                for rec in sim.node.inbound_in_transit():
                    self.handle(sim.node_id, Arrived(rec.batch_id))
            self.flush_all()
            busy = self.network.in_flight or any(
                r for s in self.live() for r in s.node.outbound_in_transit())
            if not busy:
                return rounds
            for sim in self.live():
                self.tick(sim.node_id)
        return max_rounds + 1

    # ---- invariants (fos_agent.testing.invariants) -------------------------------------------

    def _check_monotone(self, sim: SimNode, writes: Sequence[Write]) -> None:
        self._monitor.check(sim, writes)

    def check_safety(self) -> None:
        """I1, I4 (per record, checked as writes land), I5, I6, and persist-before-send in
        both directions (see fos_agent.testing.invariants.check_safety). (Authorisation is
        checked as each request is handled.)"""
        check_safety(self.nodes)

    def check_convergence(self) -> None:
        """After ``heal``: I2 (no loss) and I3 (agreement) between live nodes."""
        assert not self.network.in_flight and not any(s.pending for s in self.live()), \
            "heal did not settle"
        check_convergence(self.nodes)
