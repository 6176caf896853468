"""The batch protocol as a pure, sans-I/O state machine (docs/protocol.md).

No gRPC, no LMDB, no clock, no threads: the I/O layer feeds events in and carries effects
out, the way h11 keeps HTTP/1.1 free of sockets. Laid out like h11's ``_state.py``:

- the rules: `fos_agent.protocol.transitions` -- which record states may follow which
  (``OUT_NEXT``, ``IN_NEXT``), which event makes which move (``OUTBOUND_MOVES``,
  ``INBOUND_MOVES``) and the check every store runs on a durable write;
- the dispatch: ``HANDLERS`` below, one handler per event type;
- the handlers: `fos_agent.protocol.supplier` (outbound batches) and
  `fos_agent.protocol.consumer` (inbound batches, the production cycle), on top of the
  in-memory records of `fos_agent.protocol.ledger`.

API used by the I/O layer
-------------------------
    node, effects = Node.recover(config, durable)   # durable: DurableState from Wal.load()
    effects = node.handle(event)                    # synchronous, never blocks
    node.forget(out_ids, in_ids)                    # after a durable compaction; the
                                                    # SettledLookup given to recover (the
                                                    # WAL's ``settled``) answers for them
                                                    # (fos_agent.protocol.compaction)

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
                        Produce(inputs, qty, attrs)  one cycle: inputs CONSUMED + output QUEUED
                        Scrap(inputs, reason)        inputs CONSUMED without an output
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

from collections.abc import Callable
from typing import Any

from fos_agent.protocol.compaction import SettledLookup
from fos_agent.protocol.consumer import ConsumerSide
from fos_agent.protocol.ledger import NodeConfig
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
    Scrap,
    Tick,
    WaitingForBatch,
)
from fos_agent.protocol.records import DurableState, InState
from fos_agent.protocol.supplier import SupplierSide
from fos_agent.protocol.transitions import InvalidTransition, ProtocolError

__all__ = [
    "Arrived", "BatchSent", "BatchUnavailable", "DeliveryConfirmed", "Effects", "Event",
    "FlowChanged", "InvalidTransition", "Message", "NewRequest", "Node", "NodeConfig",
    "OfferBatch", "OfferReply", "Produce", "ProtocolError", "Reclaim", "RefusalReason",
    "RequestBatch", "RequestRefused", "Scrap", "Tick", "WaitingForBatch",
]

# event type -> its handler; every event the protocol knows has exactly one.
HANDLERS: dict[type[Event], Callable[[Any, Any], Effects]] = {
    # supplier side: outbound batches and who may request them
    RequestBatch: SupplierSide._on_request,
    WaitingForBatch: SupplierSide._on_waiting,
    DeliveryConfirmed: SupplierSide._on_confirmed,
    OfferReply: SupplierSide._on_offer_reply,
    Tick: SupplierSide._on_tick,
    FlowChanged: SupplierSide._on_flow,
    Reclaim: SupplierSide._on_reclaim,
    # consumer side: inbound batches and the production cycle
    NewRequest: ConsumerSide._on_new_request,
    BatchSent: ConsumerSide._on_batch_sent,
    OfferBatch: ConsumerSide._on_offer,
    BatchUnavailable: ConsumerSide._on_no_batch,
    RequestRefused: ConsumerSide._on_no_batch,
    Arrived: ConsumerSide._on_arrived,
    Produce: ConsumerSide._on_produce,
    Scrap: ConsumerSide._on_scrap,
}


class Node(SupplierSide, ConsumerSide):
    """One agent's protocol state, rebuilt from its durable records."""

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

    def handle(self, event: Event) -> Effects:
        """One event in, the effects of one atomic step out (see the module docstring)."""
        handler = HANDLERS.get(type(event))
        if handler is None:
            raise ProtocolError(f"unknown event {event!r}")
        return handler(self, event)
