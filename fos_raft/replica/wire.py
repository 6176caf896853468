"""What the Raft port accepts: bounded frames, authenticated before decoding, restricted pickle.

pysyncobj's TCP frames are ``struct 'i'`` length + zlib(pickle(message)), Fernet-encrypted
when a password is set. Its own receiver buffers an unbounded length into immutable bytes
(each read copies the whole buffer) and ``pickle.loads`` whatever arrives, so one frame from
anyone who reaches the port could run code. Here:

* `WireConnection` (a `TcpConnection` whose receive side is replaced) checks the length prefix
  against `MAX_FRAME` before buffering the body, keeps a ``bytearray`` (a junk stream costs
  O(bytes)), verifies the Fernet token (HMAC and timestamp) before zlib or pickle touch the
  bytes, bounds decompression, and decodes with `restricted_loads`.
* `restricted_loads` / `restricted_load` resolve only the globals in `ALLOWED_GLOBALS`: the
  classes pysyncobj's messages, membership entries and snapshots are made of, and the
  factoryOS commands and state that go through the log. `install` makes pysyncobj use them
  for log entries and snapshots too (a snapshot sent by the leader is network input).
* `FrameGuard` counts every dropped frame by reason (`REASONS`) for the metrics and logs a
  WARNING once per peer host and reason.

The policy for the first message of an incoming connection (utility commands, ``readonly``
peers) lives in the transport (fos_raft.replica.transport.DurableTCPTransport).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import pysyncobj.serializer as _serializer_module
import pysyncobj.syncobj as _syncobj_module
import pysyncobj.tcp_connection as _tcp_module
from cryptography.fernet import InvalidToken
from pysyncobj.monotonic import monotonic
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

from fos_raft.runtime.logging import get_logger

log = get_logger("fos_raft.replica.wire")

# The largest frame a replica buffers. pysyncobj sends log entries in batches of
# appendEntriesBatchSizeBytes (64 KiB) and snapshots in chunks of that size, so real frames
# are far smaller; the bound only has to be above the largest single command.
MAX_FRAME = 64 * 1024 * 1024
# Before a connection has said which member it is, it may only send a key, an address or a
# utility command: a few hundred bytes.
HANDSHAKE_MAX_FRAME = 64 * 1024
# Bytes read from one socket per poll event, so one fast sender cannot hold the tick thread.
READ_BUDGET = 1024 * 1024

REASONS = (
    "bad_auth",
    "disallowed_type",
    "oversize",
    "malformed",
    "utility_refused",
    "readonly_refused",
    "unknown_peer",
)

_LEN = struct.Struct("i")

# (module, name) pairs a frame, log entry or snapshot may name. Everything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # protocol 2 (pysyncobj's) spells bytes and sets as calls
        ("_codecs", "encode"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        # membership entries and the snapshot's member set
        ("pysyncobj.node", "Node"),
        ("pysyncobj.node", "TCPNode"),
        # factoryOS commands, outcomes and the replicated state (snapshots)
        *(
            ("fos_raft.state.commands", name)
            for name in (
                "Register", "UpdateSpec", "MarkDown", "MarkUp", "Drain", "Undrain",
                "Decommission", "AnnounceReplica", "ForgetReplica", "NoteRefuted",
                "SeedState", "Outcome",
            )
        ),
        *(
            ("fos_raft.model", name)
            for name in ("ErrorCode", "ItemReq", "NodeSpec", "NodeStatus", "Edge", "Plan")
        ),
        ("fos_raft.state.entry", "NodeEntry"),
        ("fos_raft.state.core", "CoordinatorState"),
    }
)


class DisallowedType(pickle.UnpicklingError):
    """A pickle named a global outside `ALLOWED_GLOBALS`."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 pickles bytes as _codecs.encode(text, 'latin1'); any other codec is refused.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise DisallowedType(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 names python-2 modules (__builtin__.set): map them as pickle would
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in ALLOWED_GLOBALS:
            raise DisallowedType(f"global {module}.{name} is not allowed")
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        found = _RESOLVED.get((module, name))
        if found is None:  # only allowed names get here: the cache holds nothing else
            found = _RESOLVED[(module, name)] = super().find_class(module, name)
        return found


# Allowed globals once resolved (every log entry names the same few classes).
_RESOLVED: dict[tuple[str, str], Any] = {}


def restricted_loads(data: bytes | bytearray | memoryview | str) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def restricted_load(file: Any) -> Any:
    return _RestrictedUnpickler(file).load()


class _RestrictedPickle:
    """Stands in for the ``pysyncobj.pickle`` module inside pysyncobj: same dump side, but
    loads resolve only `ALLOWED_GLOBALS` (and there is no unrestricted python-2 fallback)."""

    def __init__(self, original: Any) -> None:
        self._original = original
        self.dumps = original.dumps
        self.dump = original.dump
        self.to_bytes = original.to_bytes
        self.loads = restricted_loads
        self.load = restricted_load


def install() -> None:
    """Make pysyncobj decode log entries, snapshots and frames with the restricted unpickler
    (idempotent)."""
    for module in (_syncobj_module, _serializer_module, _tcp_module):
        current = module.pickle  # type: ignore[attr-defined]
        if not isinstance(current, _RestrictedPickle):
            module.pickle = _RestrictedPickle(current)  # type: ignore[attr-defined]


