"""Batch records of the agent: batches, WAL records, durable writes, and their byte encoding.

Pure: no LMDB, no gRPC, no clock. The protocol (fos_agent.protocol.machine) produces `Write`s, the
WAL (fos_agent.storage.wal) stores the records they carry, and the audit reads them back. The byte
encoding lives here so that the WAL, the audit and any offline tool agree on it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from fos_agent.protocol.limits import Attrs

# Unchanged by the optional fields (a batch's "attrs", an inbound record's "scrapped"):
# they are written only when set and read with their defaults, so older WALs open as they
# are; a version bump would refuse them.
SCHEMA_VERSION = 1


class OutState(enum.Enum):
    """Supplier's outbound state. QUEUED -> IN_TRANSIT -> DELIVERED, or IN_TRANSIT -> RECLAIMED."""

    QUEUED = "QUEUED"
    IN_TRANSIT = "IN_TRANSIT"
    DELIVERED = "DELIVERED"
    RECLAIMED = "RECLAIMED"


class InState(enum.Enum):
    """Consumer's inbound state. IN_TRANSIT -> QUEUED -> CONSUMED."""

    IN_TRANSIT = "IN_TRANSIT"
    QUEUED = "QUEUED"
    CONSUMED = "CONSUMED"


def batch_id_of(producer: str, seq: int) -> str:
    return f"{producer}:{seq}"


@dataclass(frozen=True, slots=True)
class Batch:
    """A unit of goods. ``lineage`` lists the input batch ids consumed to make it;
    ``attrs`` the program's attributes of it as (key, value) pairs sorted by key
    (fos_agent.protocol.limits)."""

    batch_id: str
    item: str
    qty: int
    producer: str
    seq: int
    lineage: tuple[str, ...] = ()
    attrs: Attrs = ()


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """A batch this node produced, in its outbound WAL.

    ``to`` and ``request_id`` are set when the batch goes IN_TRANSIT (request_id is empty
    when the batch was never requested, which the protocol does not do today).
    ``reclaimed_from`` is set on a batch created by reclaiming an IN_TRANSIT batch whose
    consumer was decommissioned; such a batch is a copy of goods, not new production.
    """

    batch: Batch
    state: OutState
    to: str = ""
    request_id: str = ""
    reclaimed_from: str = ""

    @property
    def batch_id(self) -> str:
        return self.batch.batch_id


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A batch this node received from ``supplier``, in its inbound WAL. ``scrapped`` is
    the reason when the batch was CONSUMED by a scrap (no output made of it)."""

    batch: Batch
    state: InState
    supplier: str
    scrapped: str = ""

    @property
    def batch_id(self) -> str:
        return self.batch.batch_id


# ---- durable writes: what the protocol asks the WAL to make durable, in order ----------------


@dataclass(frozen=True, slots=True)
class PutOutbound:
    record: OutboundRecord


@dataclass(frozen=True, slots=True)
class PutInbound:
    record: InboundRecord


@dataclass(frozen=True, slots=True)
class PutRequest:
    """request_id dedup: (consumer, request_id) -> the batch sent for it. Never overwritten."""

    consumer: str
    request_id: str
    batch_id: str


@dataclass(frozen=True, slots=True)
class SetNextSeq:
    """The durable seq counter; strictly increasing, so a seq is never reused (I6)."""

    next_seq: int


Write = PutOutbound | PutInbound | PutRequest | SetNextSeq


@dataclass(slots=True)
class DurableState:
    """Everything an agent keeps durably: what the WAL returns on open and what the protocol
    rebuilds its in-memory state from after a restart."""

    node_id: str
    incarnation: int = 0
    next_seq: int = 1
    outbound: dict[str, OutboundRecord] = field(default_factory=dict)
    inbound: dict[str, InboundRecord] = field(default_factory=dict)
    requests: dict[tuple[str, str], str] = field(default_factory=dict)

    def copy(self) -> DurableState:
        return DurableState(
            node_id=self.node_id,
            incarnation=self.incarnation,
            next_seq=self.next_seq,
            outbound=dict(self.outbound),
            inbound=dict(self.inbound),
            requests=dict(self.requests),
        )


# ---- byte encoding (compact JSON: readable with mdb_dump, stable across Python versions) -----


def _batch_to_obj(batch: Batch) -> dict[str, object]:
    obj: dict[str, object] = {
        "id": batch.batch_id,
        "item": batch.item,
        "qty": batch.qty,
        "producer": batch.producer,
        "seq": batch.seq,
        "lineage": list(batch.lineage),
    }
    if batch.attrs:  # only when set: a batch without attributes encodes as before
        obj["attrs"] = dict(batch.attrs)
    return obj


def _batch_from_obj(obj: dict) -> Batch:
    attrs = obj.get("attrs")
    return Batch(
        batch_id=str(obj["id"]),
        item=str(obj["item"]),
        qty=int(obj["qty"]),
        producer=str(obj["producer"]),
        seq=int(obj["seq"]),
        lineage=tuple(str(x) for x in obj["lineage"]),
        attrs=_attrs_from_obj(attrs) if attrs else (),
    )


def _attrs_from_obj(obj: object) -> Attrs:
    if not obj:
        return ()
    if not isinstance(obj, dict):
        raise ValueError(f"attrs must be an object, got {type(obj).__name__}")
    return tuple(sorted((str(k), v) for k, v in obj.items()))


def _dump(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def encode_outbound(record: OutboundRecord) -> bytes:
    return _dump(
        {
            "batch": _batch_to_obj(record.batch),
            "state": record.state.value,
            "to": record.to,
            "request_id": record.request_id,
            "reclaimed_from": record.reclaimed_from,
        }
    )


def decode_outbound(data: bytes) -> OutboundRecord:
    obj = json.loads(data)
    return OutboundRecord(
        batch=_batch_from_obj(obj["batch"]),
        state=OutState(obj["state"]),
        to=str(obj["to"]),
        request_id=str(obj["request_id"]),
        reclaimed_from=str(obj["reclaimed_from"]),
    )


def encode_inbound(record: InboundRecord) -> bytes:
    obj: dict[str, object] = {
        "batch": _batch_to_obj(record.batch),
        "state": record.state.value,
        "supplier": record.supplier,
    }
    if record.scrapped:
        obj["scrapped"] = record.scrapped
    return _dump(obj)


def decode_inbound(data: bytes) -> InboundRecord:
    obj = json.loads(data)
    return InboundRecord(
        batch=_batch_from_obj(obj["batch"]),
        state=InState(obj["state"]),
        supplier=str(obj["supplier"]),
        scrapped=str(obj.get("scrapped", "")),
    )


def request_key(consumer: str, request_id: str) -> bytes:
    # Node ids cannot contain '\x00', so the key splits back unambiguously.
    return f"{consumer}\x00{request_id}".encode()


def split_request_key(key: bytes) -> tuple[str, str]:
    consumer, _, request_id = key.decode().partition("\x00")
    return consumer, request_id
