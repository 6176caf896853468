"""The genealogy index format: what each agent records about the batches it made and used.

Pure. Sub-databases of the agent's WAL environment (written in the WAL's own transactions):

- ``lin_made``: batch id -> `MadeEntry` (a batch this node made: its inputs with their
  suppliers, item, qty, made_at, the consumer it was delivered to);
- ``lin_used``: input batch id -> `UsedEntry` (a batch this node received and consumed:
  its supplier and the output batch it went into; a reclaim copy "uses" its original);
- ``lin_time``: ``time_key(at_ms, kind, id)`` -> b"" (what retention prunes, oldest first);
- ``lin_req``: (consumer, request_id) -> batch id of settled trades (request dedup after
  compaction);
- ``lin_sent``: batch id -> ``consumer \x00 request_id [\x00 D]`` of a delivered batch
  (D: confirmed), written by compaction, so no MadeEntry is re-encoded per trade; until
  then readers join the live outbound record (fos_raft.lineage.reader.read_view). Older
  agents also wrote it (without D) when a batch went IN_TRANSIT.

Values are compact positional JSON arrays (the C encoder, no keys to sort: a few
microseconds each on the trade path), readable with mdb_dump and stable across Python
versions; the field order is the one of ``encode_made`` / ``encode_used``. Optional
trailing fields are written only when set (a made batch's attributes, a scrapped input's
reason), so entries without them encode as before and older entries decode unchanged.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from fos_raft.model import clip, split_batch_id

MADE_DB = b"lin_made"
USED_DB = b"lin_used"
TIME_DB = b"lin_time"
REQ_DB = b"lin_req"
SENT_DB = b"lin_sent"
INDEX_DBS = (MADE_DB, USED_DB, TIME_DB, REQ_DB, SENT_DB)
KIND_MADE = b"m"
KIND_USED = b"u"
DAY_MS = 86_400_000
DEFAULT_RETENTION_DAYS = 3650

AttrPairs = tuple[tuple[str, str | int | float], ...]  # a batch's attributes, sorted by key


def producer_of(batch_id: str) -> str:
    """Batch ids are ``"<producer>:<seq>"`` (fos_raft.model.split_batch_id); node ids have
    no ':', so the last ':' splits them. ValueError (with the id clipped) if malformed."""
    parts = split_batch_id(batch_id)
    if parts is None:
        raise ValueError(f"{clip(batch_id)} is not a batch id (<producer>:<seq>)")
    return parts[0]


def seq_of(batch_id: str) -> int:
    """The seq of a batch id; 0 (no batch has it) for a malformed one, which the reader's
    caller reports (a record written before ids were checked may hold anything)."""
    parts = split_batch_id(batch_id)
    return parts[1] if parts is not None else 0


@dataclass(frozen=True, slots=True)
class MadeEntry:
    """A batch made at ``node``. ``inputs`` pairs each input batch id with its supplier.
    ``to`` is the consumer it was sent to (set when it goes IN_TRANSIT); ``state`` the
    last outbound state the index recorded; ``delivered_to`` is set once the consumer's
    confirmation is recorded (at compaction; readers join the live WAL record before that,
    see fos_raft.lineage.reader), so the hot path writes one update per trade."""

    batch_id: str
    node: str
    item: str
    qty: int
    seq: int
    made_at_ms: int
    inputs: tuple[tuple[str, str], ...] = ()
    delivered_to: str = ""
    request_id: str = ""
    state: str = "QUEUED"
    reclaimed_from: str = ""
    to: str = ""
    attrs: AttrPairs = ()

    @property
    def input_ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self.inputs)


@dataclass(frozen=True, slots=True)
class UsedEntry:
    """A batch ``node`` received from ``supplier`` and consumed into ``into`` at ``at_ms``.
    ``lineage`` repeats the batch's own inputs so a compacted WAL can still be audited.
    ``scrapped`` is the reason when it was scrapped (``into`` is then empty)."""

    batch_id: str
    node: str
    supplier: str
    item: str
    qty: int
    into: str
    at_ms: int
    lineage: tuple[str, ...] = ()
    scrapped: str = ""


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# The JSON string quoting of _ENCODER (C, ensure_ascii=False): the trade-path encoders
# below format their arrays directly, which is 3x cheaper than JSONEncoder.encode (that
# builds a new C encoder per call); a hypothesis test checks they equal _dump's bytes.
_quote = json.encoder.encode_basestring


def _dump(obj: list[object]) -> bytes:
    return _ENCODER.encode(obj).encode()


def encode_made(e: MadeEntry) -> bytes:
    fields: list[object] = [e.item, e.qty, e.seq, e.made_at_ms,
                            [x for p in e.inputs for x in p], e.delivered_to, e.request_id,
                            e.state, e.reclaimed_from, e.to]
    if e.attrs:
        fields.append(dict(e.attrs))
    return _dump(fields)


def made_value(item: str, qty: int, seq: int, made_at_ms: int, flat_inputs: list[str],
               reclaimed_from: str, attrs: AttrPairs = ()) -> bytes:
    """``encode_made`` of a new (QUEUED) entry, straight from its fields: the trade path
    (``flat_inputs``: input id, supplier, input id, supplier, ...)."""
    inputs = ",".join(map(_quote, flat_inputs))
    tail = f",{_ENCODER.encode(dict(attrs))}" if attrs else ""
    return (f'[{_quote(item)},{int(qty)},{int(seq)},{int(made_at_ms)},[{inputs}],"","",'
            f'"QUEUED",{_quote(reclaimed_from)},""{tail}]').encode()


def _attr_pairs(obj: object) -> AttrPairs:
    return tuple(sorted(obj.items())) if isinstance(obj, dict) else ()


def _typed(values: list[object], types: tuple[type, ...]) -> None:
    """ValueError unless each value has its type (a damaged record must fail here, in one
    place, not as a TypeError deep in a reader's rendering)."""
    for value, kind in zip(values, types, strict=True):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"field {clip(value)} is not a {kind.__name__}")


