"""Failover policy of the coordinator client, pure: which gRPC codes move on to another
replica, the error types, backoff with jitter, the leader hint in an error, a reply's
version. No channels, no clock (the client drives these)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from fos_pb import coordinator_pb2 as pb
from fos_raft.model import FosError

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)
# A watch reconnects on anything else (stream reset, server shutdown, ...), but not on these:
# retrying cannot fix them.
CALLER_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.OUT_OF_RANGE,
    }
)
# Refusals a lagging replica may give wrongly (it checks against its own applied state).
STATE_DEPENDENT = frozenset(
    {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
     grpc.StatusCode.ALREADY_EXISTS}
)
LEADER_METADATA_KEY = "fos-leader-grpc"
# on a refused WatchFlow (over a limit, or a leader shedding): the replica to watch from
REDIRECT_METADATA_KEY = "fos-redirect-grpc"
_HOST_PORT = r"([A-Za-z0-9][\w.\-]*:\d+)"
# "last known leader raft R grpc G" (the service's wording), "leader_grpc=G", "leader is G".
_HINT_RES = (
    re.compile(r"leader.*?grpc[\s=:]*(?:is\s+|at\s+)?" + _HOST_PORT, re.I),
    re.compile(r"leader[\w-]*\s*(?:is\s+|at\s+|[=:]\s*)?" + _HOST_PORT, re.I),
)


class CoordinatorError(FosError):
    """A coordinator call failed: the gRPC status code and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str, method: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.method = method


class CoordinatorUnavailable(CoordinatorError):
    """No replica gave a usable answer within the call's deadline."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""

    base: float = 0.05
    factor: float = 2.0
    cap: float = 1.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 32))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def leader_hint(details: str | None, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The leader's gRPC address named by an error: metadata ``fos-leader-grpc`` first,
    else a ``leader ... host:port`` phrase in the message."""
    for key, value in metadata or ():
        if key == LEADER_METADATA_KEY and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    for pattern in _HINT_RES:
        match = pattern.search(details or "")
        if match:
            return match.group(1)
    return None


def redirect_hint(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The replica a refused watch is sent to (trailing metadata ``fos-redirect-grpc``)."""
    for key, value in metadata or ():
        if key == REDIRECT_METADATA_KEY and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def reply_version(reply: pb.GetFlowReply) -> int:
    """The flow version a GetFlow/WatchFlow reply reflects."""
    if reply.HasField("neighbourhood"):
        return int(reply.neighbourhood.version)
    return int(reply.flow.version)


CALL_BACKOFF = Backoff()  # between rounds over every replica, within one call's deadline
WATCH_BACKOFF = Backoff(cap=2.0)  # between watch reconnects; reset by every update
