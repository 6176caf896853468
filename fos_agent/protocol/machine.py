"""The batch protocol as a pure, sans-I/O state machine (DESIGN.md section 5).

No gRPC, no LMDB, no clock, no threads: the I/O layer feeds events in and carries effects
out, the way h11 keeps HTTP/1.1 free of sockets.

API used by the I/O layer
-------------------------
    node, effects = Node.recover(config, durable)   # durable: DurableState from Wal.load()
    effects = node.handle(event)                    # synchronous, never blocks

``Effects(writes, messages, reply, notes)``: apply ``writes`` as ONE atomic, synced
transaction (``Wal.commit(writes)`` or ``await GroupCommitter.commit(writes)``), THEN send
``messages`` (each has ``.to``, the node id to send it to) and return ``reply`` to the caller
of the RPC being served (None when the event was not a request). ``notes`` are
human-readable remarks for logs/metrics (ignored duplicates, refusals); they change nothing.

Ordering rule (makes concurrent RPCs safe): ``handle`` updates the in-memory state at once,
so a later event may already see a transition whose write is not yet durable (e.g. a retried
RequestBatch with the same request_id answered from memory). Therefore the I/O layer must
make each call's writes durable in the order the calls were made, and must not send a call's
messages/reply before every write of every earlier call is durable -- even when this call's
own ``writes`` is empty. ``GroupCommitter.commit`` gives exactly that (FIFO, an empty group
resolves after all earlier groups); with the synchronous ``Wal.commit`` it holds trivially.
Two events that race are thus ordered by the order of their ``handle`` calls. If a commit
fails, the in-memory state is ahead of the disk: discard the Node and ``Node.recover`` it
from a fresh ``Wal.load()`` (this is exactly a crash-restart, which the protocol tolerates).

Events (all frozen dataclasses)
    messages received:  RequestBatch, BatchSent, BatchUnavailable, RequestRefused,
                        WaitingForBatch, DeliveryConfirmed, OfferBatch, OfferReply
    local:              NewRequest(supplier, item, ...) -> a RequestBatch message to send
                        Arrived(batch_id)            physical arrival: inbound -> QUEUED
                        Produce(inputs)              one cycle: inputs CONSUMED + output QUEUED
                        Tick(consumer=None)          retry timer: re-offer IN_TRANSIT batches
                        FlowChanged(version, consumers)  who may request from this supplier
                        Reclaim(consumer)            consumer decommissioned: take goods back

Replies: RequestBatch -> BatchSent | BatchUnavailable | RequestRefused (the gRPC layer maps
RequestRefused.reason to PERMISSION_DENIED / FAILED_PRECONDITION / INVALID_ARGUMENT);
OfferBatch -> OfferReply(state) (state None = INBOUND_UNKNOWN: offer refused).
WaitingForBatch / DeliveryConfirmed have no reply (the gRPC layer answers Ack itself).
BatchUnavailable means "none now": for a long-poll (``wait_ms``) the I/O layer waits until
``queued_outbound_count`` grows or the deadline passes and then handles the same
RequestBatch again.

Queries: ``queued_outbound_count``, ``outbound_queued()``, ``outbound_in_transit()`` (what a
Tick re-offers), ``inbound_queued(item)``, ``inbound_queued_counts()``,
``inbound_in_transit()``, ``outbound(batch_id)``, ``inbound(batch_id)``, ``incarnation``,
``flow_version``. Workers of one stage share the inbound queue through
``hold_inputs()`` / ``release(ids)`` (in-memory reservations; a Produce releases its inputs).

Authorisation: after start and on every flow change the I/O layer handles
``FlowChanged(version, consumers)``; a RequestBatch from a node outside ``consumers`` is
refused with no durable write. Until the first FlowChanged every request is refused.
A Reclaim is accepted only for a consumer outside the current flow (the coordinator
decommissioned it) and must never be used for a node that may come back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import chain

from fos_agent.protocol.compaction import NothingSettled, SettledLookup
from fos_agent.protocol.messages import (
    Arrived,
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    Effects,
    Event,
    FlowChanged,
    Message,
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
    Write,
    batch_id_of,
)
from fos_agent.protocol.transitions import InvalidTransition, ProtocolError
from fos_raft.model import ItemReq

__all__ = [
    "Arrived", "BatchSent", "BatchUnavailable", "DeliveryConfirmed", "Effects", "Event",
    "FlowChanged", "InvalidTransition", "Message", "NewRequest", "Node", "NodeConfig",
    "OfferBatch", "OfferReply", "Produce", "ProtocolError", "Reclaim", "RefusalReason",
    "RequestBatch", "RequestRefused", "Tick", "WaitingForBatch",
]

NO_EFFECTS = Effects()


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What the protocol needs to know about its stage.

    ``immediate_arrival``: accept received batches straight into QUEUED (one durable step
    instead of IN_TRANSIT then QUEUED) for stages with no physical transit time.
    """

    node_id: str
    produces: ItemReq
    requires: tuple[ItemReq, ...] = ()
    immediate_arrival: bool = False


