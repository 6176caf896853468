"""WatchFlow at scale: one hub per replica fans each flow version out to the streams it changed.

Each published state is turned once into the set of nodes whose neighbourhood may differ
(`fos_raft.api.hoods.FlowIndex`); for each of those that someone watches, one reply is built
and its content (the reply without its version, ``views.content_key``) compared with the last
one that node's watchers were sent. Only watchers whose content differs are woken, all with
the same reply object. A watcher that is slow to take its reply has it replaced by the newest:
it never falls behind by more than one message, and the one it gets is the latest. An idle
stream costs nothing (no timer, no recompute): HTTP/2 keepalives are grpc core's business.
Whole-flow watchers (empty node id) share one reply per version in which the flow changed.

All of it runs on the event loop, called with every published state in apply order
(``Replica.state_listeners``): the Raft thread only posts the new state
(`fos_raft.replica.mailbox`: one wake-up per batch of applies) and never waits on a watcher.
The hub follows the state only while someone watches; the index is rebuilt on the first
watcher after a quiet spell.

Admission (`WatchLimits`, docs/operations.md#limits): over ``max_streams`` on this replica or
``max_per_peer`` from one client IP a new stream is answered RESOURCE_EXHAUSTED; a leader
holding ``leader_streams`` or more answers UNAVAILABLE while a follower is connected (watch
load belongs on followers: the leader's event loop also serves every write). Both carry
trailing metadata ``fos-redirect-grpc`` naming another replica, chosen by the node id so
that refused watchers spread over the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.hoods import FlowIndex
from fos_raft.api.policy import LEADER_METADATA_KEY, REDIRECT_METADATA_KEY
from fos_raft.api.views import content_key, flow_to_pb, neighbourhood_of
from fos_raft.replica.core import Replica
from fos_raft.runtime.limits import count_in, count_out, peer_host
from fos_raft.runtime.logging import get_logger
from fos_raft.state.core import CoordinatorState

log = get_logger("fos_raft.api.watch")

WHOLE_FLOW = ""


@dataclass(frozen=True, slots=True)
class WatchLimits:
    """0 = no limit. Defaults are the flags' documented defaults."""

    # below --grpc-max-rpcs / --grpc-max-rpcs-per-peer (4096 / 1024), which count streams
    # too: the watch limits answer first, with a redirect, and unary calls keep room
    max_streams: int = 3072  # WatchFlow streams open on this replica
    max_per_peer: int = 768  # from one client IP (a host may run hundreds of agents)
    leader_streams: int = 64  # a leader with this many sheds new ones to a follower


class Watcher:
    """One stream's slot: the newest reply not yet taken, and a bare future to wake its
    reader (lighter than an asyncio.Event, for thousands of streams)."""

    __slots__ = ("_waiter", "key", "min_version", "node", "pending")

    def __init__(self, node: str, min_version: int) -> None:
        self.node = node
        self.min_version = min_version
        self.key: bytes | None = None  # content of the last reply handed to this watcher
        self.pending: pb.GetFlowReply | None = None
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, reply: pb.GetFlowReply, key: bytes) -> bool:
        if key == self.key:
            return False
        self.key = key
        self.pending = reply  # replaces one not yet taken: the newest is what counts
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def take(self) -> pb.GetFlowReply:
        while self.pending is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        reply, self.pending = self.pending, None
        return reply


