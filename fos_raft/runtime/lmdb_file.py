"""An LMDB file checked before it is mapped: its meta pages and its size.

LMDB maps ``data.mdb`` and trusts it: a file cut short is read past its end through the
map, which is a SIGBUS (exit 135, nothing on stderr), and zeroed meta pages are an
``MDB_INVALID`` traceback. Both are detected here, from the file's first two pages, before
any environment is opened, so the caller can refuse to start in one line.

Layout (LMDB 0.9, 64-bit, little-endian): pages 0 and 1 are meta pages; each is a 16-byte
page header then ``MDB_meta``: magic ``0xBEEFC0DE`` (u32), version (u32), address, map
size, two ``MDB_db`` records of 48 bytes (the first one's ``md_pad`` u32 is the page size),
``mm_last_pg`` (u64: the last page in use) and ``mm_txnid`` (u64). The newer meta (higher
txnid) is the one LMDB uses; the file must hold its pages ``0..last_pg``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = 0xBEEFC0DE
VERSION = 1
_HEADER = 16
_MAGIC_VERSION = struct.Struct("<II")
_PSIZE_AT = _HEADER + 24  # mm_dbs[0].md_pad
_LAST_TXN = struct.Struct("<QQ")  # mm_last_pg, mm_txnid
_LAST_AT = _HEADER + 24 + 2 * 48
_PAGE_SIZES = (4096, 8192, 16384, 65536, 2048, 1024, 512)


def _meta(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(page size, last page, txnid) of the meta page at ``offset``, None if not one."""
    if len(data) < offset + _LAST_AT + _LAST_TXN.size:
        return None
    magic, version = _MAGIC_VERSION.unpack_from(data, offset + _HEADER)
    if magic != MAGIC or version != VERSION:
        return None
    (psize,) = struct.unpack_from("<I", data, offset + _PSIZE_AT)
    last_pg, txnid = _LAST_TXN.unpack_from(data, offset + _LAST_AT)
    return psize, last_pg, txnid


def lmdb_file_problem(data_file: str | os.PathLike[str]) -> str:
    """What is wrong with an existing LMDB ``data.mdb`` before it may be mapped ("" if
    nothing): empty, meta pages not LMDB's, or shorter than its meta says."""
    path = Path(data_file)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    with path.open("rb") as f:
        head = f.read(2 * max(_PAGE_SIZES))
    first = _meta(head, 0)
    psizes = [first[0]] if first is not None else list(_PAGE_SIZES)
    second = next((m for p in psizes if (m := _meta(head, p)) is not None), None)
    if first is None or second is None:
        which = "both meta pages" if first is None and second is None else (
            "meta page 0" if first is None else "meta page 1")
        return f"is not an LMDB file or is damaged: {which} invalid"
    psize, last_pg, _ = max(first, second, key=lambda m: m[2])
    if psize not in _PAGE_SIZES:
        return f"is damaged: page size {psize} in its meta page"
    needed = (last_pg + 1) * psize
    if size < needed:
        return f"is truncated: {size} bytes, its meta page needs {needed}"
    return ""
