"""A durable Raft journal for pysyncobj, in LMDB, synced before anything is acknowledged.

pysyncobj's own ``FileJournal`` writes log entries into an mmap that is never fsynced, so an
acknowledged entry can vanish on power loss. `LmdbJournal` implements pysyncobj's ``Journal``
interface on an LMDB environment opened without per-commit sync; instead it fsyncs
(``env.sync(True)``, one fdatasync) at the only moments Raft needs durability:

* before any message leaves this replica: the transport queues every outgoing message (an
  append ack, a vote, the leader's own append_entries) and releases the queue only after one
  `flush` (fos_raft.replica.transport: group commit), so nothing is acknowledged before it
  is on disk, and one fsync covers every entry appended since the last one;
* at the end of every tick (the leader counts its own log towards the commit quorum in the
  next tick, so its entries are synced before they count);
* immediately in `setCurrentTerm` (term and vote before any vote is cast or requested).

The commit index is stored without a sync of its own: it is a lower bound that Raft can
recompute, and it rides along with the next sync (or the one-second timer).

Before log compaction drops entries (`deleteEntriesTo`) or a received snapshot replaces the
log (`clear`), the snapshot file and its directory are fsynced, so the entries are never
gone from both places at once.

A crash between the two halves of a compaction (pysyncobj writes the snapshot at the end of one
tick and drops the entries it covers in the next) leaves a journal that starts *before* the
snapshot. pysyncobj's loader then discards the whole journal, including committed (and
acknowledged) entries after the snapshot; when the journal is opened with its dump file, the
interrupted compaction is finished instead (`_finish_interrupted_compaction`), so the tail
survives.

Wiring: `install()` lets pysyncobj's ``createJournal`` pass through a journal *object* given
as ``SyncObjConf.journalFile`` (any other value goes to the original factory unchanged).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import lmdb
import pysyncobj.syncobj as _syncobj_module
from pysyncobj.journal import Journal

from fos_raft.replica import storage_check, wire

_IDX = struct.Struct(">Q")
_TERM = struct.Struct(">Q")
_KEY_TERM = b"current_term"
_KEY_VOTE = b"voted_for"
_KEY_COMMIT = b"commit_index"
DEFAULT_MAP_SIZE = 1 << 30  # sparse; the log is compacted long before this

Entry = tuple[bytes, int, int]  # (command, raft index, term), as pysyncobj stores them


class JournalWriteError(OSError):
    """The journal could not be written or synced (a full or failing disk). Raised on the
    tick thread before anything about the entry is sent: the replica fail-stops
    (fos_raft.replica.failstop) instead of acknowledging what is not durable."""


class LmdbJournal(Journal):
    """pysyncobj ``Journal`` backed by LMDB at ``path`` (a directory).

    Counters (read by metrics and tests): ``entries_added``, ``fsyncs``, ``unsynced_sends``
    (messages sent while log writes were not yet synced: must stay 0).
    """

    def __init__(
        self, path: str, dump_file: str | None = None, map_size: int = DEFAULT_MAP_SIZE
    ) -> None:
        os.makedirs(path, exist_ok=True)
        self._path = path
        self._dump_file = dump_file
        self._env = lmdb.open(path, map_size=map_size, max_dbs=2, sync=False, metasync=False)
        self._log_db = self._env.open_db(b"log")
        self._meta_db = self._env.open_db(b"meta")
        self._lock = threading.Lock()  # tick thread writes; metrics/tests read counters
        self._entries: list[Entry] = []
        self._pending_log_writes = 0  # log/term/vote writes not yet fsynced
        self._pending_any = False  # includes the commit index (synced lazily)
        self._closed = False
        self.entries_added = 0
        self.fsyncs = 0
        # seconds per log fsync, for the metrics (tick thread; None: not measured)
        self.fsync_observer: Callable[[float], None] | None = None
        self.unsynced_sends = 0
        with self._env.begin(db=self._log_db) as txn:
            for key, value in txn.cursor():
                (idx,) = _IDX.unpack(key)
                (term,) = _TERM.unpack(value[: _TERM.size])
                self._entries.append((bytes(value[_TERM.size :]), idx, term))
        with self._env.begin(db=self._meta_db) as txn:
            term_raw = txn.get(_KEY_TERM)
            vote_raw = txn.get(_KEY_VOTE)
            commit_raw = txn.get(_KEY_COMMIT)
        self._current_term = _IDX.unpack(term_raw)[0] if term_raw else 0
        self._voted_for = vote_raw.decode() if vote_raw else None
        self._commit_index = _IDX.unpack(commit_raw)[0] if commit_raw else 1
        self.finished_compaction = self._finish_interrupted_compaction()

    def _finish_interrupted_compaction(self) -> int:
        """If the snapshot's last two entries sit inside the journal but not at its start, a
        crash fell between writing the snapshot and compacting: drop the entries the snapshot
        covers, as the compaction would have. pysyncobj keeps a journal only when it starts
        with exactly those two entries and otherwise clears it, tail and all (0.3.17,
        ``SyncObj.__loadDumpFile``). Returns the number of entries dropped."""
        if not self._dump_file or len(self._entries) < 3 or not os.path.exists(self._dump_file):
            return 0
        try:
            with gzip.open(self._dump_file) as f:
                _, last_entry, before_last, _ = wire.restricted_load(f)
        except Exception:
            return 0  # unreadable here: pysyncobj reports it when it loads the dump
        first = self._entries[0][1]
        pos = before_last[1] - first
        if pos <= 0 or pos + 1 >= len(self._entries):
            return 0
        if self._entries[pos] != tuple(before_last) or self._entries[pos + 1] != tuple(last_entry):
            return 0
        self.deleteEntriesTo(pos)
        self.flush()
        return pos

    @contextlib.contextmanager
    def _write_txn(self, db: Any = None) -> Iterator[Any]:
        try:
            with self._env.begin(write=True, db=db) as txn:
                yield txn
        except lmdb.Error as exc:
            raise JournalWriteError(
                f"cannot write the Raft journal in {self._path} ({exc}): disk full or failing; "
                "nothing unwritten is acknowledged"
            ) from exc

    # --------------------------------------------------------------------- log entries

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        with self._write_txn(self._log_db) as txn:
            txn.put(_IDX.pack(idx), _TERM.pack(term) + command)
        self._entries.append((command, idx, term))
        self._mark_log_write()
        self.entries_added += 1

    def clear(self) -> None:
        self._sync_dump_file()
        with self._write_txn() as txn:
            txn.drop(self._log_db, delete=False)
        self._entries = []
        self._mark_log_write()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        doomed = self._entries[entryFrom:]
        if not doomed:
            return
        with self._write_txn(self._log_db) as txn:
            for _, idx, _ in doomed:
                txn.delete(_IDX.pack(idx))
        del self._entries[entryFrom:]
        self._mark_log_write()

    def deleteEntriesTo(self, entryTo: int) -> None:
        doomed = self._entries[:entryTo]
        if not doomed:
            return
        # Compaction: the snapshot that replaces these entries must be durable first.
        self._sync_dump_file()
        with self._write_txn(self._log_db) as txn:
            for _, idx, _ in doomed:
                txn.delete(_IDX.pack(idx))
        self._entries = self._entries[entryTo:]
        self._mark_log_write()

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------- term, vote, commit

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        with self._write_txn(self._meta_db) as txn:
            txn.put(_KEY_TERM, _IDX.pack(term))
            vote = None if votedForNodeId is None else str(votedForNodeId).encode()
            if vote is None:
                txn.delete(_KEY_VOTE)
            else:
                txn.put(_KEY_VOTE, vote)
            txn.put(storage_check.KEY_TERM_VOTE_SUM, storage_check.term_vote_sum(
                _IDX.pack(term), vote))  # checked at start (fos_raft.replica.storage_check)
        self._current_term = term
        self._voted_for = None if votedForNodeId is None else str(votedForNodeId)
        self._mark_log_write()
        self.flush()

    def getCurrentTerm(self) -> int:
        return self._current_term

    def getVotedForNodeId(self) -> str | None:
        return self._voted_for

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if raftCommitIndex == self._commit_index:
            return  # followers call this on every heartbeat
        with self._write_txn(self._meta_db) as txn:
            txn.put(_KEY_COMMIT, _IDX.pack(raftCommitIndex))
        self._commit_index = raftCommitIndex
        self._pending_any = True

    def getRaftCommitIndex(self) -> int:
        return self._commit_index

    # -------------------------------------------------------------------- durability

    def _mark_log_write(self) -> None:
        with self._lock:
            self._pending_log_writes += 1
            self._pending_any = True

    def flush(self, include_lazy: bool = False) -> None:
        """fsync if log, term or vote writes are pending (or anything, with include_lazy)."""
        if self._closed:
            return
        with self._lock:
            if not self._pending_log_writes and not (include_lazy and self._pending_any):
                return
            self._pending_log_writes = 0
            self._pending_any = False
        started = time.perf_counter()
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise JournalWriteError(
                f"cannot sync the Raft journal in {self._path} ({exc}): disk full or failing; "
                "nothing unsynced is acknowledged"
            ) from exc
        self.fsyncs += 1
        if self.fsync_observer is not None:
            self.fsync_observer(time.perf_counter() - started)

    def before_send(self) -> None:
        """Make the log durable before a message leaves (the transport calls `flush` once
        per release; this is the same for a single message)."""
        self.flush()
        if self._pending_log_writes:  # only the tick thread writes, so this stays 0
            self.unsynced_sends += 1

    def has_unsynced(self) -> bool:
        """Log, term or vote writes not yet fsynced."""
        return self._pending_log_writes > 0

    def _sync_dump_file(self) -> None:
        if not self._dump_file or not os.path.exists(self._dump_file):
            return
        fd = os.open(self._dump_file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(os.path.dirname(os.path.abspath(self._dump_file)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def onOneSecondTimer(self) -> None:
        self.flush(include_lazy=True)

    def _destroy(self) -> None:
        if self._closed:
            return
        self.flush(include_lazy=True)
        self._closed = True
        self._env.close()

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "entries_added": self.entries_added,
            "fsyncs": self.fsyncs,
            "unsynced_sends": self.unsynced_sends,
            "current_term": self._current_term,
            "commit_index": self._commit_index,
        }


def read_journal(path: str) -> tuple[list[Entry], int, str | None]:
    """Open a journal directory read-only: (entries, current term, voted for). For tests and
    forensics on a stopped replica's data dir."""
    journal = LmdbJournal(path)
    try:
        return list(journal._entries), journal.getCurrentTerm(), journal.getVotedForNodeId()
    finally:
        journal._closed = True
        journal._env.close()


_original_create_journal = _syncobj_module.createJournal


def _create_journal(journalFile: Any = None) -> Journal:
    if isinstance(journalFile, Journal):
        return journalFile
    return _original_create_journal(journalFile)


def install() -> None:
    """Let ``SyncObjConf(journalFile=<Journal object>)`` use that object (idempotent)."""
    _syncobj_module.createJournal = _create_journal
