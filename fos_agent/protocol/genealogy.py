"""What a group of durable writes adds to the genealogy index (fos_raft.lineage.index).

Pure: the WAL calls ``index_puts`` inside the write transaction of the group, with the time
it stamps (``now_ms``) and a getter for entries already in the index, and writes the puts
in the same transaction -- so the index costs no extra fsync and is never behind the WAL.

- a new batch (outbound QUEUED) -> its MadeEntry: inputs with their suppliers (the inbound
  records CONSUMED in the same group, I5), made_at; a reclaim copy's input is its original,
  supplied by this node;
- an inbound record going CONSUMED -> its UsedEntry: supplier and the output it went into;
  a reclaimed original likewise "goes into" its copy; a scrapped input goes into nothing
  and its entry carries the scrap reason; a made batch's entry carries its attributes;
- an outbound record going RECLAIMED -> the final state.
  IN_TRANSIT and DELIVERED add nothing on the trade path: the live outbound record says
  where the batch went (readers join it, fos_raft.lineage.reader), and compaction
  (fos_agent.storage.lineage_store) records the delivery in ``lin_sent`` when the record
  leaves the live state. No entry is re-encoded per trade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from fos_agent.protocol.records import InState, OutState, PutInbound, PutOutbound, Write
from fos_raft.lineage.index import (
    KIND_MADE,
    KIND_USED,
    MADE_DB,
    TIME_DB,
    USED_DB,
    MadeEntry,
    UsedEntry,
    decode_made,
    encode_made,
    encode_used,
    made_value,
    time_key,
    used_value,
)

# (sub-database, key, value): plain tuples, because this runs on every trade's commit
IndexPut = tuple[bytes, bytes, bytes]

GetMade = Callable[[str], MadeEntry | None]


def index_puts(node_id: str, writes: Sequence[Write], now_ms: int,
               get_made: GetMade) -> list[IndexPut]:
    """The index puts for one legal group of writes (already checked by check_writes).

    On the trade path (issue 10's goal: the index within 10% of the trades/s without it),
    so the values are encoded straight from the records, without building the entries."""
    suppliers: dict[str, str] = {}
    into: dict[str, str] = {}
    consumed, queued = InState.CONSUMED, OutState.QUEUED
    for w in writes:  # first pass: who supplied what, and which output each input went into
        kind = type(w)
        if kind is PutInbound:
            if w.record.state is consumed:
                suppliers[w.record.batch.batch_id] = w.record.supplier
        elif kind is PutOutbound and w.record.state is queued:
            made_id = w.record.batch.batch_id
            for src in w.record.batch.lineage:
                into[src] = made_id
    puts: list[IndexPut] = []
    stamp = now_ms.to_bytes(8, "big")  # time_key's prefix
    for w in writes:
        kind = type(w)
        if kind is PutInbound:
            r = w.record
            if r.state is consumed:
                b = r.batch
                key = b.batch_id.encode()
                puts.append((USED_DB, key, used_value(
                    r.supplier, b.item, b.qty, into.get(b.batch_id, ""), now_ms, b.lineage,
                    r.scrapped)))
                puts.append((TIME_DB, stamp + KIND_USED + key, b""))
        elif kind is PutOutbound:
            r = w.record
            b = r.batch
            if r.state is queued:
                key = b.batch_id.encode()
                if r.reclaimed_from:  # a reclaim copy: its input is its original, ours
                    flat = [x for i in b.lineage for x in (i, node_id)]
                else:
                    flat = [x for i in b.lineage for x in (i, suppliers.get(i, ""))]
                puts.append((MADE_DB, key, made_value(
                    b.item, b.qty, b.seq, now_ms, flat, r.reclaimed_from, b.attrs)))
                puts.append((TIME_DB, stamp + KIND_MADE + key, b""))
            elif r.state is OutState.RECLAIMED:
                made = [p for p in puts if p[0] == MADE_DB and p[1] == b.batch_id.encode()]
                old = (decode_made(b.batch_id, node_id, made[-1][2]) if made
                       else get_made(b.batch_id))
                if old is None:  # made before the index existed: nothing to update
                    continue
                entry = replace(old, state=r.state.value, request_id=r.request_id, to=r.to)
                puts.append((MADE_DB, b.batch_id.encode(), encode_made(entry)))
                used = UsedEntry(b.batch_id, node_id, node_id, b.item, b.qty,
                                 into.get(b.batch_id, ""), now_ms, b.lineage)
                puts.append((USED_DB, b.batch_id.encode(), encode_used(used)))
                puts.append((TIME_DB, time_key(now_ms, KIND_USED, b.batch_id), b""))
    return puts