class WatchHub:
    def __init__(self, replica: Replica, limits: WatchLimits | None = None) -> None:
        self.replica = replica
        self.limits = limits or WatchLimits()
        self.watchers: dict[str, set[Watcher]] = {}
        self.per_peer: dict[str, int] = {}
        self.total = 0
        self.refused = 0
        self.shed = 0
        self.woken = 0  # watchers handed a reply after a change (tests, metrics)
        self._index: FlowIndex | None = None
        # node -> content hash of the newest reply built for it (not the reply: thousands of
        # protobuf messages held for idle streams would cost more than the streams)
        self._keys: dict[str, bytes] = {}
        self._waiting: set[Watcher] = set()  # min_version not reached yet
        replica.state_listeners.append(self._on_state)

    # ------------------------------------------------------------ following the state

    def _on_state(self, state: CoordinatorState) -> None:
        """Every published state, in order (Replica.state_listeners): wake whoever it
        changed. Nothing to do while nobody watches (the index is rebuilt on demand)."""
        index = self._index
        if index is None or state is index.state or state.version < index.state.version:
            return  # (an older state arrives only across a restart of the Raft thread)
        previous_flow = index.state.flow
        affected = index.advance(state)
        for node in affected:
            if node in self.watchers:
                self._publish(node, state)
        if WHOLE_FLOW in self.watchers and state.flow is not previous_flow:
            self._publish(WHOLE_FLOW, state)
        for watcher in [w for w in self._waiting if state.version >= w.min_version]:
            self._waiting.discard(watcher)
            watcher.offer(*self._reply(watcher.node, state))

    def _build(self, node: str, state: CoordinatorState) -> pb.GetFlowReply:
        if node == WHOLE_FLOW:
            return pb.GetFlowReply(flow=flow_to_pb(state.flow, state.version))
        assert self._index is not None
        hood = neighbourhood_of(state, node, self._index.edges_of(node), state.flow.members,
                                state.version)
        return pb.GetFlowReply(neighbourhood=hood)

    def _reply(self, node: str, state: CoordinatorState) -> tuple[pb.GetFlowReply, bytes]:
        """This node's reply at ``state`` and the hash of its content (``content_key``)."""
        reply = self._build(node, state)
        key = hashlib.blake2b(content_key(reply), digest_size=16).digest()
        self._keys[node] = key
        return reply, key

    def _publish(self, node: str, state: CoordinatorState) -> None:
        previous = self._keys.get(node)
        reply, key = self._reply(node, state)  # once per (node, version), for all watchers
        if previous == key:
            return  # touched, but this node's view is the same: nobody is woken
        for watcher in self.watchers[node]:
            if watcher not in self._waiting and watcher.offer(reply, key):
                self.woken += 1

    # ------------------------------------------------------------ admission

    def _redirect(self, node: str, avoid_leader: bool) -> str:
        replica = self.replica
        leader = replica.leader
        connected = {a for a, up in replica.members() if up}
        others = sorted(grpc_address for raft, grpc_address in replica.state.replicas.items()
                        if grpc_address and raft != replica.raft_address and raft in connected
                        and not (avoid_leader and raft == leader))
        if not others:
            return ""
        return others[zlib.crc32(node.encode()) % len(others)]

    def refusal(self, node: str, peer: str) -> tuple[grpc.StatusCode, str, str] | None:
        """(code, message, redirect) when a new stream from ``peer`` is not admitted."""
        limits = self.limits
        if limits.max_streams and self.total >= limits.max_streams:
            return (grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many WatchFlow streams on this replica: {self.total} "
                    f"(limit {limits.max_streams})", self._redirect(node, True))
        held = self.per_peer.get(peer, 0)
        if limits.max_per_peer and held >= limits.max_per_peer:
            return (grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many WatchFlow streams from {peer}: {held} "
                    f"(limit {limits.max_per_peer} per client address)",
                    self._redirect(node, True))
        if limits.leader_streams and self.total >= limits.leader_streams and \
                self.replica.is_leader:
            redirect = self._redirect(node, True)
            if redirect:
                return (grpc.StatusCode.UNAVAILABLE,
                        f"the leader serves writes; watch from a follower ({redirect})",
                        redirect)
        return None

    # ------------------------------------------------------------ one stream

    async def serve(self, request: pb.WatchFlowRequest, context: Any
                    ) -> AsyncIterator[pb.GetFlowReply]:
        peer = peer_host(context.peer() or "")
        node = request.node_id
        refused = self.refusal(node, peer)
        if refused is not None:
            code, message, redirect = refused
            if code is grpc.StatusCode.UNAVAILABLE:
                self.shed += 1
            else:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning("watch refused: over the limit", peer=peer, reason=message,
                                refused=self.refused)
            metadata: tuple[tuple[str, str], ...] = (
                ((REDIRECT_METADATA_KEY, redirect),) if redirect else ())
            if code is grpc.StatusCode.UNAVAILABLE and self.replica.grpc_address:
                # the client learns where the leader is (and keeps its watches elsewhere)
                metadata += ((LEADER_METADATA_KEY, self.replica.grpc_address),)
            await context.abort(code, message, trailing_metadata=metadata)
        watcher = Watcher(node, request.min_version)
        self._add(watcher, peer)
        try:
            while True:
                yield await watcher.take()
        finally:
            self._remove(watcher, peer)

    def _add(self, watcher: Watcher, peer: str) -> None:
        if self._index is None:
            self._index = FlowIndex(self.replica.published_state)
        self.watchers.setdefault(watcher.node, set()).add(watcher)
        self.total += 1
        count_in(self.per_peer, peer)
        state = self._index.state
        if state.version >= watcher.min_version:
            watcher.offer(*self._reply(watcher.node, state))  # newest first on connect
        else:
            self._waiting.add(watcher)

    def _remove(self, watcher: Watcher, peer: str) -> None:
        watchers = self.watchers.get(watcher.node)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self.watchers[watcher.node]
                self._keys.pop(watcher.node, None)
                if not self.watchers:
                    self._index = None  # not followed while nobody watches
        self._waiting.discard(watcher)
        self.total -= 1
        count_out(self.per_peer, peer)