def decode_made(batch_id: str, node: str, data: bytes) -> MadeEntry:
    """ValueError (TypeError, for a non-array) if the record is damaged."""
    item, qty, seq, at, flat, delivered, rid, state, rf, to, *rest = json.loads(data)
    _typed([item, qty, seq, at, flat, delivered, rid, state, rf, to],
           (str, int, int, int, list, str, str, str, str, str))
    _typed(flat, (str,) * len(flat))
    inputs = tuple(zip(flat[::2], flat[1::2], strict=True))
    return MadeEntry(batch_id, node, item, qty, seq, at, inputs, delivered, rid, state, rf, to,
                     _attr_pairs(rest[0]) if rest else ())


def encode_used(e: UsedEntry) -> bytes:
    return used_value(e.supplier, e.item, e.qty, e.into, e.at_ms, e.lineage, e.scrapped)


def used_value(supplier: str, item: str, qty: int, into: str, at_ms: int,
               lineage: tuple[str, ...], scrapped: str = "") -> bytes:
    """``encode_used`` straight from the fields (the trade path)."""
    tail = f",{_quote(scrapped)}" if scrapped else ""
    return (f"[{_quote(supplier)},{_quote(item)},{int(qty)},{_quote(into)},{int(at_ms)},"
            f"[{','.join(map(_quote, lineage))}]{tail}]").encode()


def decode_used(batch_id: str, node: str, data: bytes) -> UsedEntry:
    """ValueError (TypeError, for a non-array) if the record is damaged."""
    supplier, item, qty, into, at, lineage, *rest = json.loads(data)
    _typed([supplier, item, qty, into, at, lineage], (str, str, int, str, int, list))
    _typed(lineage, (str,) * len(lineage))
    scrapped = rest[0] if rest else ""
    _typed([scrapped], (str,))
    return UsedEntry(batch_id, node, supplier, item, qty, into, at, tuple(lineage), scrapped)


def time_key(at_ms: int, kind: bytes, batch_id: str) -> bytes:
    """Big-endian time first, so a cursor walks the index oldest first."""
    return max(at_ms, 0).to_bytes(8, "big") + kind + batch_id.encode()


def split_time_key(key: bytes) -> tuple[int, bytes, str]:
    (at_ms,) = struct.unpack(">Q", key[:8])
    return at_ms, key[8:9], key[9:].decode()


def request_key(consumer: str, request_id: str) -> bytes:
    # Node ids cannot contain '\x00', so the key splits back unambiguously.
    return f"{consumer}\x00{request_id}".encode()


def encode_sent(to: str, request_id: str, delivered: bool = False) -> bytes:
    return f"{to}\x00{request_id}{chr(0) + 'D' if delivered else ''}".encode()


def decode_sent(data: bytes) -> tuple[str, str, bool]:
    """(consumer, request_id, delivered); node ids and request ids have no NUL."""
    to, _, rest = data.decode().partition("\x00")
    request_id, _, flag = rest.partition("\x00")
    return to, request_id, flag == "D"


def made_to_json(e: MadeEntry) -> dict[str, object]:
    """One line of ``fos-agent export-lineage`` for a made batch."""
    return {"kind": "made", "batch_id": e.batch_id, "node": e.node, "item": e.item,
            "qty": e.qty, "made_at_ms": e.made_at_ms,
            "inputs": [{"batch_id": i, "supplier": s} for i, s in e.inputs],
            "delivered_to": e.delivered_to or None, "sent_to": e.to or None,
            "state": e.state,
            "reclaimed_from": e.reclaimed_from or None,
            "attrs": dict(e.attrs)}


def used_to_json(e: UsedEntry) -> dict[str, object]:
    """One line of ``fos-agent export-lineage`` for a consumed input."""
    return {"kind": "used", "batch_id": e.batch_id, "node": e.node, "supplier": e.supplier,
            "item": e.item, "qty": e.qty, "into": e.into, "used_at_ms": e.at_ms,
            "scrapped": e.scrapped or None}
