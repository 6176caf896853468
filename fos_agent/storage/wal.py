"""The agent's write-ahead log: one LMDB environment per agent, driven by the pure protocol.

Layout (directory ``wal_path(data_dir)``): sub-databases ``outbound`` and ``inbound`` (batch
id -> record, fos_agent.protocol.records encoding), ``requests`` ((consumer, request_id) ->
batch id) and ``meta`` (``schema``, ``node_id``, ``next_seq``, ``incarnation``). Every commit is
synced (LMDB ``sync=True``: fdatasync before ``commit`` returns), so a write is durable
before the protocol's messages about it are sent.

API
    wal = Wal.open(wal_path(data_dir), node_id)  # refuses foreign/bad WALs (WalError);
                                                  # bumps the incarnation counter
    durable = wal.load()                          # DurableState for Node.recover
    wal.commit(effects.writes)                    # synchronous: one synced transaction
    committer = GroupCommitter(wal)               # fos_agent.storage.group_commit: asyncio,
    await committer.commit(effects.writes)        #   many callers, one transaction (FIFO)
    read_wal(path)                                # read-only snapshot (audit, tools)

Every group of writes is checked by fos_agent.protocol.transitions.check_writes against the records
inside the transaction; an illegal group raises InvalidTransition (to its caller only) and
none of its writes is made. Group commit: callers that arrive while a transaction is being
synced are queued and go together into the next transaction, in arrival order; a caller's
future resolves only after its own group and every earlier group are durable (an empty
group therefore works as a barrier: see the ordering rule in fos_agent.protocol.machine).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lmdb

from fos_agent.protocol.records import (
    SCHEMA_VERSION,
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    PutRequest,
    SetNextSeq,
    Write,
    decode_inbound,
    decode_outbound,
    encode_inbound,
    encode_outbound,
    request_key,
    split_request_key,
)
from fos_agent.protocol.transitions import check_writes
from fos_agent.storage.lineage_store import (
    WalSettled,
    compact_records_txn,
    compact_txn,
    open_index_dbs,
    prune_txn,
    settled_record,
    settled_state,
    write_index,
)
from fos_agent.storage.settled_marks import SettledMarks
from fos_agent.storage.wal_check import wal_file_problem
from fos_raft.lineage.index import DAY_MS, REQ_DB, USED_DB
from fos_raft.lineage.reader import IndexReader
from fos_raft.model import FosError

DEFAULT_MAP_SIZE = 256 << 20  # sparse on Linux; doubled on demand
MAX_MAP_SIZE = 1 << 40
LOCK_FILE = "agent.lock"
_LMDB_FILES = {"data.mdb", "lock.mdb"}
_LMDB_MAGIC = bytes.fromhex("dec0efbe")  # MDB_MAGIC, little-endian, at offset 16
_DBS = (b"outbound", b"inbound", b"requests", b"meta")
PRUNE_EVERY_MS = 60_000  # retention is counted in days: pruning once a minute is plenty
_FINAL_OUT = (OutState.DELIVERED, OutState.RECLAIMED)  # fos_agent.protocol.compaction


class WalError(FosError):
    """The WAL cannot be used (foreign, wrong schema, another node's, in use); nothing was
    changed on disk."""


class CommitFailed(FosError):
    """A group was not made durable because an earlier one failed (the in-memory protocol
    state is ahead of the WAL: recover the Node from ``Wal.load()``)."""


def wal_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where an agent with this data dir keeps its WAL."""
    return Path(data_dir) / "wal"


@dataclass(slots=True)
class WalStats:
    commits: int = 0  # synced LMDB transactions
    groups: int = 0  # caller groups made durable
    writes: int = 0  # records written
    rejected: int = 0  # groups refused by check_writes
    resizes: int = 0


def _check_dir(path: Path) -> bool:
    """Return True if an LMDB data file exists; raise WalError for anything foreign."""
    if path.exists() and not path.is_dir():
        raise WalError(f"{path} is not a directory, so it is not a factoryOS WAL; refusing "
                       "to start")
    if not path.exists():
        return False
    names = set(os.listdir(path))
    others = names - _LMDB_FILES - {LOCK_FILE}
    if others:
        raise WalError(f"{path} holds files that are not a factoryOS WAL "
                       f"({', '.join(sorted(others)[:5])}); refusing to start")
    data = path / "data.mdb"
    if not data.exists():
        return False
    with data.open("rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[16:20] != _LMDB_MAGIC:
        if data.stat().st_size == 0 or not any(head):  # emptied or zeroed: a WAL lost
            raise WalError(wal_file_problem(data))
        raise WalError(f"{data} is not an LMDB file; refusing to start (nothing was changed)")
    problem = wal_file_problem(data)  # before mapping it: a truncated file is a SIGBUS
    if problem:
        raise WalError(problem)
    return True


def _open_env(path: Path, *, readonly: bool, map_size: int) -> lmdb.Environment:
    try:
        return lmdb.open(str(path), map_size=map_size, subdir=True, max_dbs=12,
                         readonly=readonly, sync=True, metasync=True, create=not readonly,
                         max_readers=126)
    except lmdb.Error as e:
        raise WalError(f"{path}: cannot open as an LMDB environment: {e}") from e


def _open_dbs(env: lmdb.Environment, path: Path, node_id: str | None,
              create: bool) -> dict[bytes, object]:
    """Open the sub-databases, initialising a brand-new environment when ``create``."""
    with env.begin() as txn:
        fresh = txn.cursor().first() is False
    if fresh and create:
        with env.begin(write=True) as txn:
            dbs = {name: env.open_db(name, txn=txn) for name in _DBS}
            meta = dbs[b"meta"]
            txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=meta)
            txn.put(b"node_id", (node_id or "").encode(), db=meta)
            txn.put(b"next_seq", b"1", db=meta)
            txn.put(b"incarnation", b"0", db=meta)
        return dbs
    try:
        # no txn argument: LMDB drops handles opened in a transaction that aborts
        dbs = {name: env.open_db(name, create=False) for name in _DBS}
    except lmdb.Error as e:
        raise WalError(f"{path} is an LMDB environment but not a factoryOS WAL "
                       f"(missing sub-databases: {e}); refusing to start") from e
    with env.begin() as txn:
        schema = txn.get(b"schema", db=dbs[b"meta"])
        owner = txn.get(b"node_id", db=dbs[b"meta"])
    if schema != str(SCHEMA_VERSION).encode():
        raise WalError(f"{path} has WAL schema version "
                       f"{schema.decode() if schema else 'none'}; this agent reads version "
                       f"{SCHEMA_VERSION}; refusing to start (nothing was changed)")
    if node_id is not None and owner != node_id.encode():
        raise WalError(f"{path} belongs to node {owner.decode() if owner else '?'!r}, not "
                       f"{node_id!r}; refusing to start (nothing was changed)")
    return dbs


def _load(env: lmdb.Environment, dbs: dict[bytes, object],
          index: dict[bytes, object] | None = None,
          malformed: list[str] | None = None) -> DurableState:
    """The live records; with ``index``, also the compacted ones rebuilt from it (audit).
    ``malformed``: a record that does not decode is skipped and named there instead of
    raising (the audit reports it as an anomaly)."""
    with env.begin() as txn:
        meta = dbs[b"meta"]
        state = DurableState(
            node_id=txn.get(b"node_id", db=meta).decode(),
            incarnation=int(txn.get(b"incarnation", db=meta)),
            next_seq=int(txn.get(b"next_seq", db=meta)),
        )
        for db, into, decode in ((b"outbound", state.outbound, decode_outbound),
                                 (b"inbound", state.inbound, decode_inbound)):
            for key, value in txn.cursor(db=dbs[db]):
                bid = key.decode(errors="replace")
                if malformed is None:
                    into[bid] = decode(value)  # type: ignore[operator]
                    continue
                try:
                    into[bid] = decode(value)  # type: ignore[operator]
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    malformed.append(f"{db.decode()} record {bid!r}: {type(exc).__name__}: "
                                     f"{exc}")
        for key, value in txn.cursor(db=dbs[b"requests"]):
            state.requests[split_request_key(key)] = value.decode()
        if index is not None:
            settled_state(txn, index, state, malformed)
    return state


_OPEN_HERE: dict[Path, Wal] = {}  # LMDB allows one environment handle per file per process


def read_wal(path: str | os.PathLike[str], *, settled: bool = False,
             malformed: list[str] | None = None) -> DurableState:
    """Read-only snapshot of a WAL (stopped or live agent); changes nothing on disk.
    ``settled``: include the records compaction moved out, rebuilt from the index.
    ``malformed``: collect undecodable records there instead of raising (see _load)."""
    path = Path(path)
    owner = _OPEN_HERE.get(path.resolve())
    if owner is not None:  # the owner is in this process: read through its environment
        return owner.load(settled=settled)
    if not _check_dir(path):
        raise WalError(f"{path} has no WAL")
    env = _open_env(path, readonly=True, map_size=DEFAULT_MAP_SIZE)
    try:
        dbs = _open_dbs(env, path, None, create=False)
        return _load(env, dbs, open_index_dbs(env, readonly=True) if settled else None,
                     malformed)
    finally:
        env.close()


class Wal:
    """An open, exclusively owned WAL. Writes run on one dedicated thread (``executor``)."""

    def __init__(self, path: Path, env: lmdb.Environment, dbs: dict[bytes, object],
                 node_id: str, lock_fd: int, lineage: bool = True) -> None:
        self.path = path
        self.node_id = node_id
        self.stats = WalStats()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wal-{node_id}")
        self._env = env
        self._dbs = dbs
        self._lock_fd = lock_fd
        self.incarnation = 0
        # lineage=False: no genealogy index and no compaction (the design before issue 10,
        # kept for comparisons: bench/bench_lineage.py)
        self.lineage_on = lineage
        self._index = open_index_dbs(env, readonly=False) or {}
        with env.begin() as txn:
            index_empty = all(txn.stat(self._index[db])["entries"] == 0
                              for db in (USED_DB, REQ_DB))
            self._marks = SettledMarks.load(txn, dbs[b"meta"], index_empty)
        self.settled = WalSettled(env, dbs, self._index, node_id,
                                  self._marks)  # the Node's SettledLookup
        self.lineage = IndexReader(env, {**self._index, b"outbound": dbs[b"outbound"]},
                                   node_id)  # the Lineage RPC reads this
        # records this WAL's own commits made durable in a settled (final) state, for
        # compact_recent; touched on the writer thread only
        self._settled_out: dict[bytes, OutboundRecord] = {}
        self._settled_in: dict[bytes, InboundRecord] = {}
        self._pruned_at_ms = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], node_id: str, *,
             map_size: int = DEFAULT_MAP_SIZE, lineage: bool = True) -> Wal:
        """Open or create the WAL of ``node_id`` at ``path`` and bump its incarnation."""
        path = Path(path)
        _check_dir(path)
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(lock_fd)
            raise WalError(f"{path} is in use by another agent process; refusing to start") from e
        try:
            env = _open_env(path, readonly=False, map_size=map_size)
            try:
                dbs = _open_dbs(env, path, node_id, create=True)
                wal = cls(path, env, dbs, node_id, lock_fd, lineage)
                wal.incarnation = wal._bump_incarnation()
                _OPEN_HERE[path.resolve()] = wal
            except BaseException:
                env.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        return wal

    def _bump_incarnation(self) -> int:
        with self._env.begin(write=True) as txn:
            meta = self._dbs[b"meta"]
            value = int(txn.get(b"incarnation", db=meta)) + 1
            txn.put(b"incarnation", str(value).encode(), db=meta)
        return value

    def load(self, *, settled: bool = False) -> DurableState:
        """Every live durable record (what Node.recover rebuilds from); ``settled`` adds
        the compacted ones, rebuilt from the genealogy index (for the audit)."""
        return _load(self._env, self._dbs, self._index if settled else None)

    def compact(self, candidates: tuple[list[str], list[str]] | None = None, *,
                retention_days: float | None = None,
                now_ms: int | None = None) -> tuple[list[str], list[str]]:
        """One synced transaction: settled records leave the live state -- all of them, or
        those among ``candidates`` (``Node.settled_ids()``) -- and, with
        ``retention_days``, index entries older than that are pruned. Returns the
        (outbound, inbound) ids compacted; the caller then lets the Node forget them."""
        if not self.lineage_on:  # without the index, settled records are the dedup
            return [], []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._env.begin(write=True) as txn:
            moved = compact_txn(txn, self._dbs, self._index, candidates, self._marks)
            if retention_days is not None:
                prune_txn(txn, self._dbs, self._index, now_ms - int(retention_days * DAY_MS))
        self.stats.commits += 1
        return moved

    def compact_recent(self, *, retention_days: float | None = None,
                       now_ms: int | None = None) -> tuple[list[str], list[str]]:
        """``compact`` of the records this WAL's commits settled since the last call: they
        are handed over from memory, not read back and decoded (a settled state is final,
        so memory and disk agree), which keeps compaction's cost per trade small. Run it on
        the writer thread (``executor``), like the commits. Records settled before this
        WAL was opened are moved by ``compact()`` (the agent runs it at recovery)."""
        if not self.lineage_on:
            return [], []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        prune = retention_days is not None and now_ms - self._pruned_at_ms >= PRUNE_EVERY_MS
        if not (self._settled_out or self._settled_in or prune):
            return [], []  # an idle agent: no transaction at all
        outs, self._settled_out = self._settled_out, {}
        ins, self._settled_in = self._settled_in, {}
        try:
            with self._env.begin(write=True) as txn:
                moved = compact_records_txn(txn, self._dbs, self._index,
                                            list(outs.items()), list(ins.items()), self._marks)
                if prune and retention_days is not None:
                    prune_txn(txn, self._dbs, self._index,
                              now_ms - int(retention_days * DAY_MS))
                    self._pruned_at_ms = now_ms
        except BaseException:  # not compacted: keep them for the next try
            self._settled_out, self._settled_in = outs | self._settled_out, ins | self._settled_in
            raise
        self.stats.commits += 1
        return moved

    def commit(self, writes: Sequence[Write]) -> None:
        """Make one group durable in one synced transaction (raises InvalidTransition)."""
        (error,) = self.commit_groups([writes])
        if error is not None:
            raise error

    def commit_groups(self, groups: Sequence[Sequence[Write]]) -> list[Exception | None]:
        """Make many groups durable in ONE synced transaction, in order. Returns, per group,
        None or why it was not written: the InvalidTransition that refused it, or
        CommitFailed for every group after a refused one (they may depend on it); the groups
        before a refused one are committed."""
        while True:
            try:
                return self._commit_once(groups)
            except lmdb.MapFullError:
                new_size = self._env.info()["map_size"] * 2
                if new_size > MAX_MAP_SIZE:
                    raise
                self._env.set_mapsize(new_size)
                self.stats.resizes += 1

    def _commit_once(self, groups: Sequence[Sequence[Write]]) -> list[Exception | None]:
        results: list[Exception | None] = []
        out_db, in_db = self._dbs[b"outbound"], self._dbs[b"inbound"]
        req_db, meta = self._dbs[b"requests"], self._dbs[b"meta"]
        written = accepted = 0
        now_ms = int(time.time() * 1000)  # made_at / used_at of the genealogy index
        settled_out: dict[bytes, OutboundRecord] = {}
        settled_in: dict[bytes, InboundRecord] = {}
        txn = self._env.begin(write=True)
        try:
            for writes in groups:
                if not writes:
                    results.append(None)
                    continue
                try:
                    check_writes(
                        self.node_id, writes,
                        get_outbound=lambda b: _maybe(decode_outbound,
                                                      txn.get(b.encode(), db=out_db)),
                        get_inbound=lambda b: _maybe(decode_inbound,
                                                     txn.get(b.encode(), db=in_db))
                        or (settled_record(txn, self._index, self.node_id, b)
                            if self._marks.may_hold_inbound(b) else None),
                        get_request=lambda c, r: _maybe(bytes.decode,
                                                        txn.get(request_key(c, r), db=req_db)),
                        next_seq=int(txn.get(b"next_seq", db=meta)),
                    )
                except Exception as e:  # InvalidTransition: refuse it and all after it
                    results.append(e)
                    skipped = CommitFailed(f"not written: an earlier group was refused ({e})")
                    results.extend(skipped for _ in range(len(groups) - len(results)))
                    break
                for w in writes:
                    if isinstance(w, PutOutbound):
                        key = w.record.batch_id.encode()
                        txn.put(key, encode_outbound(w.record), db=out_db)
                        if w.record.state in _FINAL_OUT:
                            settled_out[key] = w.record
                    elif isinstance(w, PutInbound):
                        key = w.record.batch_id.encode()
                        txn.put(key, encode_inbound(w.record), db=in_db)
                        if w.record.state is InState.CONSUMED:
                            settled_in[key] = w.record
                    elif isinstance(w, PutRequest):
                        txn.put(request_key(w.consumer, w.request_id), w.batch_id.encode(),
                                db=req_db)
                    elif isinstance(w, SetNextSeq):
                        txn.put(b"next_seq", str(w.next_seq).encode(), db=meta)
                if self.lineage_on:
                    write_index(txn, self._index, self.node_id, writes, now_ms)
                written += len(writes)
                accepted += 1
                results.append(None)
            if written:
                txn.commit()  # synced: sync=True on the environment
                self.stats.commits += 1
                if self.lineage_on:
                    self._settled_out.update(settled_out)
                    self._settled_in.update(settled_in)
            else:
                txn.abort()
        except BaseException:
            txn.abort()
            raise
        self.stats.groups += accepted
        self.stats.writes += written
        self.stats.rejected += sum(1 for r in results if r is not None)
        return results

    def close(self) -> None:
        if _OPEN_HERE.get(self.path.resolve()) is self:
            del _OPEN_HERE[self.path.resolve()]
        self.executor.shutdown(wait=True)
        self._env.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> Wal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _maybe(decode, data):  # type: ignore[no-untyped-def]
    return None if data is None else decode(data)
