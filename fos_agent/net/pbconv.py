"""Conversions between the agent's pure records/messages and fos_pb.agent_pb2 (the gRPC edge).

The protocol never sees protobuf; the peer service and client convert here, in one place.
"""

from __future__ import annotations

from typing import Any

import grpc

from fos_agent.protocol.limits import Attrs, AttrValue
from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    OfferBatch,
    RefusalReason,
    RequestBatch,
    RequestRefused,
    WaitingForBatch,
)
from fos_agent.protocol.records import Batch, InState
from fos_pb import agent_pb2

# Trailing metadata key carrying the supplier's flow version on a refused RequestBatch.
FLOW_VERSION_KEY = "fos-flow-version"

REFUSAL_STATUS: dict[RefusalReason, grpc.StatusCode] = {
    RefusalReason.NOT_A_CONSUMER: grpc.StatusCode.PERMISSION_DENIED,
    RefusalReason.FLOW_NEWER: grpc.StatusCode.FAILED_PRECONDITION,
    RefusalReason.WRONG_ITEM: grpc.StatusCode.INVALID_ARGUMENT,
    RefusalReason.WRONG_SUPPLIER: grpc.StatusCode.INVALID_ARGUMENT,
    RefusalReason.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
}
STATUS_REFUSAL = {
    grpc.StatusCode.PERMISSION_DENIED: RefusalReason.NOT_A_CONSUMER,
    grpc.StatusCode.FAILED_PRECONDITION: RefusalReason.FLOW_NEWER,
    grpc.StatusCode.INVALID_ARGUMENT: RefusalReason.WRONG_ITEM,
}

_IN_TO_PB = {
    None: agent_pb2.INBOUND_UNKNOWN,
    InState.IN_TRANSIT: agent_pb2.INBOUND_IN_TRANSIT,
    InState.QUEUED: agent_pb2.INBOUND_QUEUED,
    InState.CONSUMED: agent_pb2.INBOUND_CONSUMED,
}
_IN_FROM_PB = {v: k for k, v in _IN_TO_PB.items()}


def batch_to_pb(batch: Batch) -> agent_pb2.Batch:
    msg = agent_pb2.Batch(batch_id=batch.batch_id, item=batch.item, qty=batch.qty,
                          lineage=list(batch.lineage), producer=batch.producer, seq=batch.seq)
    if batch.attrs:
        attrs_to_pb(batch.attrs, msg.attrs)
    return msg


def batch_from_pb(msg: agent_pb2.Batch) -> Batch:
    return Batch(batch_id=msg.batch_id, item=msg.item, qty=int(msg.qty),
                 producer=msg.producer, seq=int(msg.seq), lineage=tuple(msg.lineage),
                 attrs=attrs_from_pb(msg.attrs) if msg.attrs else ())


def attrs_to_pb(attrs: Attrs, into: Any) -> None:
    """Fill the ``map<string, AttrValue>`` field ``into`` with ``attrs``."""
    for key, value in attrs:
        if isinstance(value, str):
            into[key].text = value
        elif isinstance(value, int):
            into[key].integer = value
        else:
            into[key].number = value


def attrs_from_pb(field: Any) -> Attrs:
    """The sorted pairs of a ``map<string, AttrValue>``; unchecked (the bounds are
    fos_agent.protocol.limits.check_attrs)."""
    pairs: list[tuple[str, AttrValue]] = []
    for key, value in field.items():
        kind = value.WhichOneof("value")
        pairs.append((key, value.text if kind == "text" else value.integer
                      if kind == "integer" else value.number if kind == "number" else ""))
    return tuple(sorted(pairs))


def in_state_to_pb(state: InState | None) -> int:
    return _IN_TO_PB[state]


def in_state_from_pb(value: int) -> InState | None:
    return _IN_FROM_PB.get(value)


MAX_COUNT = 64  # batches one RequestBatch call may ask for


def sub_request_id(request_id: str, i: int) -> str:
    """The request id of the i-th batch of a multi-batch call (i = 0 is the call's own).
    Protocol request ids end in a counter without '.', so these never collide."""
    return request_id if i == 0 else f"{request_id}.{i}"


def request_to_pb(msg: RequestBatch, delivered: list[str] | None = None, count: int = 1
                  ) -> agent_pb2.RequestBatchRequest:
    return agent_pb2.RequestBatchRequest(
        request_id=msg.request_id, consumer=msg.consumer, item=msg.item, qty=msg.qty,
        flow_version=msg.flow_version, wait_ms=msg.wait_ms, delivered=delivered or [],
        count=count if count > 1 else 0)


def requests_from_pb(supplier: str, req: agent_pb2.RequestBatchRequest) -> list[RequestBatch]:
    """The protocol RequestBatch events of one call (one per batch asked for)."""
    first = request_from_pb(supplier, req)
    count = max(1, min(int(req.count), MAX_COUNT))
    return [first] + [RequestBatch(supplier, first.consumer, sub_request_id(first.request_id, i),
                                   first.item, first.qty, first.flow_version, first.wait_ms)
                      for i in range(1, count)]


def request_from_pb(supplier: str, req: agent_pb2.RequestBatchRequest) -> RequestBatch:
    return RequestBatch(supplier=supplier, consumer=req.consumer, request_id=req.request_id,
                        item=req.item, qty=int(req.qty), flow_version=int(req.flow_version),
                        wait_ms=int(req.wait_ms))


def request_reply_from_pb(msg: RequestBatch, reply: agent_pb2.RequestBatchReply
                          ) -> list[BatchSent] | list[BatchUnavailable]:
    """The reply as protocol events: every batch sent, or one BatchUnavailable."""
    if not reply.HasField("sent"):
        return [BatchUnavailable(msg.supplier, msg.consumer, msg.request_id)]
    batches = [reply.sent, *reply.also_sent]
    return [BatchSent(msg.supplier, msg.consumer, sub_request_id(msg.request_id, i),
                      batch_from_pb(b)) for i, b in enumerate(batches)]


def refusal_from_status(msg: RequestBatch, code: grpc.StatusCode, details: str,
                        metadata: object) -> RequestRefused | None:
    """A refused RequestBatch as the protocol's RequestRefused (None: not a refusal)."""
    reason = STATUS_REFUSAL.get(code)
    if reason is None:
        return None
    version = 0
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == FLOW_VERSION_KEY:
            version = int(value.decode() if isinstance(value, bytes) else value)
    return RequestRefused(msg.supplier, msg.consumer, msg.request_id, reason, version, details)


def ref_to_pb(msg: WaitingForBatch | DeliveryConfirmed) -> agent_pb2.BatchRef:
    return agent_pb2.BatchRef(batch_id=msg.batch_id, supplier=msg.supplier,
                              consumer=msg.consumer)


def offer_to_pb(msg: OfferBatch) -> agent_pb2.OfferBatchRequest:
    return agent_pb2.OfferBatchRequest(batch=batch_to_pb(msg.batch), supplier=msg.supplier,
                                       consumer=msg.consumer)


def offer_from_pb(req: agent_pb2.OfferBatchRequest) -> OfferBatch:
    return OfferBatch(supplier=req.supplier, consumer=req.consumer,
                      batch=batch_from_pb(req.batch))