class Node:
    """One agent's protocol state, rebuilt from its durable records."""

    def __init__(self, config: NodeConfig, durable: DurableState,
                 settled: SettledLookup | None = None) -> None:
        if durable.node_id != config.node_id:
            raise ProtocolError(f"records of node {durable.node_id!r} given to "
                                f"node {config.node_id!r}")
        self.config = config
        self.node_id = config.node_id
        self._settled: SettledLookup = settled or NothingSettled()  # compacted records
        self._settled_out: dict[str, None] = {}  # settled in memory, not yet forgotten
        self._settled_in: dict[str, None] = {}
        self.incarnation = durable.incarnation
        self._next_seq = durable.next_seq
        self._out: dict[str, OutboundRecord] = {}
        self._queued_out: dict[str, None] = {}  # insertion order == seq order
        self._transit_out: dict[str, None] = {}
        self._in: dict[str, InboundRecord] = {}
        self._queued_in: dict[str, dict[str, None]] = {}  # item -> ids, oldest first
        self._transit_in: dict[str, None] = {}
        self._requests = dict(durable.requests)
        self._waiting: set[str] = set()  # IN_TRANSIT batches the consumer said it holds
        self._held: set[str] = set()
        self._request_counter = 0
        self.flow_version = 0
        self.flow_consumers: frozenset[str] = frozenset()
        for rec in sorted(durable.outbound.values(), key=lambda r: r.batch.seq):
            self._index_out(rec)
        for rec in sorted(durable.inbound.values(), key=lambda r: (r.supplier, r.batch.seq)):
            self._index_in(rec)

    @classmethod
    def recover(cls, config: NodeConfig, durable: DurableState,
                settled: SettledLookup | None = None) -> tuple[Node, Effects]:
        """The restart event: rebuild from durable records only; re-offer outbound
        IN_TRANSIT, re-confirm inbound QUEUED (CONSUMED ones are answered by the supplier's
        own re-offers) and say WaitingForBatch for inbound IN_TRANSIT."""
        node = cls(config, durable, settled)
        msgs: list[Message] = [node._offer(r) for r in node.outbound_in_transit()]
        for rec in node._in.values():
            if rec.state is InState.QUEUED:
                msgs.append(DeliveryConfirmed(rec.supplier, node.node_id, rec.batch_id))
            elif rec.state is InState.IN_TRANSIT:
                msgs.append(WaitingForBatch(rec.supplier, node.node_id, rec.batch_id))
        return node, Effects(messages=tuple(msgs))

    # ---- queries ---------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def queued_outbound_count(self) -> int:
        return len(self._queued_out)

    def outbound(self, batch_id: str) -> OutboundRecord | None:
        return self._out.get(batch_id)

    def inbound(self, batch_id: str) -> InboundRecord | None:
        return self._in.get(batch_id)

    def outbound_queued(self) -> list[Batch]:
        return [self._out[b].batch for b in self._queued_out]

    def outbound_in_transit(self) -> list[OutboundRecord]:
        return [self._out[b] for b in self._transit_out]

    def outbound_records(self) -> list[OutboundRecord]:
        return list(self._out.values())

    def inbound_records(self) -> list[InboundRecord]:
        return list(self._in.values())

    def inbound_queued(self, item: str | None = None) -> list[InboundRecord]:
        items = [item] if item is not None else list(self._queued_in)
        return [self._in[b] for it in items for b in self._queued_in.get(it, {})]

    def inbound_queued_counts(self) -> dict[str, int]:
        return {item: len(ids) for item, ids in self._queued_in.items() if ids}

    def inbound_in_transit(self) -> list[InboundRecord]:
        return [self._in[b] for b in self._transit_in]

    def is_waiting(self, batch_id: str) -> bool:
        """The consumer told us (WaitingForBatch / offer reply) it holds this batch IN_TRANSIT."""
        return batch_id in self._waiting

    # ---- input reservations for several workers of one stage ------------------------------

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def hold_inputs(self) -> tuple[str, ...] | None:
        """Reserve the oldest unheld QUEUED batch of every required item, or None if some
        item has none. Source stages (no requires) get ``()``."""
        picked: list[str] = []
        for req in self.config.requires:
            ids = (b for b in self._queued_in.get(req.item, {}) if b not in self._held)
            first = next(ids, None)
            if first is None:
                return None
            picked.append(first)
        self._held.update(picked)
        return tuple(picked)

    def release(self, batch_ids: tuple[str, ...] | list[str]) -> None:
        self._held.difference_update(batch_ids)

    # ---- the state machine -----------------------------------------------------------------

    def handle(self, event: Event) -> Effects:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise ProtocolError(f"unknown event {event!r}")
        return handler(self, event)

    # supplier side

    def _on_request(self, msg: RequestBatch) -> Effects:
        def refuse(reason: RefusalReason, why: str) -> Effects:
            reply = RequestRefused(msg.supplier, msg.consumer, msg.request_id, reason,
                                   self.flow_version, why)
            return Effects(reply=reply, notes=(f"refused request {msg.request_id}: {why}",))

        if msg.supplier != self.node_id:
            return refuse(RefusalReason.WRONG_SUPPLIER, f"this is {self.node_id}")
        known = self._requests.get((msg.consumer, msg.request_id))
        if known is not None:  # a retry: the same batch again, never a second one
            return Effects(reply=BatchSent(self.node_id, msg.consumer, msg.request_id,
                                           self._out[known].batch),
                           notes=(f"duplicate request {msg.request_id} -> {known}",))
        settled = self._settled.settled_request(msg.consumer, msg.request_id)
        if settled is not None:  # a retry of a trade compacted since: same batch again
            return Effects(reply=BatchSent(self.node_id, msg.consumer, msg.request_id,
                                           settled),
                           notes=(f"duplicate request {msg.request_id} -> "
                                  f"{settled.batch_id} (settled)",))
        if msg.item != self.config.produces.item:
            return refuse(RefusalReason.WRONG_ITEM,
                          f"{self.node_id} makes {self.config.produces.item}, not {msg.item}")
        if msg.consumer not in self.flow_consumers:
            if msg.flow_version > self.flow_version:
                return refuse(RefusalReason.FLOW_NEWER,
                              f"requester has flow {msg.flow_version}, "
                              f"supplier {self.flow_version}")
            return refuse(RefusalReason.NOT_A_CONSUMER,
                          f"{msg.consumer} is not a consumer of {self.node_id} "
                          f"in flow {self.flow_version}")
        if not self._queued_out:
            return Effects(reply=BatchUnavailable(self.node_id, msg.consumer, msg.request_id))
        bid = next(iter(self._queued_out))
        rec = replace(self._out[bid], state=OutState.IN_TRANSIT, to=msg.consumer,
                      request_id=msg.request_id)
        writes: list[Write] = []
        self._put_out(rec, writes)
        self._requests[(msg.consumer, msg.request_id)] = bid
        writes.append(PutRequest(msg.consumer, msg.request_id, bid))
        return Effects(writes=tuple(writes),
                       reply=BatchSent(self.node_id, msg.consumer, msg.request_id, rec.batch))

    def _on_waiting(self, msg: WaitingForBatch) -> Effects:
        rec = self._out.get(msg.batch_id)
        if rec is None or rec.state is not OutState.IN_TRANSIT or rec.to != msg.consumer:
            return Effects(notes=(f"stale WaitingForBatch {msg.batch_id} from {msg.consumer}",))
        self._waiting.add(msg.batch_id)
        return NO_EFFECTS

    def _on_confirmed(self, msg: DeliveryConfirmed) -> Effects:
        return self._confirm(msg.consumer, msg.batch_id)

    def _on_offer_reply(self, msg: OfferReply) -> Effects:
        if msg.state in (InState.QUEUED, InState.CONSUMED):
            return self._confirm(msg.consumer, msg.batch_id)
        if msg.state is InState.IN_TRANSIT:
            return self._on_waiting(WaitingForBatch(msg.supplier, msg.consumer, msg.batch_id))
        return Effects(notes=(f"{msg.consumer} refused the offer of {msg.batch_id}",))

    def _confirm(self, consumer: str, batch_id: str) -> Effects:
        rec = self._out.get(batch_id)
        if rec is None or rec.to != consumer:
            return Effects(notes=(f"ignored confirmation of {batch_id} from {consumer}",))
        if rec.state is not OutState.IN_TRANSIT:  # already DELIVERED (or RECLAIMED)
            return Effects(notes=(f"{batch_id} already {rec.state.value}",))
        writes: list[Write] = []
        self._put_out(replace(rec, state=OutState.DELIVERED), writes)
        return Effects(writes=tuple(writes))

    def _on_tick(self, event: Tick) -> Effects:
        recs = self.outbound_in_transit()
        if event.consumer is not None:
            recs = [r for r in recs if r.to == event.consumer]
        return Effects(messages=tuple(self._offer(r) for r in recs))

    def _offer(self, rec: OutboundRecord) -> OfferBatch:
        return OfferBatch(self.node_id, rec.to, rec.batch)

    def _on_flow(self, event: FlowChanged) -> Effects:
        if event.version < self.flow_version:
            return Effects(notes=(f"ignored older flow {event.version} < {self.flow_version}",))
        self.flow_version = event.version
        self.flow_consumers = frozenset(event.consumers)
        return NO_EFFECTS

    def _on_reclaim(self, event: Reclaim) -> Effects:
        if event.consumer in self.flow_consumers:
            raise ProtocolError(f"{event.consumer} is still a consumer of {self.node_id} in "
                                f"flow {self.flow_version}; only a decommissioned node's "
                                "batches may be reclaimed")
        writes: list[Write] = []
        for rec in [r for r in self.outbound_in_transit() if r.to == event.consumer]:
            self._put_out(replace(rec, state=OutState.RECLAIMED), writes)
            seq = self._alloc_seq(writes)
            copy = Batch(batch_id_of(self.node_id, seq), rec.batch.item, rec.batch.qty,
                         self.node_id, seq, (rec.batch_id,))
            self._put_out(OutboundRecord(copy, OutState.QUEUED, reclaimed_from=rec.batch_id),
                          writes)
        return Effects(writes=_seq_last(writes))

    # consumer side

    def _on_new_request(self, event: NewRequest) -> Effects:
        self._request_counter += 1
        rid = f"{self.node_id}~{self.incarnation}~{self._request_counter}"
        qty = event.qty
        if qty is None:
            qty = next((r.qty for r in self.config.requires if r.item == event.item), 1)
        return Effects(messages=(RequestBatch(event.supplier, self.node_id, rid, event.item,
                                              qty, event.flow_version, event.wait_ms),))

    def _accept(self, supplier: str, consumer: str, batch: Batch) -> tuple[
            list[Write], InState | None, str]:
        """Take a batch offered or sent to us; returns (writes, state after, note)."""
        if consumer != self.node_id or batch.producer != supplier:
            return [], None, f"refused batch {batch.batch_id} for {consumer} from {supplier}"
        rec = self._in.get(batch.batch_id)
        if rec is not None:
            if rec.supplier != supplier or rec.batch != batch:
                return [], None, f"batch {batch.batch_id} differs from the one recorded"
            return [], rec.state, ""
        if self._settled.settled_inbound(batch.batch_id) == supplier:  # consumed, compacted
            return [], InState.CONSUMED, ""
        state = InState.QUEUED if self.config.immediate_arrival else InState.IN_TRANSIT
        writes: list[Write] = []
        self._put_in(InboundRecord(batch, state, supplier), writes)
        return writes, state, ""

    def _on_batch_sent(self, msg: BatchSent) -> Effects:
        writes, state, note = self._accept(msg.supplier, msg.consumer, msg.batch)
        if state is None:
            return Effects(notes=(note,))
        answer: Message
        if state is InState.IN_TRANSIT:
            answer = WaitingForBatch(msg.supplier, self.node_id, msg.batch.batch_id)
        else:
            answer = DeliveryConfirmed(msg.supplier, self.node_id, msg.batch.batch_id)
        return Effects(writes=tuple(writes), messages=(answer,))

    def _on_offer(self, msg: OfferBatch) -> Effects:
        writes, state, note = self._accept(msg.supplier, msg.consumer, msg.batch)
        reply = OfferReply(msg.supplier, msg.consumer, msg.batch.batch_id, state)
        return Effects(writes=tuple(writes), reply=reply, notes=(note,) if note else ())

    def _on_no_batch(self, msg: BatchUnavailable | RequestRefused) -> Effects:
        return Effects(notes=(f"request {msg.request_id} to {msg.supplier}: "
                              f"{type(msg).__name__}",))

    def _on_arrived(self, event: Arrived) -> Effects:
        rec = self._in.get(event.batch_id)
        if rec is None:
            return Effects(notes=(f"arrival of unknown batch {event.batch_id}",))
        confirm = DeliveryConfirmed(rec.supplier, self.node_id, rec.batch_id)
        if rec.state is not InState.IN_TRANSIT:  # duplicate arrival: confirm again, idempotent
            return Effects(messages=(confirm,))
        writes: list[Write] = []
        self._put_in(replace(rec, state=InState.QUEUED), writes)
        return Effects(writes=tuple(writes), messages=(confirm,))

    def _on_produce(self, event: Produce) -> Effects:
        inputs = tuple(event.inputs)
        if len(set(inputs)) != len(inputs):
            raise ProtocolError(f"a cycle consumes each batch at most once: {inputs}")
        items: list[str] = []
        for bid in inputs:
            rec = self._in.get(bid)
            if rec is None or rec.state is not InState.QUEUED:
                state = rec.state.value if rec else "unknown"
                raise ProtocolError(f"input {bid} is {state}, not QUEUED")
            items.append(rec.batch.item)
        wanted = sorted(r.item for r in self.config.requires)
        if sorted(items) != wanted:
            raise ProtocolError(f"a cycle of {self.node_id} consumes one batch of each of "
                                f"{wanted}, got {sorted(items)}")
        writes: list[Write] = []
        for bid in inputs:
            self._put_in(replace(self._in[bid], state=InState.CONSUMED), writes)
        self.release(inputs)
        seq = self._alloc_seq(writes)
        out = self.config.produces
        batch = Batch(batch_id_of(self.node_id, seq), out.item, out.qty, self.node_id, seq,
                      inputs)
        self._put_out(OutboundRecord(batch, OutState.QUEUED), writes)
        return Effects(writes=_seq_last(writes))

    def forget(self, outbound_ids: list[str], inbound_ids: list[str]) -> None:
        """Drop settled records from memory once their compaction is durable (the
        SettledLookup answers for them from then on; see fos_agent.protocol.compaction)."""
        gone = set(outbound_ids)
        for bid in outbound_ids:
            self._out.pop(bid, None)
            self._settled_out.pop(bid, None)
            self._waiting.discard(bid)
        if gone:
            self._requests = {k: v for k, v in self._requests.items() if v not in gone}
        for bid in inbound_ids:
            self._in.pop(bid, None)
            self._settled_in.pop(bid, None)

    def settled_ids(self) -> tuple[list[str], list[str]]:
        """(outbound, inbound) ids settled in memory and not forgotten yet: what the next
        compaction may move (only those already settled on disk), so it costs what settled
        since the last one, not the history."""
        return list(self._settled_out), list(self._settled_in)

    # ---- in-memory bookkeeping -------------------------------------------------------------

    def _alloc_seq(self, writes: list[Write]) -> int:
        seq = self._next_seq
        self._next_seq += 1
        writes.append(SetNextSeq(self._next_seq))
        return seq

    def _index_out(self, rec: OutboundRecord) -> None:
        bid = rec.batch_id
        self._out[bid] = rec
        self._queued_out.pop(bid, None)
        self._transit_out.pop(bid, None)
        if rec.state is OutState.QUEUED:
            self._queued_out[bid] = None
        elif rec.state is OutState.IN_TRANSIT:
            self._transit_out[bid] = None
        else:
            self._waiting.discard(bid)
            self._settled_out[bid] = None

    def _put_out(self, rec: OutboundRecord, writes: list[Write]) -> None:
        self._index_out(rec)
        writes.append(PutOutbound(rec))

    def _index_in(self, rec: InboundRecord) -> None:
        bid = rec.batch_id
        self._in[bid] = rec
        self._transit_in.pop(bid, None)
        queue = self._queued_in.setdefault(rec.batch.item, {})
        queue.pop(bid, None)
        if rec.state is InState.QUEUED:
            queue[bid] = None
        elif rec.state is InState.IN_TRANSIT:
            self._transit_in[bid] = None
        else:
            self._settled_in[bid] = None

    def _put_in(self, rec: InboundRecord, writes: list[Write]) -> None:
        self._index_in(rec)
        writes.append(PutInbound(rec))


def _seq_last(writes: list[Write]) -> tuple[Write, ...]:
    """One SetNextSeq at the end of the group (the counter's final value)."""
    seqs = [w for w in writes if isinstance(w, SetNextSeq)]
    rest = [w for w in writes if not isinstance(w, SetNextSeq)]
    return tuple(chain(rest, seqs[-1:]))


_HANDLERS = {
    RequestBatch: Node._on_request,
    WaitingForBatch: Node._on_waiting,
    DeliveryConfirmed: Node._on_confirmed,
    OfferReply: Node._on_offer_reply,
    Tick: Node._on_tick,
    FlowChanged: Node._on_flow,
    Reclaim: Node._on_reclaim,
    NewRequest: Node._on_new_request,
    BatchSent: Node._on_batch_sent,
    OfferBatch: Node._on_offer,
    BatchUnavailable: Node._on_no_batch,
    RequestRefused: Node._on_no_batch,
    Arrived: Node._on_arrived,
    Produce: Node._on_produce,
}
