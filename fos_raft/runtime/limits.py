"""Bounded resources per client on a gRPC server (docs/operations.md, "Limits").

Two layers, because grpc core bounds connections and streams but knows nothing of peers:

- grpc core channel arguments (`GrpcLimits.server_options`): a handshake deadline (a
  connection that does not finish TCP + TLS + HTTP/2 set-up in time is closed, so a
  slow-loris cannot hold sockets), a cap on open connections in total
  (``grpc.max_allowed_incoming_connections``: over it, new connections are closed at once),
  concurrent streams per connection (HTTP/2 SETTINGS: a client queues the rest), idle
  connections reaped (no RPC for a while: GOAWAY, a real client reconnects on its next
  call), and message sizes stated rather than inherited;
- `RpcLimiter`, a server interceptor counting the RPCs (streams included, until they end)
  in progress per peer IP and in total: one over either limit is answered
  RESOURCE_EXHAUSTED at once, before the handler runs, so a flooding client cannot starve
  the others of handler slots or of the event loop;
- WatchFlow's own bounds (``--grpc-max-watch-*``, enforced by fos_raft.api.watch), lower
  than the RPC ones: over them a watch is refused with a redirect to another replica.

`raise_nofile_limit` lifts the soft RLIMIT_NOFILE to the hard one, so the connection cap,
not the default soft limit (often 1024), is what a flood runs into.
"""

from __future__ import annotations

import argparse
import inspect
import resource
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from fos_raft.runtime.logging import get_logger

log = get_logger("fos_raft.runtime.limits")
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """Per-server limits; the defaults are the flags' documented defaults. 0 = no limit."""

    handshake_timeout: float = 5.0  # seconds for TCP + TLS + HTTP/2 set-up
    max_connections: int = 2048  # open connections, all clients together
    max_streams_per_connection: int = 128
    max_connection_idle: float = 300.0  # seconds without an RPC before GOAWAY
    max_receive_bytes: int = 4 * MIB  # requests are small; a snapshot restore is a file
    max_send_bytes: int = 64 * MIB  # whole flows and snapshots go out
    max_rpcs: int = 4096  # RPCs in progress, all clients together
    # one host may run hundreds of agents (fos_agent.host, fos-sim), each holding a
    # WatchFlow stream and a few unary calls: the per-peer bound must leave room for that
    max_rpcs_per_peer: int = 1024
    # WatchFlow streams (fos_raft.api.watch), refused with a redirect to another replica;
    # below the RPC limits above, which count streams too, so these answer first
    max_watch_streams: int = 3072
    max_watch_per_peer: int = 768
    leader_watch_streams: int = 64  # a leader holding this many sheds new ones to followers

    def server_options(self) -> list[tuple[str, Any]]:
        """grpc core channel arguments for ``grpc.aio.server(options=...)``."""
        def size(value: int) -> int:
            return value if value > 0 else -1  # grpc's "unlimited"

        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", size(self.max_receive_bytes)),
            ("grpc.max_send_message_length", size(self.max_send_bytes)),
        ]
        if self.handshake_timeout > 0:
            options.append(("grpc.server_handshake_timeout_ms",
                            max(1, int(self.handshake_timeout * 1000))))
        if self.max_streams_per_connection > 0:
            options.append(("grpc.max_concurrent_streams", self.max_streams_per_connection))
        if self.max_connections > 0:
            options.append(("grpc.max_allowed_incoming_connections", self.max_connections))
        if self.max_connection_idle > 0:
            options.append(("grpc.max_connection_idle_ms",
                            max(1, int(self.max_connection_idle * 1000))))
        return options

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def peer_host(peer: str) -> str:
    """The IP of a grpc peer string: ``ipv4:10.0.0.7:5123`` -> ``10.0.0.7``,
    ``ipv6:[::1]:5123`` (or percent-encoded) -> ``::1``; anything else as it is."""
    text = urllib.parse.unquote(peer)
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("ipv4", "ipv6"):
        return text
    host = rest.rpartition(":")[0] or rest
    return host.strip("[]")


def count_in(per_peer: dict[str, int], peer: str) -> None:
    """One more call or stream in progress from ``peer``."""
    per_peer[peer] = per_peer.get(peer, 0) + 1


def count_out(per_peer: dict[str, int], peer: str) -> None:
    """One fewer from ``peer`` (its entry goes at zero: the map holds active peers only)."""
    left = per_peer.get(peer, 1) - 1
    if left > 0:
        per_peer[peer] = left
    else:
        per_peer.pop(peer, None)


