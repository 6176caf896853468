"""Read-only access to the genealogy index of agents (fos_raft.lineage.index).

``IndexReader`` reads through any LMDB transaction factory: the agent uses it on its own
open WAL environment (the ``Lineage`` RPC); ``open_offline`` opens a stopped (or running)
agent's data dir read-only for ``fosctl trace --data-dirs`` and ``fos-agent
export-lineage``. Nothing here writes. The WAL keeps the owner's node id in its ``meta``
sub-database (fos_agent.storage.wal); that is the only WAL detail read here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import lmdb

from fos_raft.lineage.index import (
    INDEX_DBS,
    KIND_MADE,
    MADE_DB,
    SENT_DB,
    TIME_DB,
    USED_DB,
    MadeEntry,
    UsedEntry,
    clip,
    decode_made,
    decode_sent,
    decode_used,
    split_time_key,
)

_META_DB = b"meta"
OUTBOUND_DB = b"outbound"  # the WAL's live outbound records
_MAX_DBS = 12


class LineageIndexError(Exception):
    """Not an agent data dir / WAL with a genealogy index, or a record in it that does not
    decode (one line for the CLI)."""


DAMAGE = (ValueError, TypeError, KeyError, UnicodeDecodeError)  # what a damaged record raises


@dataclass(frozen=True, slots=True)
class BatchView:
    """What one node knows of one batch: made there, consumed there, or both."""

    made: MadeEntry | None = None
    used: UsedEntry | None = None


class IndexReader:
    def __init__(self, env: lmdb.Environment, dbs: dict[bytes, object], node_id: str) -> None:
        self.env = env
        self.dbs = dbs
        self.node_id = node_id

    def lookup(self, batch_ids: list[str]) -> dict[str, BatchView]:
        """Every id this node knows, in one read transaction."""
        found: dict[str, BatchView] = {}
        with self.env.begin() as txn:
            for bid in batch_ids:
                view = read_view(txn, self.dbs, self.node_id, bid)
                if view.made is not None or view.used is not None:
                    found[bid] = view
        return found

    def entries(self, since_ms: int = 0) -> Iterator[MadeEntry | UsedEntry]:
        """Every entry stamped at or after ``since_ms``, oldest first."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.dbs[TIME_DB])
            if not cursor.set_range(since_ms.to_bytes(8, "big")):
                return
            for key, _ in cursor:
                _, kind, bid = split_time_key(key)
                view = read_view(txn, self.dbs, self.node_id, bid)
                entry = view.made if kind == KIND_MADE else view.used
                if entry is not None:
                    yield entry


def read_view(txn: lmdb.Transaction, dbs: dict[bytes, object], node_id: str,
              batch_id: str) -> BatchView:
    """What the index says of ``batch_id``; LineageIndexError if a record of it is damaged
    or the id cannot be a key (longer than LMDB's 511 bytes)."""
    if len(batch_id.encode()) > 511:
        raise LineageIndexError(f"{node_id}: {clip(batch_id)} is not a batch id")
    try:
        return _read_view(txn, dbs, node_id, batch_id)
    except DAMAGE as exc:
        raise LineageIndexError(f"{node_id}: the index record of {clip(batch_id)} is "
                                f"damaged ({type(exc).__name__}: {clip(str(exc), 80)})"
                                ) from None


def _read_view(txn: lmdb.Transaction, dbs: dict[bytes, object], node_id: str,
               batch_id: str) -> BatchView:
    data = txn.get(batch_id.encode(), db=dbs[MADE_DB])
    used = txn.get(batch_id.encode(), db=dbs[USED_DB])
    made = decode_made(batch_id, node_id, data) if data is not None else None
    if made is not None and made.state == "QUEUED":
        sent = txn.get(batch_id.encode(), db=dbs[SENT_DB])
        if sent is not None:  # settled (compacted), or written by an older agent
            to, request_id, delivered = decode_sent(sent)
            made = replace(made, state="DELIVERED" if delivered else "IN_TRANSIT", to=to,
                           request_id=request_id, delivered_to=to if delivered else "")
        elif OUTBOUND_DB in dbs:  # live: the WAL's record says where it went
            made = _join_live(made, txn.get(batch_id.encode(), db=dbs[OUTBOUND_DB]))
    if made is not None and made.state == "IN_TRANSIT" and OUTBOUND_DB in dbs:
        # an older agent's lin_sent key; the confirmation is in the live record
        made = _join_live(made, txn.get(batch_id.encode(), db=dbs[OUTBOUND_DB]))
    return BatchView(made, decode_used(batch_id, node_id, used) if used is not None else None)


def _join_live(made: MadeEntry, live: bytes | None) -> MadeEntry:
    """The live outbound record's say (JSON with "state", "to" and "request_id" fields,
    fos_agent.protocol.records) on a batch the index knows as made: the trade path writes
    nothing to the index when a batch is sent or confirmed, compaction folds it in."""
    if live is None:
        return made
    record = json.loads(live)
    if not isinstance(record, dict):
        raise ValueError("the live outbound record is not an object")
    state = record.get("state")
    if state not in ("IN_TRANSIT", "DELIVERED"):
        return made
    to = record.get("to", "")
    return replace(made, state=state, to=to, request_id=record.get("request_id", ""),
                   delivered_to=to if state == "DELIVERED" else "")


def find_wal(path: str | os.PathLike[str]) -> Path:
    """An agent data dir (holding ``wal/``) or the WAL dir itself."""
    path = Path(path)
    if (path / "wal" / "data.mdb").exists():
        return path / "wal"
    if (path / "data.mdb").exists():
        return path
    raise LineageIndexError(f"{path} is not an agent data dir (no wal/data.mdb)")


def agent_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """One agent data dir, or a folder of them (``fos-sim --keep DIR`` leaves DIR/agents/)."""
    path = Path(path)
    if not path.is_dir():
        raise LineageIndexError(f"{path} is not a directory")
    for candidate in (path, path / "agents"):
        try:
            find_wal(candidate)
            return [candidate]
        except LineageIndexError:
            pass
    for folder in (path / "agents", path):
        if folder.is_dir():
            found = [p for p in sorted(folder.iterdir())
                     if p.is_dir() and (p / "wal" / "data.mdb").exists()]
            if found:
                return found
    raise LineageIndexError(f"{path} holds no agent data dir (no */wal/data.mdb)")


def open_offline(data_dir: str | os.PathLike[str]) -> IndexReader:
    """Open one agent's index read-only; the environment stays open for the reader's life
    (close with ``reader.env.close()``)."""
    wal = find_wal(data_dir)
    try:
        env = lmdb.open(str(wal), readonly=True, lock=True, max_dbs=_MAX_DBS, subdir=True,
                        create=False, max_readers=126)
    except lmdb.Error as e:
        raise LineageIndexError(f"{wal}: cannot open read-only: {e}") from e
    try:
        meta = env.open_db(_META_DB, create=False)
        dbs = {name: env.open_db(name, create=False) for name in (*INDEX_DBS, OUTBOUND_DB)}
        with env.begin() as txn:
            node_id = (txn.get(b"node_id", db=meta) or b"").decode()
    except lmdb.Error as e:
        env.close()
        raise LineageIndexError(f"{wal} has no genealogy index (written by an older agent?)") from e
    return IndexReader(env, dbs, node_id)
