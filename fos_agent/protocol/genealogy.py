"""What a group of durable writes adds to the genealogy index (fos_raft.lineage.index).

Pure: the WAL calls ``index_puts`` inside the write transaction of the group, with the time
it stamps (``now_ms``) and a getter for entries already in the index, and writes the puts
in the same transaction -- so the index costs no extra fsync and is never behind the WAL.

- a new batch (outbound QUEUED) -> its MadeEntry: inputs with their suppliers (the inbound
  records CONSUMED in the same group, I5), made_at; a reclaim copy's input is its original,
  supplied by this node;
- an inbound record going CONSUMED -> its UsedEntry: supplier and the output it went into;
  a reclaimed original likewise "goes into" its copy;
- an outbound record going IN_TRANSIT -> the consumer it was sent to, in ``lin_sent`` (a
  plain put; compaction folds it into the MadeEntry); RECLAIMED -> the final state.
  DELIVERED is recorded by compaction (fos_agent.storage.lineage_store), off the hot
  path: no entry is re-encoded per trade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from fos_agent.protocol.records import InState, OutState, PutInbound, PutOutbound, Write
from fos_raft.lineage.index import (
    KIND_MADE,
    KIND_USED,
    MADE_DB,
    SENT_DB,
    TIME_DB,
    USED_DB,
    MadeEntry,
    UsedEntry,
    encode_made,
    encode_sent,
    encode_used,
    time_key,
)


@dataclass(frozen=True, slots=True)
class IndexPut:
    db: bytes
    key: bytes
    value: bytes


GetMade = Callable[[str], MadeEntry | None]


def index_puts(node_id: str, writes: Sequence[Write], now_ms: int,
               get_made: GetMade) -> list[IndexPut]:
    """The index puts for one legal group of writes (already checked by check_writes)."""
    made: dict[str, MadeEntry] = {}
    suppliers: dict[str, str] = {}
    into: dict[str, str] = {}
    for w in writes:  # first pass: who supplied what, and which output each input went into
        if isinstance(w, PutInbound) and w.record.state is InState.CONSUMED:
            suppliers[w.record.batch_id] = w.record.supplier
        elif isinstance(w, PutOutbound) and w.record.state is OutState.QUEUED:
            for src in w.record.batch.lineage:
                into[src] = w.record.batch_id
    puts: list[IndexPut] = []
    for w in writes:
        if isinstance(w, PutInbound) and w.record.state is InState.CONSUMED:
            r = w.record
            used = UsedEntry(r.batch_id, node_id, r.supplier, r.batch.item, r.batch.qty,
                             into.get(r.batch_id, ""), now_ms, r.batch.lineage)
            puts.append(IndexPut(USED_DB, r.batch_id.encode(), encode_used(used)))
            puts.append(IndexPut(TIME_DB, time_key(now_ms, KIND_USED, r.batch_id), b""))
        elif isinstance(w, PutOutbound):
            r = w.record
            b = r.batch
            if r.state is OutState.QUEUED:
                sup = node_id if r.reclaimed_from else None
                entry = MadeEntry(b.batch_id, node_id, b.item, b.qty, b.seq, now_ms,
                                  tuple((i, sup or suppliers.get(i, "")) for i in b.lineage),
                                  reclaimed_from=r.reclaimed_from)
                made[b.batch_id] = entry
                puts.append(IndexPut(MADE_DB, b.batch_id.encode(), encode_made(entry)))
                puts.append(IndexPut(TIME_DB, time_key(now_ms, KIND_MADE, b.batch_id), b""))
            elif r.state is OutState.IN_TRANSIT:
                puts.append(IndexPut(SENT_DB, b.batch_id.encode(),
                                     encode_sent(r.to, r.request_id)))
            elif r.state is OutState.RECLAIMED:
                old = made.get(b.batch_id) or get_made(b.batch_id)
                if old is None:  # made before the index existed: nothing to update
                    continue
                entry = replace(old, state=r.state.value, request_id=r.request_id, to=r.to)
                made[b.batch_id] = entry
                puts.append(IndexPut(MADE_DB, b.batch_id.encode(), encode_made(entry)))
                if r.state is OutState.RECLAIMED:
                    used = UsedEntry(b.batch_id, node_id, node_id, b.item, b.qty,
                                     into.get(b.batch_id, ""), now_ms, b.lineage)
                    puts.append(IndexPut(USED_DB, b.batch_id.encode(), encode_used(used)))
                    puts.append(IndexPut(TIME_DB, time_key(now_ms, KIND_USED, b.batch_id),
                                         b""))
    return puts