class RpcLimiter(grpc.aio.ServerInterceptor):
    """RESOURCE_EXHAUSTED for an RPC over ``max_per_peer`` in progress from its peer IP or
    over ``max_total`` in progress in all (0: no limit). Counted from the handler's start
    to its end, so a long-lived stream holds its slot for as long as it is open."""

    def __init__(self, max_total: int, max_per_peer: int) -> None:
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.total = 0
        self.per_peer: dict[str, int] = {}
        self.refused = 0  # RPCs answered RESOURCE_EXHAUSTED (tests, logs)
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # method -> (handler, wrapped)

    def _refusal(self, peer: str) -> str | None:
        if self.max_total and self.total >= self.max_total:
            return f"server busy: {self.total} RPCs in progress (limit {self.max_total})"
        held = self.per_peer.get(peer, 0)
        if self.max_per_peer and held >= self.max_per_peer:
            return (f"too many RPCs from {peer}: {held} in progress "
                    f"(limit {self.max_per_peer} per client address)")
        return None

    async def _enter(self, context: Any) -> str:
        peer = peer_host(context.peer() or "")
        refusal = self._refusal(peer)
        if refusal is not None:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:  # a flood logs a line, not a flood
                log.warning("rpc refused: over the limit", peer=peer, refused=self.refused,
                            reason=refusal)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        self.total += 1
        count_in(self.per_peer, peer)
        return peer

    def _leave(self, peer: str) -> None:
        self.total -= 1
        count_out(self.per_peer, peer)

    def _limit(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(inner):
            async def limited_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                peer = await self._enter(context)
                try:
                    async for reply in inner(request, context):
                        yield reply
                finally:
                    self._leave(peer)
            return limited_stream

        async def limited(request: Any, context: Any) -> Any:
            peer = await self._enter(context)
            try:
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                self._leave(peer)
        return limited

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        known = self._wrapped.get(details.method)
        if known is not None and known[0] is handler:
            return known[1]
        kinds = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        for kind, make in kinds.items():
            inner = getattr(handler, kind)
            if inner is not None:
                wrapped = make(self._limit(inner),
                               request_deserializer=handler.request_deserializer,
                               response_serializer=handler.response_serializer)
                self._wrapped[details.method] = (handler, wrapped)
                return wrapped
        return handler


def raise_nofile_limit() -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) after. A limit
    that cannot be raised is logged and left: the process still runs, with fewer sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft, hard  # unlimited hard limits are refused as a soft value on Linux
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open-files limit", soft=soft, hard=hard, error=str(exc))
        return soft, hard
    return hard, hard


# ---------------------------------------------------------------- command line


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    d = GrpcLimits()
    g = parser.add_argument_group("gRPC limits per client (docs/operations.md; 0: no limit)")
    num, secs = _non_negative(int), _non_negative(float)
    g.add_argument("--grpc-handshake-timeout", type=secs, default=d.handshake_timeout,
                   metavar="S", help="close a connection not set up (TLS + HTTP/2) within S "
                   "seconds (default %(default)s)")
    g.add_argument("--grpc-max-connections", type=num, default=d.max_connections, metavar="N",
                   help="open connections in total; more are closed at once (default "
                   "%(default)s)")
    g.add_argument("--grpc-max-streams-per-connection", type=num,
                   default=d.max_streams_per_connection, metavar="N",
                   help="concurrent RPCs on one connection (default %(default)s)")
    g.add_argument("--grpc-max-connection-idle", type=secs, default=d.max_connection_idle,
                   metavar="S", help="close a connection without an RPC for S seconds "
                   "(default %(default)s)")
    g.add_argument("--grpc-max-receive-bytes", type=num, default=d.max_receive_bytes,
                   metavar="B", help="largest request message (default %(default)s)")
    g.add_argument("--grpc-max-send-bytes", type=num, default=d.max_send_bytes, metavar="B",
                   help="largest reply message (default %(default)s)")
    g.add_argument("--grpc-max-rpcs", type=num, default=d.max_rpcs, metavar="N",
                   help="RPCs in progress in total, streams included; more get "
                   "RESOURCE_EXHAUSTED (default %(default)s)")
    g.add_argument("--grpc-max-rpcs-per-peer", type=num, default=d.max_rpcs_per_peer,
                   metavar="N", help="RPCs in progress from one client IP address; more get "
                   "RESOURCE_EXHAUSTED (default %(default)s)")
    g.add_argument("--grpc-max-watch-streams", type=num, default=d.max_watch_streams,
                   metavar="N", help="WatchFlow streams open on this replica; more get "
                   "RESOURCE_EXHAUSTED naming another replica (default %(default)s)")
    g.add_argument("--grpc-max-watch-per-peer", type=num, default=d.max_watch_per_peer,
                   metavar="N", help="WatchFlow streams from one client IP address; more get "
                   "RESOURCE_EXHAUSTED naming another replica (default %(default)s)")
    g.add_argument("--grpc-leader-watch-streams", type=num, default=d.leader_watch_streams,
                   metavar="N", help="while leader and a follower is connected, hold at most "
                   "N WatchFlow streams; more are sent to a follower (UNAVAILABLE with a "
                   "redirect; default %(default)s)")


def limits_from_args(args: argparse.Namespace) -> GrpcLimits:
    return GrpcLimits(
        handshake_timeout=args.grpc_handshake_timeout,
        max_connections=args.grpc_max_connections,
        max_streams_per_connection=args.grpc_max_streams_per_connection,
        max_connection_idle=args.grpc_max_connection_idle,
        max_receive_bytes=args.grpc_max_receive_bytes,
        max_send_bytes=args.grpc_max_send_bytes,
        max_rpcs=args.grpc_max_rpcs,
        max_rpcs_per_peer=args.grpc_max_rpcs_per_peer,
        max_watch_streams=args.grpc_max_watch_streams,
        max_watch_per_peer=args.grpc_max_watch_per_peer,
        leader_watch_streams=args.grpc_leader_watch_streams,
    )
