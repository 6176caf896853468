"""An agent's WAL checked before it is mapped, and its damage named in one line.

LMDB maps ``data.mdb`` and trusts it: cut short, it is read past its end (SIGBUS, no
message); its meta pages zeroed, it is an ``MDB_INVALID`` traceback. ``check_wal_file``
reads the meta pages and the file size first (fos_raft.runtime.lmdb_file) and raises
`WalError` naming the file. ``damaged`` turns what decoding a damaged record raises into
the same one-line `WalError`. Nothing here writes.

What to do (``REMEDY``): the WAL is the only record of this node's batches in flight, so
restore the data dir from a backup; or, accepting that what it held is lost (the audit,
``fos-audit``, names those batches), move it aside and start with an empty one.
"""

from __future__ import annotations

from pathlib import Path

import lmdb

from fos_raft.runtime.lmdb_file import lmdb_file_problem

REMEDY = ("restore the data dir from a backup, or move it aside and start with an empty "
          "one (its batches in flight are then lost: fos-audit names them)")
# what decoding a damaged record raises (JSON, ints, enums, UTF-8, LMDB's own checks)
DAMAGE = (ValueError, KeyError, TypeError, AttributeError, IndexError)
# what LMDB raises for a damaged file (a full or failing disk raises other lmdb.Errors,
# which are retried: space may come back)
LMDB_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
               lmdb.VersionMismatchError)


def wal_file_problem(data_file: Path) -> str:
    """'' or what is wrong with an existing ``data.mdb``, as "<file> <what>; <remedy>"."""
    problem = lmdb_file_problem(data_file)
    return f"{data_file} {problem}; {REMEDY}" if problem else ""


def damaged(path: Path, exc: BaseException) -> str:
    """One line for a WAL whose records do not decode (or that LMDB finds corrupted)."""
    detail = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{path} is damaged ({type(exc).__name__}: {detail}); {REMEDY}"
