"""A replica's files checked before Raft starts: refused in one line, never a traceback,
a SIGBUS, or a silent start with the vote lost.

Raft's safety rests on the journal's term and vote: a replica that forgot whom it voted for
can vote twice in one term. So a data dir that held Raft state and lost it (the journal
truncated to nothing, deleted while the snapshot is there, its term record missing while
it has a log) is refused as firmly as a damaged one. What is checked, in order:

- ``raft.lmdb/data.mdb``: LMDB's meta pages and the file's size against them, before it is
  mapped (fos_raft.runtime.lmdb_file);
- the journal read whole, read-only: every log entry and the term, vote and commit records
  decode; the term/vote record matches its checksum (``term_vote_sum``, written with it;
  a journal from before the checksum has none and is accepted);
- a journal with a log or a snapshot beside it must have a term record;
- ``raft.dump``: gzip's CRC of the whole file, then the restricted unpickler
  (fos_raft.replica.wire), as pysyncobj will load it.

Each refusal is a `StorageFault` whose message names the file and says what to do: restore
this replica from its peers (docs/operations.md, "Replacing a replica").
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import lmdb

from fos_raft.replica import wire
from fos_raft.runtime.lmdb_file import lmdb_file_problem

JOURNAL_DIR = "raft.lmdb"
DUMP_FILE = "raft.dump"
KEY_TERM = b"current_term"
KEY_VOTE = b"voted_for"
KEY_COMMIT = b"commit_index"
KEY_TERM_VOTE_SUM = b"term_vote_sum"
_U64 = struct.Struct(">Q")
REMEDY = ("move this data dir aside and replace the replica from its peers "
          "(docs/operations.md, \"Replacing a replica\")")


class StorageFault(Exception):
    """A replica's file is damaged or lost; the message is one line naming it."""


def term_vote_sum(term_raw: bytes, vote_raw: bytes | None) -> bytes:
    """The checksum stored beside the term and vote (CRC-32 of both, big-endian)."""
    crc = zlib.crc32(term_raw + b"\x00" + (vote_raw if vote_raw is not None else b"\xff"))
    return crc.to_bytes(4, "big")


def _fault(path: Path, what: str) -> StorageFault:
    return StorageFault(f"{path} {what}; {REMEDY}")


def check_replica_storage(data_dir: str | Path) -> None:
    """Raise StorageFault if this replica's journal or snapshot is damaged or lost. A data
    dir with neither (a new replica) passes."""
    data_dir = Path(data_dir)
    journal = data_dir / JOURNAL_DIR
    data_file = journal / "data.mdb"
    dump = data_dir / DUMP_FILE
    has_dump = dump.exists()
    if not data_file.exists():
        if has_dump:
            raise _fault(data_file, "is missing while the snapshot raft.dump is there: the "
                                    "term and vote are lost")
        return
    problem = lmdb_file_problem(data_file)
    if problem:
        raise _fault(data_file, problem)
    _check_journal(journal, data_file, has_dump)
    if has_dump:
        _check_dump(dump)


def _check_journal(journal: Path, data_file: Path, has_dump: bool) -> None:
    try:
        env = lmdb.open(str(journal), readonly=True, lock=False, max_dbs=2, create=False)
    except lmdb.Error as exc:
        raise _fault(data_file, f"cannot be opened ({type(exc).__name__}: {exc})") from None
    try:
        with env.begin() as txn:
            log_db = env.open_db(b"log", txn=txn, create=False)
            meta_db = env.open_db(b"meta", txn=txn, create=False)
            entries = 0
            for key, value in txn.cursor(db=log_db):
                _check_entry(bytes(key), bytes(value))
                entries += 1  # noqa: SIM113 (a cursor, counted as it goes)
            term_raw = txn.get(KEY_TERM, db=meta_db)
            vote_raw = txn.get(KEY_VOTE, db=meta_db)
            commit_raw = txn.get(KEY_COMMIT, db=meta_db)
            sum_raw = txn.get(KEY_TERM_VOTE_SUM, db=meta_db)
    except lmdb.NotFoundError:
        entries, term_raw, vote_raw, commit_raw, sum_raw = 0, None, None, None, None
    except (lmdb.Error, ValueError) as exc:
        raise _fault(data_file, f"is damaged ({type(exc).__name__}: {exc})") from None
    finally:
        env.close()
    for name, raw in (("term", term_raw), ("commit index", commit_raw)):
        if raw is not None and len(raw) != _U64.size:
            raise _fault(data_file, f"is damaged: its {name} record is {len(raw)} bytes")
    if vote_raw is not None:
        try:
            vote_raw.decode()
        except UnicodeDecodeError:
            raise _fault(data_file, "is damaged: its vote record is not text") from None
    if sum_raw is not None and sum_raw != term_vote_sum(term_raw or b"", vote_raw):
        raise _fault(data_file, "is damaged: the term/vote record does not match its checksum")
    if term_raw is None and (entries or has_dump):
        raise _fault(data_file, "has a log but no term/vote record: the vote is lost")


_PICKLED = (0, 2, 3)  # pysyncobj's REGULAR, MEMBERSHIP, VERSION commands (NO_OP is bare)


def _check_entry(key: bytes, value: bytes) -> None:
    """One log entry: an 8-byte index key, an 8-byte term, pysyncobj's command (a type byte,
    then a pickle for every type it unpickles), as it will be read when applied."""
    if len(key) != _U64.size or len(value) < _U64.size + 1:
        raise ValueError(f"log entry {key[:16]!r} is damaged")
    command = value[_U64.size:]
    if command[0] in _PICKLED:
        try:
            wire.restricted_loads(command[1:])
        except Exception as exc:  # what unpickling junk raises is open-ended
            raise ValueError(f"log entry {_U64.unpack(key)[0]} does not decode "
                             f"({type(exc).__name__})") from None
    elif command[0] != 1:
        raise ValueError(f"log entry {_U64.unpack(key)[0]} has command type {command[0]}")


def _check_dump(dump: Path) -> None:
    try:
        with gzip.open(dump) as f:
            wire.restricted_load(f)
            while f.read(1 << 20):  # to the end: gzip checks its CRC there
                pass
    except Exception as exc:  # gzip, zlib, EOF, unpickling: all one answer
        raise _fault(dump, f"is damaged ({type(exc).__name__}: {str(exc)[:120]})") from None
