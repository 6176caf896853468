"""Server side of fos.v1.Agent (grpc.aio) plus the standard grpc.health.v1 endpoint.

Every RPC becomes protocol events stepped through the agent's Engine (durable before the
reply, see fos_agent.core.engine). Supplier side:

- RequestBatch: piggybacked confirmations (``delivered``) first, then the request, in one
  step. Refusals map to PERMISSION_DENIED (not a consumer in our flow), FAILED_PRECONDITION
  (the requester's flow is newer than ours: it should wait for the watch) or
  INVALID_ARGUMENT, with our flow version in the ``fos-flow-version`` trailing metadata.
  Long-poll: when nothing is QUEUED, wait up to ``wait_ms`` (capped) for the outbound queue
  to change, then handle the same request again; a new flow ends the wait (answered).
- WaitingForBatch / DeliveryConfirmed: Ack with our flow version.

Consumer side: OfferBatch (a supplier's retry) is always taken, from any supplier, flow or
no flow: goods already sent to us must never be lost.

Any RPC from a watched neighbour is a heartbeat for the failure detector, and a long-poll
counts as one for as long as it is held open. Without TLS a Ping is believed only from a
watched flow neighbour, at the incarnation it proved by answering our own Ping at its
address, while our contact with it is not failing (``Heartbeats.believe``); any other Ping
is answered (the reply proves who we are) but is no heartbeat and counts ``refused_pings``:
in plaintext anyone may send a Ping naming a dead supplier, which must not keep it alive.
A Ping with no sender is an identity query (the coordinator's suspicion probe).

With TLS the server requires a client certificate from the CA, and a caller acts only for
itself: the ``consumer`` (RequestBatch, WaitingForBatch, DeliveryConfirmed), ``supplier``
(OfferBatch) or ``from_node`` (Ping) a request names must be one of the names on the
caller's certificate, else PERMISSION_DENIED (checked before anything else, so a forged
request is not even a heartbeat). Stats and health need only a valid certificate.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fos_agent.core.engine import Signal
from fos_agent.core.fairshare import FairShare, LongPoll
from fos_agent.net.client import KEEPALIVE_MS
from fos_agent.net.pbconv import (
    FLOW_VERSION_KEY,
    REFUSAL_STATUS,
    batch_to_pb,
    in_state_to_pb,
    offer_from_pb,
    requests_from_pb,
)
from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    OfferReply,
    RequestRefused,
    WaitingForBatch,
)
from fos_agent.protocol.transitions import ProtocolError
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.lineage.remote import views_to_pb
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running
from fos_raft.security.tls import add_port, describe, peer_names

if TYPE_CHECKING:
    from fos_agent.core.engine import Engine
    from fos_agent.core.metrics import Metrics
    from fos_raft.security.tls import TlsConfig


class Heartbeats(Protocol):
    """The failure detector as the service sees it (fos_agent.runtime.detector)."""

    def contact(self, node: str, ok: bool) -> None: ...

    def hold(self, node: str, held: bool) -> None: ...

    def believe(self, node: str, incarnation: int) -> bool: ...


class PeerHost(Protocol):
    """What the service needs of its agent (fos_agent.agent.Agent implements it); a protocol
    rather than the class keeps net/ below the facade that starts it."""

    node_id: str
    incarnation: int
    engine: Engine
    tls: TlsConfig | None
    metrics: Metrics

    @property  # read-only here: the agent's FailureDetector satisfies it
    def detector(self) -> Heartbeats: ...

    def loop_time(self) -> float: ...

    def stats_reply(self) -> agent_pb2.StatsReply: ...

# Neighbours ping a connection with a long-poll open every KEEPALIVE_MS (client.py); a
# server refuses pings more frequent than 5 min by default (GOAWAY "too many pings").
# Bounds per client (docs/operations.md, "Limits"): a connection must finish TLS + HTTP/2
# set-up within 5 s (a slow-loris holds no socket), open connections are capped (a node has
# tens of neighbours), streams per connection are capped (a consumer's long-polls fit
# easily; more queue on the client), and message sizes are stated, not inherited.
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.server_handshake_timeout_ms", 5_000),
    ("grpc.max_allowed_incoming_connections", 1024),
    ("grpc.max_concurrent_streams", 256),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)
ENDED_WAITS_KEPT = 1024  # request ids a stopping consumer ended (one that arrives late is
# answered at once); a consumer ends at most one per input item, so this spans hundreds
MAX_LINEAGE_IDS = 10_000


class PeerService(agent_pb2_grpc.AgentServicer):
    def __init__(self, agent: PeerHost) -> None:
        self.agent = agent
        self.closing = False  # set at stop: long-polls answer at once
        self.fair = FairShare()  # long-polls of a scarce item served round robin
        # (consumer, request id) of long-polls their consumer ended (EndWait): keyed by the
        # consumer too, so one consumer can never end another's wait
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.health: Any = None  # the grpc.health.v1 servicer, set by start_server

    def close(self) -> None:
        self.closing = True
        self.agent.engine.outbound_changed.notify()

    @property
    def _engine(self) -> Any:
        return self.agent.engine

    async def _allow(self, context: grpc.aio.ServicerContext, node: str, role: str) -> None:
        """With TLS: abort PERMISSION_DENIED unless the caller's certificate names ``node``."""
        if self.agent.tls is None:
            return
        names = peer_names(context)
        if node not in names:
            self.agent.metrics.inc("refused_identity")
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{describe(names)} may not act as {role} {node!r}: "
                "an agent acts only for the node its certificate names")

    def _heard(self, node: str, kind: str) -> None:
        self.agent.metrics.received(kind)
        self.agent.detector.contact(node, True)

    async def _step(self, context: grpc.aio.ServicerContext, *events: Any) -> list[Any]:
        try:
            return await self._engine.step(*events)
        except ProtocolError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # WAL failure: the engine is recovering
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"agent recovering: {exc}")
        raise AssertionError("unreachable")

    def _version(self) -> int:
        node = self._engine.node
        return int(node.flow_version) if node is not None else 0

    async def RequestBatch(self, request: agent_pb2.RequestBatchRequest,
                           context: grpc.aio.ServicerContext) -> agent_pb2.RequestBatchReply:
        if not request.consumer or not request.request_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "consumer and request_id are required")
        await self._allow(context, request.consumer, "consumer")
        me = self.agent.node_id
        self._heard(request.consumer, "RequestBatch")
        msgs = requests_from_pb(me, request)
        confirms = [DeliveryConfirmed(me, request.consumer, b) for b in request.delivered]
        loop_time = self.agent.loop_time
        key = (request.consumer, request.request_id)
        # who gets a scarce batch, and how long to hold: fos_agent.rules.share
        poll = LongPoll(self.fair, request.consumer, msgs[0].wait_ms, self._version(),
                        loop_time())
        # a long-poll held open by the consumer is a heartbeat for as long as it lasts
        # (a dead consumer's connection drops and cancels this handler at once)
        if poll.holding:
            self.agent.detector.hold(request.consumer, True)
        try:
            while True:
                ticket = self._engine.outbound_changed.ticket()  # before looking: no lost wakeup
                turn = self.fair.changed.ticket()
                node = self._engine.node
                available = node.queued_outbound_count if node is not None else 0
                now, ended = loop_time(), key in self._ended
                if poll.wait_turn(available, now, self.closing, ended):
                    # consumers served longer ago are waiting: they take it first
                    if confirms:
                        await self._step(context, *confirms)
                        confirms = []
                    await _first_of(ticket, turn, timeout=poll.remaining(now, ended))
                    continue
                effects = await self._step(context, *confirms, *msgs)
                confirms = []
                replies = [e.reply for e in effects[-len(msgs):]]
                reply = replies[0]
                if isinstance(reply, RequestRefused):
                    await context.abort(
                        REFUSAL_STATUS[reply.reason], reply.detail,
                        trailing_metadata=((FLOW_VERSION_KEY, str(reply.flow_version)),))
                if isinstance(reply, BatchSent):
                    poll.served()
                    sent = [r.batch for r in replies if isinstance(r, BatchSent)]
                    return agent_pb2.RequestBatchReply(
                        sent=batch_to_pb(sent[0]),
                        also_sent=[batch_to_pb(b) for b in sent[1:]],
                        flow_version=self._version())
                assert isinstance(reply, BatchUnavailable)
                wait = poll.wait_more(loop_time(), self.closing, self._version(),
                                      key in self._ended)
                if wait is None or not await Signal.wait_ticket(ticket, wait):
                    return agent_pb2.RequestBatchReply(
                        unavailable=agent_pb2.BatchUnavailable(), flow_version=self._version())
        finally:
            poll.close()
            if poll.holding:
                self.agent.detector.hold(request.consumer, False)

    async def WaitingForBatch(self, request: agent_pb2.BatchRef,
                              context: grpc.aio.ServicerContext) -> agent_pb2.Ack:
        await self._allow(context, request.consumer, "consumer")
        self._heard(request.consumer, "WaitingForBatch")
        await self._step(context, WaitingForBatch(self.agent.node_id, request.consumer,
                                                  request.batch_id))
        return agent_pb2.Ack(flow_version=self._version())

    async def DeliveryConfirmed(self, request: agent_pb2.BatchRef,
                                context: grpc.aio.ServicerContext) -> agent_pb2.Ack:
        await self._allow(context, request.consumer, "consumer")
        self._heard(request.consumer, "DeliveryConfirmed")
        await self._step(context, DeliveryConfirmed(self.agent.node_id, request.consumer,
                                                    request.batch_id))
        return agent_pb2.Ack(flow_version=self._version())

    async def OfferBatch(self, request: agent_pb2.OfferBatchRequest,
                         context: grpc.aio.ServicerContext) -> agent_pb2.OfferBatchReply:
        if not request.HasField("batch") or not request.batch.batch_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "batch is required")
        await self._allow(context, request.supplier, "supplier")
        self._heard(request.supplier, "OfferBatch")
        (effects,) = await self._step(context, offer_from_pb(request))
        reply = effects.reply
        assert isinstance(reply, OfferReply)
        return agent_pb2.OfferBatchReply(state=in_state_to_pb(reply.state))

    async def Ping(self, request: agent_pb2.PingRequest,
                   context: grpc.aio.ServicerContext) -> agent_pb2.PingReply:
        if request.from_node:
            await self._allow(context, request.from_node, "pinging node")
            # with TLS the certificate already proved the sender (_allow)
            if (self.agent.tls is not None
                    or self.agent.detector.believe(request.from_node, request.from_incarnation)):
                self._heard(request.from_node, "Ping")
            else:
                self.agent.metrics.received("Ping")
                self.agent.metrics.inc("refused_pings")
        return agent_pb2.PingReply(node_id=self.agent.node_id, flow_version=self._version(),
                                   incarnation=self.agent.incarnation)

    async def EndWait(self, request: agent_pb2.EndWaitRequest,
                      context: grpc.aio.ServicerContext) -> agent_pb2.Ack:
        await self._allow(context, request.consumer, "consumer")
        self._heard(request.consumer, "EndWait")
        for request_id in request.request_ids:
            self._ended[(request.consumer, request_id)] = None
        while len(self._ended) > ENDED_WAITS_KEPT:
            self._ended.popitem(last=False)
        self._engine.outbound_changed.notify()  # held long-polls look again, and answer
        return agent_pb2.Ack(flow_version=self._version())

    async def Stats(self, request: agent_pb2.StatsRequest,
                    context: grpc.aio.ServicerContext) -> agent_pb2.StatsReply:
        return self.agent.stats_reply()

    async def Lineage(self, request: agent_pb2.LineageRequest,
                      context: grpc.aio.ServicerContext) -> agent_pb2.LineageReply:
        # read-only: any caller with a valid certificate may read (docs/genealogy.md)
        if len(request.batch_ids) > MAX_LINEAGE_IDS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"at most {MAX_LINEAGE_IDS} batch ids per call")
        return views_to_pb(self.agent.node_id, self._engine.lineage(list(request.batch_ids)))


async def _first_of(*tickets: asyncio.Event, timeout: float) -> None:
    """Wait until any of ``tickets`` is set, or ``timeout`` seconds."""
    waits = [asyncio.ensure_future(t.wait()) for t in tickets]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def start_server(agent: PeerHost, listen: str
                       ) -> tuple[grpc.aio.Server, PeerService, int]:
    """Serve fos.v1.Agent and grpc.health.v1 on ``listen`` (port 0 picks a free one;
    mutual TLS when ``agent.tls`` is set); returns the started server, the service and the
    bound port."""
    keep_grpc_aio_running()
    server = grpc.aio.server(options=SERVER_OPTIONS)
    service = PeerService(agent)
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service.health = health_servicer  # the agent's health task keeps it truthful
    try:
        port = add_port(server, listen, agent.tls)
    except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
        raise OSError(f"cannot listen on {listen}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    for name in ("", "fos.v1.Agent"):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, service, port
