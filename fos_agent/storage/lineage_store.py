"""The genealogy index and compaction inside the WAL's LMDB environment.

Called by fos_agent.storage.wal inside its own write transactions, so the index and the
records never disagree and the index costs no extra fsync:

- ``write_index``: the puts fos_agent.protocol.genealogy derives from a group of writes;
- ``compact_txn`` / ``compact_records_txn``: settled records (fos_agent.protocol.compaction)
  leave the live sub-databases, read back from disk or handed over by the WAL that made
  them durable; their request keys move to ``lin_req`` for dedup;
- ``prune_txn``: retention -- index entries older than the cutoff go, oldest first;
- ``settled_record``: the CONSUMED inbound record a compacted id stands for (check_writes
  then refuses to accept it again), and ``WalSettled``, the node's SettledLookup;
- ``settled_state``: compacted records rebuilt from the index (the audit over a WAL).
"""

from __future__ import annotations

from collections.abc import Sequence

import lmdb

from fos_agent.protocol.compaction import inbound_settled, outbound_settled
from fos_agent.protocol.genealogy import index_puts
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    Write,
    decode_inbound,
    decode_outbound,
    split_request_key,
)
from fos_agent.storage.settled_marks import MARKS_KEY, SettledMarks
from fos_raft.lineage.index import (
    INDEX_DBS,
    KIND_MADE,
    MADE_DB,
    REQ_DB,
    SENT_DB,
    TIME_DB,
    USED_DB,
    MadeEntry,
    UsedEntry,
    decode_made,
    decode_used,
    encode_made,
    encode_sent,
    encode_used,
    request_key,
    seq_of,
    split_time_key,
)
from fos_raft.lineage.reader import DAMAGE, LineageIndexError, read_view
from fos_raft.model import clip

Dbs = dict[bytes, object]


def open_index_dbs(env: lmdb.Environment, readonly: bool) -> Dbs | None:
    """The index sub-databases (created in a writable environment); None when a read-only
    WAL predates the index."""
    try:
        return {name: env.open_db(name, create=not readonly) for name in INDEX_DBS}
    except lmdb.Error:
        if readonly:
            return None
        raise


def _made(txn: lmdb.Transaction, dbs: Dbs, node_id: str, bid: str) -> MadeEntry | None:
    data = txn.get(bid.encode(), db=dbs[MADE_DB])
    return None if data is None else decode_made(bid, node_id, data)


def write_index(txn: lmdb.Transaction, dbs: Dbs, node_id: str, writes: Sequence[Write],
                now_ms: int) -> int:
    puts = index_puts(node_id, writes, now_ms, lambda b: _made(txn, dbs, node_id, b))
    for db, key, value in puts:
        txn.put(key, value, db=dbs[db])
    return len(puts)


def settled_record(txn: lmdb.Transaction, dbs: Dbs, node_id: str,
                   bid: str) -> InboundRecord | None:
    data = txn.get(bid.encode(), db=dbs[USED_DB])
    if data is None:
        return None
    used = decode_used(bid, node_id, data)
    if used.supplier == node_id:  # a reclaimed original of ours, not an inbound batch
        return None
    seq = seq_of(bid)  # 0 for an id no check refused when it was taken: the audit names it
    batch = Batch(bid, used.item, used.qty, used.supplier, seq, used.lineage)
    return InboundRecord(batch, InState.CONSUMED, used.supplier, used.scrapped)


def _records(txn: lmdb.Transaction, db: object,
             ids: list[str] | None) -> list[tuple[bytes, bytes]]:
    if ids is None:
        return list(txn.cursor(db=db))
    found = ((b.encode(), txn.get(b.encode(), db=db)) for b in ids)
    return [(k, v) for k, v in found if v is not None]


