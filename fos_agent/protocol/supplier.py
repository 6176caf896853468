"""The supplier-side handlers: a node's OUTBOUND batches (docs/protocol.md).

Pure. Each handler takes one event, changes the ledger through ``_put_out`` and returns the
`Effects` of that one atomic step. The moves they make are listed in
`fos_agent.protocol.transitions.OUTBOUND_MOVES`; `Node.handle` (fos_agent.protocol.machine)
dispatches to them.
"""

from __future__ import annotations

from dataclasses import replace

from fos_agent.protocol.ledger import NO_EFFECTS, NodeLedger, seq_last
from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    Effects,
    FlowChanged,
    OfferBatch,
    OfferReply,
    Reclaim,
    RefusalReason,
    RequestBatch,
    RequestRefused,
    Tick,
    WaitingForBatch,
)
from fos_agent.protocol.records import (
    Batch,
    InState,
    OutboundRecord,
    OutState,
    PutRequest,
    Write,
    batch_id_of,
)
from fos_agent.protocol.transitions import ProtocolError
from fos_agent.protocol.validate import MAX_BATCH_ID_LEN, check_confirmation, check_request


class SupplierSide(NodeLedger):
    """Handlers of the events that move outbound records (or authorise them)."""

    def _on_request(self, msg: RequestBatch) -> Effects:
        """QUEUED -> IN_TRANSIT(consumer) for an authorised consumer; a retry of the same
        request id gets the same batch again, never a second one."""
        def refuse(reason: RefusalReason, why: str) -> Effects:
            reply = RequestRefused(msg.supplier, msg.consumer, msg.request_id, reason,
                                   self.flow_version, why)
            return Effects(reply=reply, notes=(f"refused request {msg.request_id}: {why}",))

        if msg.supplier != self.node_id:
            return refuse(RefusalReason.WRONG_SUPPLIER, f"this is {self.node_id}")
        invalid = check_request(msg.consumer, msg.request_id, msg.qty, msg.flow_version,
                                msg.wait_ms)
        if invalid is not None:
            return replace(refuse(RefusalReason.INVALID, invalid.detail), refusal=invalid,
                           peer=msg.consumer)
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
        rec, refused = self._sent_to(msg.consumer, msg.batch_id)
        if refused is not None:
            return refused
        if rec is None or rec.state is not OutState.IN_TRANSIT or rec.to != msg.consumer:
            return Effects(notes=(f"stale WaitingForBatch {msg.batch_id} from {msg.consumer}",))
        self._waiting.add(msg.batch_id)
        return NO_EFFECTS

    def _on_confirmed(self, msg: DeliveryConfirmed) -> Effects:
        rec, refused = self._sent_to(msg.consumer, msg.batch_id)
        if refused is not None:
            return refused
        if (self.config.verify_confirmations and rec is not None
                and rec.state is OutState.IN_TRANSIT):
            # a hint only: ask the consumer itself; its OfferReply settles the batch
            return Effects(messages=(self._offer(rec),))
        return self._confirm(msg.consumer, msg.batch_id)

    def _sent_to(self, consumer: str, batch_id: str) -> tuple[OutboundRecord | None,
                                                              Effects | None]:
        """Our live record of ``batch_id``, or the refusal of a message about a batch this
        node never made or never sent to ``consumer``."""
        if not isinstance(batch_id, str) or len(batch_id) > MAX_BATCH_ID_LEN:
            rec = None
        else:
            rec = self._out.get(batch_id)
        refusal = check_confirmation(self.node_id, self._next_seq, consumer, batch_id, rec)
        if refusal is not None:
            return rec, Effects(notes=(refusal.detail,), refusal=refusal, peer=consumer)
        return rec, None

    def _on_offer_reply(self, msg: OfferReply) -> Effects:
        if msg.state in (InState.QUEUED, InState.CONSUMED):
            return self._confirm(msg.consumer, msg.batch_id)
        if msg.state is InState.IN_TRANSIT:
            return self._on_waiting(WaitingForBatch(msg.supplier, msg.consumer, msg.batch_id))
        return Effects(notes=(f"{msg.consumer} refused the offer of {msg.batch_id}",))

    def _confirm(self, consumer: str, batch_id: str) -> Effects:
        """IN_TRANSIT -> DELIVERED; a repeated confirmation changes nothing."""
        rec = self._out.get(batch_id)
        if rec is None or rec.to != consumer:
            return Effects(notes=(f"ignored confirmation of {batch_id} from {consumer}",))
        if rec.state is not OutState.IN_TRANSIT:  # already DELIVERED (or RECLAIMED)
            return Effects(notes=(f"{batch_id} already {rec.state.value}",))
        writes: list[Write] = []
        self._put_out(replace(rec, state=OutState.DELIVERED), writes)
        return Effects(writes=tuple(writes))

    def _on_tick(self, event: Tick) -> Effects:
        """The retry timer: re-offer every IN_TRANSIT batch (of one consumer, if given)."""
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
        """IN_TRANSIT -> RECLAIMED for a decommissioned consumer, each replaced by a new
        QUEUED copy (fresh seq, lineage = the original) in the same step."""
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
        return Effects(writes=seq_last(writes))
