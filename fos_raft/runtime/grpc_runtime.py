"""Keep grpc.aio's process-wide runtime up for the life of the process.

grpc.aio counts its live channels and servers; when the count drops to zero it shuts its
completion queue down from the destructor of the last one, on the event loop's thread:
it stops reading the queue's wake-up socket, then joins the poller thread until the queue
reports shutdown. The poller writes one byte to that socket per completed operation and
blocks once the socket is full (about 280 unread bytes: each 1-byte write costs a full
socket buffer), and the loop reads one byte per wake-up however many events it handles,
so a busy or starved loop leaves a backlog. If the last channel is released while the
poller is blocked, the join never returns and the event loop is frozen (grpc/grpc#40989;
seen in CI: an in-process test hung for 180 s in ``PollerCompletionQueue.shutdown``).

Holding one reference of our own means the count never reaches zero: the queue is never
shut down while the process runs, and at exit the poller is a daemon thread that simply
ends with the process. Every place that makes a grpc.aio channel or server calls
`keep_grpc_aio_running` first, from inside the running loop.
"""

from __future__ import annotations

import threading
from typing import Any

from grpc._cython import cygrpc

_lock = threading.Lock()
_held = False


def keep_grpc_aio_running() -> None:
    """Take the process's one extra reference to grpc.aio's runtime (idempotent)."""
    global _held
    with _lock:
        if _held:
            return
        cygrpc.init_grpc_aio()
        _held = True


# Short reconnect backoff: a restarted replica is used again within ~2 s, not grpc's 120 s.
# Keepalive at grpc's server-side minimum (5 min) detects half-open connections without
# tripping the server's ping-abuse policy.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)