def _settle_out(txn: lmdb.Transaction, wal_dbs: Dbs, dbs: Dbs, key: bytes,
                rec: OutboundRecord) -> None:
    """Fold a settled outbound record into the index (its MadeEntry was written when it was
    made, unless that was before the index existed) and drop its live request key."""
    if txn.get(key, db=dbs[MADE_DB]) is None:  # made before the index existed
        b = rec.batch
        made = MadeEntry(b.batch_id, "", b.item, b.qty, b.seq, 0,
                         tuple((i, "") for i in b.lineage), request_id=rec.request_id,
                         reclaimed_from=rec.reclaimed_from, to=rec.to, state=rec.state.value,
                         delivered_to=rec.to if rec.state is OutState.DELIVERED else "",
                         attrs=b.attrs)
        txn.put(key, encode_made(made), db=dbs[MADE_DB])
    if rec.state is OutState.DELIVERED:  # the confirmation: a plain put, no decode
        txn.put(key, encode_sent(rec.to, rec.request_id, delivered=True), db=dbs[SENT_DB])
    if rec.request_id:
        rkey = request_key(rec.to, rec.request_id)
        txn.delete(rkey, db=wal_dbs[b"requests"])
        txn.put(rkey, key, db=dbs[REQ_DB])


def _settle_in(txn: lmdb.Transaction, dbs: Dbs, key: bytes, inb: InboundRecord) -> None:
    if txn.get(key, db=dbs[USED_DB]) is None:  # consumed before the index existed
        b = inb.batch
        old = UsedEntry(b.batch_id, "", inb.supplier, b.item, b.qty, "", 0, b.lineage,
                        inb.scrapped)
        txn.put(key, encode_used(old), db=dbs[USED_DB])


def compact_txn(txn: lmdb.Transaction, wal_dbs: Dbs, dbs: Dbs,
                candidates: tuple[list[str], list[str]] | None = None,
                marks: SettledMarks | None = None) -> tuple[list[str], list[str]]:
    """Move settled records out of the live state: every one, or only among the
    ``candidates`` (outbound ids, inbound ids), as they are on disk. Returns the
    (outbound, inbound) ids moved."""
    out_db, in_db = wal_dbs[b"outbound"], wal_dbs[b"inbound"]
    outs = [(k, r) for k, v in _records(txn, out_db, candidates[0] if candidates else None)
            if outbound_settled(r := decode_outbound(v))]
    ins = [(k, r) for k, v in _records(txn, in_db, candidates[1] if candidates else None)
           if inbound_settled(r := decode_inbound(v))]
    return compact_records_txn(txn, wal_dbs, dbs, outs, ins, marks)


def compact_records_txn(txn: lmdb.Transaction, wal_dbs: Dbs, dbs: Dbs,
                        outs: Sequence[tuple[bytes, OutboundRecord]],
                        ins: Sequence[tuple[bytes, InboundRecord]],
                        marks: SettledMarks | None = None) -> tuple[list[str], list[str]]:
    """Move these settled records (key, record as durable on disk) out of the live state.
    Settled states are final, so a record known durable and settled need not be read
    back: the WAL hands over the ones its own commits settled (``Wal.compact_recent``).
    ``marks`` (fos_agent.storage.settled_marks) are raised in memory first, then written
    in this transaction: in memory they are never below what is on disk."""
    out_db, in_db = wal_dbs[b"outbound"], wal_dbs[b"inbound"]
    for key, rec in outs:
        _settle_out(txn, wal_dbs, dbs, key, rec)
        txn.delete(key, db=out_db)
    for key, inb in ins:
        _settle_in(txn, dbs, key, inb)
        txn.delete(key, db=in_db)
    in_ids = [k.decode() for k, _ in ins]
    if marks is not None and marks.raise_to(in_ids, (r.request_id for _, r in outs)):
        txn.put(MARKS_KEY, marks.encode(), db=wal_dbs[b"meta"])
    return [k.decode() for k, _ in outs], in_ids


