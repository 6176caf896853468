"""Events and effects of the pure batch protocol (fos_agent.protocol.machine).

Peer messages mirror proto/agent.proto but are plain dataclasses: the gRPC layer converts at
the edge, so the protocol and its tests never import grpc. Every message names both parties
(``supplier``, ``consumer``); ``to`` is the node it is addressed to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fos_agent.protocol.limits import Attrs
from fos_agent.protocol.records import Batch, InState, Write
from fos_agent.protocol.validate import Refusal

# ---- peer messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestBatch:
    """consumer -> supplier: send me a batch (``request_id`` dedups retries)."""

    supplier: str
    consumer: str
    request_id: str
    item: str
    qty: int
    flow_version: int = 0
    wait_ms: int = 0

    @property
    def to(self) -> str:
        return self.supplier


@dataclass(frozen=True, slots=True)
class BatchSent:
    """supplier -> consumer (reply): ``batch`` is durably IN_TRANSIT to you."""

    supplier: str
    consumer: str
    request_id: str
    batch: Batch

    @property
    def to(self) -> str:
        return self.consumer


@dataclass(frozen=True, slots=True)
class BatchUnavailable:
    """supplier -> consumer (reply): nothing QUEUED now."""

    supplier: str
    consumer: str
    request_id: str

    @property
    def to(self) -> str:
        return self.consumer


class RefusalReason(enum.Enum):
    NOT_A_CONSUMER = "NOT_A_CONSUMER"  # gRPC PERMISSION_DENIED
    FLOW_NEWER = "FLOW_NEWER"  # gRPC FAILED_PRECONDITION: wait for the watch to catch up
    WRONG_ITEM = "WRONG_ITEM"  # gRPC INVALID_ARGUMENT
    WRONG_SUPPLIER = "WRONG_SUPPLIER"  # gRPC INVALID_ARGUMENT: sent to the wrong node
    INVALID = "INVALID"  # gRPC INVALID_ARGUMENT: malformed (fos_agent.protocol.validate)


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """supplier -> consumer (reply): refused; nothing was written."""

    supplier: str
    consumer: str
    request_id: str
    reason: RefusalReason
    flow_version: int
    detail: str = ""

    @property
    def to(self) -> str:
        return self.consumer


@dataclass(frozen=True, slots=True)
class WaitingForBatch:
    """consumer -> supplier: I hold ``batch_id`` durably IN_TRANSIT."""

    supplier: str
    consumer: str
    batch_id: str

    @property
    def to(self) -> str:
        return self.supplier


@dataclass(frozen=True, slots=True)
class DeliveryConfirmed:
    """consumer -> supplier: ``batch_id`` is durably QUEUED (or CONSUMED) here."""

    supplier: str
    consumer: str
    batch_id: str

    @property
    def to(self) -> str:
        return self.supplier


@dataclass(frozen=True, slots=True)
class OfferBatch:
    """supplier -> consumer: the retry. ``batch`` is IN_TRANSIT to you; what is your state?"""

    supplier: str
    consumer: str
    batch: Batch

    @property
    def to(self) -> str:
        return self.consumer


@dataclass(frozen=True, slots=True)
class OfferReply:
    """consumer -> supplier (reply to OfferBatch): durable state after the offer; None is
    INBOUND_UNKNOWN (the offer was refused)."""

    supplier: str
    consumer: str
    batch_id: str
    state: InState | None

    @property
    def to(self) -> str:
        return self.supplier


Message = (RequestBatch | BatchSent | BatchUnavailable | RequestRefused | WaitingForBatch
           | DeliveryConfirmed | OfferBatch | OfferReply)

# ---- local events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewRequest:
    """Consumer side: make a RequestBatch to ``supplier`` (the node allocates the request id,
    unique across restarts because it contains the durable incarnation)."""

    supplier: str
    item: str
    qty: int | None = None  # default: the required quantity of ``item``
    flow_version: int = 0
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class Arrived:
    """Consumer side: the goods of ``batch_id`` physically arrived."""

    batch_id: str


@dataclass(frozen=True, slots=True)
class Produce:
    """One cycle: consume ``inputs`` (inbound QUEUED, one per required item) and queue the
    output, in one durable step. Source stages pass ``()``. ``qty`` (None: the spec's
    ``produces`` quantity) and ``attrs`` (sorted pairs) are the output's, within
    fos_agent.protocol.limits."""

    inputs: tuple[str, ...] = ()
    qty: int | None = None
    attrs: Attrs = ()


@dataclass(frozen=True, slots=True)
class Scrap:
    """Consume ``inputs`` (inbound QUEUED, any non-empty subset of what a cycle holds)
    without an output, in one durable step; ``reason`` is recorded with each of them."""

    inputs: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Supplier side retry timer: re-offer every IN_TRANSIT batch (to ``consumer`` only,
    if given)."""

    consumer: str | None = None


@dataclass(frozen=True, slots=True)
class FlowChanged:
    """Supplier side: ``consumers`` are this node's flow consumers at flow ``version``."""

    version: int
    consumers: frozenset[str]


@dataclass(frozen=True, slots=True)
class Reclaim:
    """Supplier side: the coordinator decommissioned ``consumer``; its IN_TRANSIT batches go
    RECLAIMED and are re-queued as new batches with lineage [old id]."""

    consumer: str


Event = Message | NewRequest | Arrived | Produce | Scrap | Tick | FlowChanged | Reclaim


@dataclass(frozen=True, slots=True)
class Effects:
    """What one event asks of the I/O layer, in order: make ``writes`` durable (one atomic,
    synced transaction), then send ``messages`` and return ``reply``. ``refusal``: the
    event was a malformed or forged message (fos_agent.protocol.validate), refused with no
    write; ``peer`` is the node it claimed to come from."""

    writes: tuple[Write, ...] = ()
    messages: tuple[Message, ...] = ()
    reply: Message | None = None
    notes: tuple[str, ...] = ()
    refusal: Refusal | None = None
    peer: str = ""
