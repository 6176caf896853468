"""The consumer-side handlers: a node's INBOUND batches and its production cycle
(docs/protocol.md).

Pure. Each handler takes one event, changes the ledger through ``_put_in`` / ``_put_out``
and returns the `Effects` of that one atomic step. The moves they make are listed in
`fos_agent.protocol.transitions.INBOUND_MOVES` (and `OUTBOUND_MOVES` for the output of a
`Produce`); `Node.handle` (fos_agent.protocol.machine) dispatches to them.
"""

from __future__ import annotations

from dataclasses import replace

from fos_agent.protocol.ledger import NodeLedger, seq_last
from fos_agent.protocol.limits import LimitError, check_attrs, check_qty, check_reason
from fos_agent.protocol.messages import (
    Arrived,
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    Effects,
    Message,
    NewRequest,
    OfferBatch,
    OfferReply,
    Produce,
    RequestBatch,
    RequestRefused,
    Scrap,
    WaitingForBatch,
)
from fos_agent.protocol.records import (
    Batch,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    Write,
    batch_id_of,
)
from fos_agent.protocol.transitions import ProtocolError
from fos_agent.protocol.validate import Refusal, check_batch, check_batch_id, clip


class ConsumerSide(NodeLedger):
    """Handlers of the events that move inbound records, and of the production cycle."""

    def _on_new_request(self, event: NewRequest) -> Effects:
        """A local wish for a batch: no durable write, one RequestBatch to send."""
        self._request_counter += 1
        rid = f"{self.node_id}~{self.incarnation}~{self._request_counter}"
        qty = event.qty
        if qty is None:
            qty = next((r.qty for r in self.config.requires if r.item == event.item), 1)
        return Effects(messages=(RequestBatch(event.supplier, self.node_id, rid, event.item,
                                              qty, event.flow_version, event.wait_ms),))

    def _accept(self, supplier: str, consumer: str, batch: Batch) -> tuple[
            list[Write], InState | None, str, Refusal | None]:
        """Take a batch offered or sent to us (new -> IN_TRANSIT, or QUEUED with immediate
        arrival); returns (writes, state after, note, refusal). A malformed batch is
        refused before anything is looked up or written (fos_agent.protocol.validate)."""
        if consumer != self.node_id:
            return [], None, "", Refusal("consumer", f"batch {clip(batch.batch_id)} is for "
                                                     f"{clip(consumer)}, not {self.node_id}")
        refusal = check_batch_id(batch.batch_id, supplier)
        if refusal is not None:
            return [], None, "", refusal
        rec = self._in.get(batch.batch_id)
        if rec is not None:  # checked when it was taken; the spec may have changed since
            if rec.supplier != supplier or rec.batch != batch:
                return [], None, "", Refusal("differs", f"batch {batch.batch_id} differs "
                                                        "from the one recorded")
            return [], rec.state, "", None
        if self._settled.settled_inbound(batch.batch_id) == supplier:  # consumed, compacted
            return [], InState.CONSUMED, "", None
        takes = {r.item for r in self.config.requires}
        if batch.item not in takes and any(r.supplier == supplier and r.batch.item == batch.item
                                           for r in self._in.values()):
            # an input this node required until a spec change, from a supplier it took it
            # from, was on its way: taken (goods sent must not be lost), never consumed
            takes.add(batch.item)
        refusal = check_batch(batch, supplier, takes)
        if refusal is not None:
            return [], None, "", refusal
        state = InState.QUEUED if self.config.immediate_arrival else InState.IN_TRANSIT
        writes: list[Write] = []
        self._put_in(InboundRecord(batch, state, supplier), writes)
        return writes, state, "", None

    def _on_batch_sent(self, msg: BatchSent) -> Effects:
        writes, state, note, refusal = self._accept(msg.supplier, msg.consumer, msg.batch)
        if state is None:
            return Effects(notes=(refusal.detail if refusal else note,),
                           refusal=refusal, peer=msg.supplier)
        answer: Message
        if state is InState.IN_TRANSIT:
            answer = WaitingForBatch(msg.supplier, self.node_id, msg.batch.batch_id)
        else:
            answer = DeliveryConfirmed(msg.supplier, self.node_id, msg.batch.batch_id)
        return Effects(writes=tuple(writes), messages=(answer,))

    def _on_offer(self, msg: OfferBatch) -> Effects:
        writes, state, note, refusal = self._accept(msg.supplier, msg.consumer, msg.batch)
        reply = OfferReply(msg.supplier, msg.consumer, msg.batch.batch_id, state)
        notes = (refusal.detail,) if refusal else (note,) if note else ()
        return Effects(writes=tuple(writes), reply=reply, notes=notes, refusal=refusal,
                       peer=msg.supplier)

    def _on_no_batch(self, msg: BatchUnavailable | RequestRefused) -> Effects:
        return Effects(notes=(f"request {msg.request_id} to {msg.supplier}: "
                              f"{type(msg).__name__}",))

    def _on_arrived(self, event: Arrived) -> Effects:
        """Physical arrival: IN_TRANSIT -> QUEUED, and confirm (again, if a duplicate)."""
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
        """One cycle: each input QUEUED -> CONSUMED and a new output QUEUED (lineage = the
        inputs, fresh seq) in one step (I5, I6)."""
        inputs = tuple(event.inputs)
        items = self._queued_items(inputs)
        out = self.config.produces
        try:
            qty = out.qty if event.qty is None else check_qty(event.qty)
            attrs = check_attrs(event.attrs)
        except LimitError as e:
            raise ProtocolError(str(e)) from None
        wanted = sorted(r.item for r in self.config.requires)
        if sorted(items) != wanted:
            raise ProtocolError(f"a cycle of {self.node_id} consumes one batch of each of "
                                f"{wanted}, got {sorted(items)}")
        writes: list[Write] = []
        for bid in inputs:
            self._put_in(replace(self._in[bid], state=InState.CONSUMED), writes)
        self.release(inputs)
        seq = self._alloc_seq(writes)
        batch = Batch(batch_id_of(self.node_id, seq), out.item, qty, self.node_id, seq,
                      inputs, attrs)
        self._put_out(OutboundRecord(batch, OutState.QUEUED), writes)
        return Effects(writes=seq_last(writes))

    def _on_scrap(self, event: Scrap) -> Effects:
        """Scrap: each input QUEUED -> CONSUMED with the reason and no output, in one step.
        Any non-empty set of required inputs (a cycle's, or part of it) may be scrapped."""
        inputs = tuple(event.inputs)
        if not inputs:
            raise ProtocolError("a scrap names at least one input")
        try:
            reason = check_reason(event.reason)
        except LimitError as e:
            raise ProtocolError(str(e)) from None
        items = self._queued_items(inputs)
        required = {r.item for r in self.config.requires}
        if len(set(items)) != len(items) or not set(items) <= required:
            raise ProtocolError(f"a scrap of {self.node_id} takes at most one batch of each "
                                f"of {sorted(required)}, got {sorted(items)}")
        writes: list[Write] = []
        for bid in inputs:
            self._put_in(replace(self._in[bid], state=InState.CONSUMED, scrapped=reason),
                         writes)
        self.release(inputs)
        return Effects(writes=tuple(writes))

    def _queued_items(self, inputs: tuple[str, ...]) -> list[str]:
        """The items of ``inputs``, each once and QUEUED here, or ProtocolError."""
        if len(set(inputs)) != len(inputs):
            raise ProtocolError(f"a cycle consumes each batch at most once: {inputs}")
        items: list[str] = []
        for bid in inputs:
            rec = self._in.get(bid)
            if rec is None or rec.state is not InState.QUEUED:
                state = rec.state.value if rec else "unknown"
                raise ProtocolError(f"input {bid} is {state}, not QUEUED")
            items.append(rec.batch.item)
        return items