def prune_txn(txn: lmdb.Transaction, wal_dbs: Dbs, dbs: Dbs, cutoff_ms: int,
              limit: int = 10_000) -> int:
    """Drop up to ``limit`` index entries stamped before ``cutoff_ms`` (oldest first);
    entries of records still live stay. Returns how many went."""
    pruned = 0
    cursor = txn.cursor(db=dbs[TIME_DB])
    doomed: list[bytes] = []
    for key, _ in cursor:
        at_ms, kind, bid = split_time_key(key)
        if at_ms >= cutoff_ms or len(doomed) >= limit:
            break
        live_db = wal_dbs[b"outbound"] if kind == KIND_MADE else wal_dbs[b"inbound"]
        if txn.get(bid.encode(), db=live_db) is not None:
            continue
        doomed.append(key)
    for key in doomed:
        _, kind, bid = split_time_key(key)
        txn.delete(key, db=dbs[TIME_DB])
        if kind == KIND_MADE:
            entry = _made(txn, dbs, "", bid)
            if entry is not None and entry.request_id and entry.delivered_to:
                txn.delete(request_key(entry.delivered_to, entry.request_id), db=dbs[REQ_DB])
            txn.delete(bid.encode(), db=dbs[MADE_DB])
            txn.delete(bid.encode(), db=dbs[SENT_DB])
        else:
            txn.delete(bid.encode(), db=dbs[USED_DB])
        pruned += 1
    return pruned


def settled_state(txn: lmdb.Transaction, dbs: Dbs, state: DurableState,
                  malformed: list[str] | None = None) -> None:
    """Add the compacted records the index still holds to ``state`` (live ones win).
    ``malformed``: a damaged index record is named there and skipped (else it raises)."""
    node_id = state.node_id

    def damaged(db: str, bid: str, exc: Exception) -> None:
        if malformed is None:
            raise exc
        malformed.append(f"{db} record {clip(bid)}: {clip(str(exc), 120)}")

    for key, _ in txn.cursor(db=dbs[MADE_DB]):
        bid = key.decode(errors="replace")
        if bid in state.outbound:
            continue
        try:
            e = read_view(txn, dbs, node_id, bid).made
            if e is None or e.state not in ("DELIVERED", "RECLAIMED"):
                continue
            batch = Batch(bid, e.item, e.qty, node_id, e.seq, e.input_ids)
            state.outbound[bid] = OutboundRecord(batch, OutState(e.state), e.to,
                                                 e.request_id, e.reclaimed_from)
        except (LineageIndexError, ValueError) as exc:
            damaged("lin_made", bid, exc)
    for key, _ in txn.cursor(db=dbs[USED_DB]):
        bid = key.decode(errors="replace")
        if bid not in state.inbound:
            try:
                rec = settled_record(txn, dbs, node_id, bid)
            except (*DAMAGE, LineageIndexError) as exc:
                damaged("lin_used", bid, exc)
                continue
            if rec is not None:
                state.inbound[bid] = rec
    for key, value in txn.cursor(db=dbs[REQ_DB]):
        state.requests.setdefault(split_request_key(key), value.decode(errors="replace"))


class WalSettled:
    """The node's SettledLookup over the index (read transactions; safe on any thread).
    Ids above the compaction's high-water ``marks`` are answered without a transaction."""

    def __init__(self, env: lmdb.Environment, wal_dbs: Dbs, dbs: Dbs, node_id: str,
                 marks: SettledMarks) -> None:
        self._env, self._wal_dbs, self._dbs, self._node_id = env, wal_dbs, dbs, node_id
        self.marks = marks

    def settled_inbound(self, batch_id: str) -> str | None:
        # the node asks only about ids it does not hold, i.e. not live
        if not self.marks.may_hold_inbound(batch_id):
            return None
        with self._env.begin() as txn:
            rec = settled_record(txn, self._dbs, self._node_id, batch_id)
        return rec.supplier if rec else None

    def settled_request(self, consumer: str, request_id: str) -> Batch | None:
        if not self.marks.may_hold_request(request_id):
            return None
        with self._env.begin() as txn:
            bid = txn.get(request_key(consumer, request_id), db=self._dbs[REQ_DB])
            if bid is None:
                return None
            e = _made(txn, self._dbs, self._node_id, bid.decode())
        if e is None:
            return None
        return Batch(e.batch_id, e.item, e.qty, self._node_id, e.seq, e.input_ids)
