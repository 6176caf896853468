"""Client side of fos.v1.Agent: one agent calling its flow neighbours over gRPC.

One channel per peer address (short reconnect backoff, so a restarted peer is reached
again within a second; when the flow shows a peer back, ``reconnect`` gives it a fresh
channel that connects at once instead of waiting out the old one's backoff). Every call
reports its outcome to ``on_contact(node, ok)``: any answer, even a refusal, proves the
peer alive (a heartbeat); UNAVAILABLE, DEADLINE_EXCEEDED or an unknown address is failed
contact, for the failure detector. Calls never wait for a connection (no wait_for_ready):
a SIGKILLed peer on loopback refuses at once, which is what lets a consumer switch to a
backup supplier immediately.

With TLS a channel is mutual TLS and expects the peer's certificate to name the node we
mean to call (not its address): a process that took over a dead peer's port is no answer.
Without TLS a Ping checks the same by its reply: one naming another node (another
factory's agent on a shared host took the port), or an older incarnation than the node
proved before, is failed contact; a good one is passed to ``on_proven(node,
incarnation)`` (the failure detector then believes that node's own Pings only from that
incarnation on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from fos_agent.core.metrics import Metrics
from fos_agent.net.pbconv import (
    in_state_from_pb,
    offer_to_pb,
    ref_to_pb,
    refusal_from_status,
    request_reply_from_pb,
    request_to_pb,
)
from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    OfferBatch,
    OfferReply,
    RequestBatch,
    RequestRefused,
    WaitingForBatch,
)
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.security.tls import TlsConfig, aio_channel

KEEPALIVE_MS = 10000
KEEPALIVE_TIMEOUT_MS = 2000
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
    # Channels must not share subchannels (the default global pool would): a fresh channel
    # to a restarted peer would otherwise inherit the dead connection's reconnect backoff.
    ("grpc.use_local_subchannel_pool", 1),
    # A held long-poll carries no data for up to its wait (20 s): HTTP/2 keepalive pings
    # on a connection with calls open notice a hung peer (SIGSTOPped, a frozen machine)
    # after about KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS, the call fails UNAVAILABLE and the
    # consumer turns to a backup. A ping is handled in gRPC's core, no Python wakes up:
    # far cheaper than renewing the long-poll that often (issue 14). The server must allow
    # pings this frequent (SERVER_OPTIONS in fos_agent.net.service).
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    # gRPC core >= 1.5x times unanswered pings out by this one (default 1 min), not by
    # keepalive_timeout: without it a SIGSTOPped peer's call waited for its deadline
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)
RETIRED_CHANNEL_GRACE_S = 10.0  # calls in flight on a replaced channel finish meanwhile
# Codes that mean "the peer did not answer" (failed contact); anything else is an answer.
NO_ANSWER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                       grpc.StatusCode.INTERNAL})


class PeerUnreachable(Exception):
    """The peer gave no answer (down, unknown address, timeout)."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"{node}: {reason}")
        self.node = node
        self.reason = reason