@dataclass
class FrameGuard:
    """Counts dropped frames by reason; logs the first of each reason from each peer host."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    _logged: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reject(self, peer: str, reason: str, detail: str) -> None:
        host = peer.rsplit(":", 1)[0]
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            first = (host, reason) not in self._logged
            self._logged.add((host, reason))
        if first:  # once per peer host and reason: a flood must not flood the log
            log.warning("raft frame rejected; connection closed", peer=peer, reason=reason,
                        detail=detail[:200])

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class FrameRejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class WireConnection(TcpConnection):
    """A pysyncobj `TcpConnection` with a bounded, authenticated, restricted receive side.

    pysyncobj creates the connection objects itself (its server and ``addNode``), so the
    transport converts them with `adopt` before they have read anything. The overridden
    methods are pysyncobj's private ones (name-mangled ``_TcpConnection__*``): the rest of the
    class - connect, send, timeouts, poller events - is pysyncobj's unchanged."""

    guard: FrameGuard | None
    max_frame: int
    _rx: bytearray
    _peer: str

    @classmethod
    def adopt(cls, conn: TcpConnection, guard: FrameGuard | None, max_frame: int) -> WireConnection:
        conn.__class__ = cls
        assert isinstance(conn, WireConnection)
        conn.guard = guard
        conn.max_frame = max_frame
        conn._rx = bytearray()
        conn._peer = ""
        return conn

    def connect(self, host: str, port: int) -> bool:
        self._rx = bytearray()
        self._peer = ""
        return bool(super().connect(host, port))

    def disconnect(self) -> None:
        self._rx = bytearray()
        super().disconnect()

    def peer(self) -> str:
        if not self._peer:
            sock = getattr(self, "_TcpConnection__socket", None)
            try:
                host, port = sock.getpeername()[:2] if sock is not None else ("?", 0)
                self._peer = f"{host}:{port}"
            except OSError:
                return "unknown"
        return self._peer

    def reject(self, reason: str, detail: str) -> None:
        if self.guard is not None:
            self.guard.reject(self.peer(), reason, detail)
        self.disconnect()

    # ------------------------------------------------------------ pysyncobj's private hooks

    def _TcpConnection__tryReadBuffer(self) -> None:
        budget = READ_BUDGET
        while budget > 0 and self.state != CONNECTION_STATE.DISCONNECTED:
            got = self._read_once()
            if got <= 0:
                break
            budget -= got
        self._TcpConnection__lastReadTime = monotonic()

    def _read_once(self) -> int:
        sock = self._TcpConnection__socket  # type: ignore[attr-defined]
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)  # type: ignore[attr-defined]
        except BlockingIOError:
            return 0
        except OSError:
            self.disconnect()
            return 0
        if not incoming:
            self.disconnect()
            return 0
        self.peer()  # remember the address while the socket is open
        self._rx += incoming
        if len(self._rx) >= _LEN.size:
            (length,) = _LEN.unpack_from(self._rx)
            if not 0 <= length <= self.max_frame:  # refuse before buffering the body
                self.reject("oversize" if length > 0 else "malformed", f"length {length}")
                return 0
        return len(incoming)

    def _TcpConnection__processParseMessage(self) -> Any:
        rx = self._rx
        if len(rx) < _LEN.size:
            return None
        (length,) = _LEN.unpack_from(rx)
        if not 0 <= length <= self.max_frame:
            self.reject("oversize" if length > 0 else "malformed", f"length {length}")
            return None
        if len(rx) - _LEN.size < length:
            return None
        data = bytes(rx[_LEN.size : _LEN.size + length])
        del rx[: _LEN.size + length]  # bytearray: trimming the front is amortised O(1)
        try:
            message = self._decode(data)
        except FrameRejected as exc:
            self.reject(exc.reason, exc.detail)
            return None
        return message

    def _decode(self, data: bytes) -> Any:
        encryptor = self.encryptor
        if encryptor is not None:
            try:  # extract_timestamp verifies the token's HMAC: nothing is decoded before
                stamp = encryptor.extract_timestamp(data)
                plain = encryptor.decrypt(data)
            except InvalidToken:
                raise FrameRejected("bad_auth", "invalid Fernet token") from None
            if stamp < int(getattr(self, "recvLastTimestamp", 0) or 0):
                raise FrameRejected("bad_auth", "replayed Fernet token")
            self.recvLastTimestamp = stamp
            data = plain
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(data, self.max_frame)
        except zlib.error as exc:
            raise FrameRejected("malformed", f"zlib: {exc}") from None
        if inflater.unconsumed_tail:
            raise FrameRejected("oversize", f"inflates beyond {self.max_frame} bytes")
        try:
            message = restricted_loads(raw)
        except DisallowedType as exc:
            raise FrameRejected("disallowed_type", str(exc)) from None
        except Exception as exc:
            raise FrameRejected("malformed", f"{type(exc).__name__}: {exc}") from None
        if self.recvRandKey:
            if not (isinstance(message, tuple) and len(message) == 2
                    and message[0] == self.recvRandKey):
                raise FrameRejected("bad_auth", "connection key mismatch")
            message = message[1]
        return message


# pysyncobj renamed its internals: refuse to run with an unguarded receive side.
for _name in ("_TcpConnection__tryReadBuffer", "_TcpConnection__processParseMessage"):
    if _name not in TcpConnection.__dict__:
        raise ImportError(f"pysyncobj's TcpConnection has no {_name}: wire guard cannot apply")
