"""Backups of the replicated state: a checksummed file (`snapshot_codec`), and back. Pure.

Decoding rebuilds the state and recomputes its digest: a file changed by a single byte is
refused. A restore goes through Raft as a `SeedState` command, so every replica of the new
cluster takes the same state (`apply` checks the checksum again).
"""

from __future__ import annotations

from typing import Any

from fos_raft.state.core import CoordinatorState
from fos_raft.state.snapshot_codec import FORMAT, SnapshotError, checksum_error, document, parse

__all__ = ["FORMAT", "SnapshotError", "decode", "encode"]


def encode(state: CoordinatorState, meta: dict[str, Any] | None = None) -> bytes:
    """The backup file's bytes. ``meta``: plain data for the reader (source, time, ...)."""
    return document(state.canonical(), state.digest, meta)


def decode(blob: bytes) -> tuple[CoordinatorState, dict[str, Any]]:
    """(state, meta) from a backup file's bytes; SnapshotError when it is not one or its
    checksum does not match."""
    fields, digest, meta = parse(blob)
    state = CoordinatorState(**fields)
    if state.digest != digest:
        raise checksum_error(digest, state.digest)
    return state, meta