class PeerRefused(Exception):
    """The peer answered with an error status (it is alive, but said no)."""

    def __init__(self, node: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{node}: {code.name}: {details}")
        self.node = node
        self.code = code
        self.details = details


Resolver = Callable[[str], Awaitable[str | None]]
ContactHook = Callable[[str, bool], None]
HoldHook = Callable[[str, bool], None]
ProvenHook = Callable[[str, int], None]


class PeerClient:
    def __init__(self, node_id: str, resolve: Resolver, metrics: Metrics, *,
                 on_contact: ContactHook | None = None, rpc_timeout: float = 2.0,
                 tls: TlsConfig | None = None) -> None:
        self.node_id = node_id
        self.tls = tls
        self.resolve = resolve
        self.metrics = metrics
        self.on_contact = on_contact or (lambda node, ok: None)
        # a long-poll opened (True) / ended (False): the failure detector counts an open
        # one as contact, so a link that carries long-polls needs no pings
        self.on_hold: HoldHook = lambda node, held: None
        # a Ping's reply proved the node at its address, at this incarnation
        self.on_proven: ProvenHook = lambda node, incarnation: None
        self._incarnations: dict[str, int] = {}  # node -> newest incarnation it proved
        self.rpc_timeout = rpc_timeout
        # address -> (channel, stub, the node name a TLS channel expects there)
        self._channels: dict[str, tuple[grpc.aio.Channel, agent_pb2_grpc.AgentStub, str]] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._closed = False

    def _stub(self, address: str, node: str) -> agent_pb2_grpc.AgentStub:
        entry = self._channels.get(address)
        if entry is not None and self.tls is not None and entry[2] != node:
            self.reconnect(address)  # another node took this address: expect its name
            entry = None
        if entry is None:
            channel = aio_channel(address, self.tls, node, CHANNEL_OPTIONS)
            entry = (channel, agent_pb2_grpc.AgentStub(channel), node)
            self._channels[address] = entry
        return entry[1]

    def reconnect(self, address: str) -> None:
        """The peer at ``address`` came back (the flow says so): the next call uses a new
        channel, which connects at once; the old channel, maybe waiting out a reconnect
        backoff of up to a second after the peer's death, is closed after a grace."""
        entry = self._channels.pop(address, None)
        if entry is None or self._closed:
            return

        async def retire(channel: grpc.aio.Channel) -> None:
            try:
                await asyncio.sleep(RETIRED_CHANNEL_GRACE_S)
            finally:  # also when the client closes first
                await channel.close(grace=None)

        task = asyncio.ensure_future(retire(entry[0]))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _call(self, node: str, kind: str, request: Any, timeout: float | None = None,
                    check: Callable[[Any], str] | None = None) -> Any:
        """``check(reply)``: why the reply is not from ``node`` ("" if it is); a reply that
        fails it is no answer."""
        if self._closed:
            raise PeerUnreachable(node, "client closed")
        address = await self.resolve(node)
        if not address:
            self.on_contact(node, False)
            raise PeerUnreachable(node, "address unknown")
        self.metrics.sent(kind)
        started = time.perf_counter()
        try:
            reply = await getattr(self._stub(address, node), kind)(
                request, timeout=timeout or self.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            self.metrics.rpc_time(kind, time.perf_counter() - started)
            code = exc.code()
            if code in NO_ANSWER:
                self.on_contact(node, False)
                raise PeerUnreachable(node, f"{code.name}: {exc.details()}") from None
            self.on_contact(node, True)
            refused = PeerRefused(node, code, exc.details() or "")
            refused.trailing = exc.trailing_metadata()  # type: ignore[attr-defined]
            raise refused from None
        self.metrics.rpc_time(kind, time.perf_counter() - started)
        wrong = check(reply) if check is not None else ""
        if wrong:
            self.metrics.inc("wrong_identity")
            self.on_contact(node, False)
            raise PeerUnreachable(node, f"{address} {wrong}")
        self.on_contact(node, True)
        return reply

    async def request(self, msg: RequestBatch, delivered: list[str] | None = None,
                      count: int = 1
                      ) -> list[BatchSent] | list[BatchUnavailable] | list[RequestRefused]:
        """RequestBatch for up to ``count`` batches (long-poll ``msg.wait_ms``): the
        batches sent, or one BatchUnavailable, or one RequestRefused. Raises
        PeerUnreachable, or PeerRefused for statuses that are not a refusal."""
        timeout = self.rpc_timeout + msg.wait_ms / 1000.0
        holding = msg.wait_ms > 0
        if holding:
            self.on_hold(msg.supplier, True)
        try:
            reply = await self._call(msg.supplier, "RequestBatch",
                                     request_to_pb(msg, delivered, count), timeout)
        except PeerRefused as exc:
            refusal = refusal_from_status(msg, exc.code, exc.details,
                                          getattr(exc, "trailing", None))
            if refusal is None:
                raise
            return [refusal]
        finally:
            if holding:
                self.on_hold(msg.supplier, False)
        return request_reply_from_pb(msg, reply)

    async def waiting(self, msg: WaitingForBatch) -> None:
        await self._call(msg.supplier, "WaitingForBatch", ref_to_pb(msg))

    async def confirmed(self, msg: DeliveryConfirmed) -> None:
        await self._call(msg.supplier, "DeliveryConfirmed", ref_to_pb(msg))

    async def offer(self, msg: OfferBatch) -> OfferReply:
        reply = await self._call(msg.consumer, "OfferBatch", offer_to_pb(msg))
        return OfferReply(msg.supplier, msg.consumer, msg.batch.batch_id,
                          in_state_from_pb(reply.state))

    async def ping(self, node: str, flow_version: int, timeout: float | None = None,
                   incarnation: int = 0) -> int:
        """Ping a neighbour (we are at ``incarnation``); returns its flow version. Raises
        PeerUnreachable also when another node, or an older life of it, answers."""

        def check(reply: agent_pb2.PingReply) -> str:
            if reply.node_id != node:
                return f"answered as node {reply.node_id!r}"
            if reply.incarnation < self._incarnations.get(node, 0):  # only grows (its WAL)
                return f"answered as an older incarnation {reply.incarnation}"
            return ""

        reply = await self._call(node, "Ping", agent_pb2.PingRequest(
            from_node=self.node_id, flow_version=flow_version,
            from_incarnation=incarnation), timeout, check)
        self._incarnations[node] = int(reply.incarnation)
        self.on_proven(node, int(reply.incarnation))
        return int(reply.flow_version)

    async def end_wait(self, supplier: str, request_ids: list[str]) -> None:
        """Ask ``supplier`` to answer our long-polls ``request_ids`` now (we are stopping).
        Raises PeerUnreachable, or PeerRefused (UNIMPLEMENTED: an older agent)."""
        await self._call(supplier, "EndWait", agent_pb2.EndWaitRequest(
            consumer=self.node_id, request_ids=request_ids))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._retired):
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        channels, self._channels = self._channels, {}
        for channel, _, _ in channels.values():
            await channel.close(grace=None)
