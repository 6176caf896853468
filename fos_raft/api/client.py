"""Coordinator client with replica failover (asyncio, grpc.aio).

Used by node agents (one client per agent, for hours), by fosctl and by the experiment
harness. One channel per replica address, created on first use and reused until ``close()``.

Failover: a call goes to the preferred replica (the one that last answered, or the leader
when an UNAVAILABLE error's trailing metadata/message or a ClusterStatus names its gRPC
address), then to the others. UNAVAILABLE, DEADLINE_EXCEEDED and ABORTED move on to the next
replica; after every replica failed once, the client sleeps an exponential backoff with
jitter and starts another round, all within the call's overall deadline (``timeout``), each
attempt bounded by ``attempt_timeout``. A replica that does not answer does not hold a call
for that long: a connection is waited for at most ``connect_timeout``, and a read that has not
answered by then is left running while the next replica is asked (first usable answer wins;
writes are not doubled that way). Any other status is the caller's problem and is
raised at once as :class:`CoordinatorError` (never retried: INVALID_ARGUMENT, NOT_FOUND,
ALREADY_EXISTS, FAILED_PRECONDITION, ...). When the deadline passes,
:class:`CoordinatorUnavailable` (a CoordinatorError) is raised.

Writes may be retried after an attempt whose outcome is unknown (DEADLINE_EXCEEDED): the
coordinator's commands are idempotent where that matters (same-spec register, drain of a
drained node), and a compare-and-set ``update_spec`` then fails FAILED_PRECONDITION instead
of applying twice.

Versions never go backwards for a caller: the client keeps the highest flow version it has
seen (writes, reads, status), sends it as ``min_version`` on GetFlow/WatchFlow, and drops a
reply older than it (another replica is tried). ``watch_flow`` reconnects forever and yields
only versions newer than the last it yielded. A replica checks a write against its own
applied state, which may lag a write this client made through another replica: a
NOT_FOUND / FAILED_PRECONDITION / ALREADY_EXISTS refusal is raised only after that replica
has caught up to the client's version (GetFlow with min_version) and refused once more.

The pure policy (codes, backoff, leader hints, error types) is in ``fos_raft.api.policy``; the
names are re-exported here. Channels, the version floor and the retry loop are the base class
``fos_raft.api.failover.FailoverChannels``; this module adds the coordinator's calls and the watch.

Return types: writes return the new flow version (int); reads return the raw fos_pb
messages (``GetFlowReply``, ``ListNodesReply``, ``ClusterStatusReply``, ``MembersReply``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.convert import spec_to_pb
from fos_raft.api.failover import FailoverChannels
from fos_raft.api.policy import (
    CALLER_ERRORS,
    LEADER_METADATA_KEY,
    RETRYABLE,
    STATE_DEPENDENT,
    Backoff,
    CoordinatorError,
    CoordinatorUnavailable,
    leader_hint,
    redirect_hint,
    reply_version,
)
from fos_raft.model import NodeSpec
from fos_raft.runtime.grpc_runtime import DEFAULT_CHANNEL_OPTIONS
from fos_raft.runtime.logging import get_logger

log = get_logger("fos_raft.api.client")

__all__ = [
    "CALLER_ERRORS", "DEFAULT_CHANNEL_OPTIONS", "LEADER_METADATA_KEY", "RETRYABLE",
    "STATE_DEPENDENT", "Backoff", "CoordinatorClient", "CoordinatorError",
    "CoordinatorUnavailable", "leader_hint", "reply_version",
]


class CoordinatorClient(FailoverChannels):
    """The coordinator's API with replica failover (constructor: `FailoverChannels`)."""

    # Consistency of get_flow/list_nodes/cluster_status when a call names none: SERIALIZABLE
    # (agents: fast local reads); fosctl sets LINEARIZABLE (docs/coordinator.md, Guarantees).
    read_consistency: int = pb.SERIALIZABLE

    def _consistency(self, consistency: int | None) -> int:
        return self.read_consistency if consistency is None else consistency

    # ------------------------------------------------------------ writes

    async def register(self, spec: NodeSpec, *, timeout: float | None = None,
                       incarnation: int = 0, from_agent: bool = False) -> int:
        """Add a node to the catalog; returns the new flow version. ``incarnation``: the
        agent's, which the suspicion probe then expects (or a later one) at the address.
        ``from_agent`` (implied by an incarnation): the node's own agent calls, so the node
        is alive at once; otherwise it is not-started until its agent registers or rejoins."""
        request = pb.RegisterRequest(spec=spec_to_pb(spec), incarnation=incarnation,
                                     from_agent=from_agent)
        return await self._write("Register", request, spec.node_id, timeout)

    async def rejoin(
        self, node_id: str, address: str = "", *, timeout: float | None = None,
        incarnation: int = 0,
    ) -> int:
        """Mark a registered node up again (after a restart); empty address keeps the old.
        ``incarnation`` as in ``register``."""
        request = pb.RejoinRequest(node_id=node_id, address=address, incarnation=incarnation)
        return await self._write("Rejoin", request, node_id, timeout)

    async def leave(self, node_id: str, *, timeout: float | None = None,
                    incarnation: int = 0) -> int:
        """A node's agent stops cleanly: the node is marked down at once (reason
        ``stopped``); its next ``register``/``rejoin`` brings it back."""
        request = pb.LeaveRequest(node_id=node_id, incarnation=incarnation)
        return await self._write("Leave", request, node_id, timeout)

    async def update_spec(
        self,
        spec: NodeSpec,
        expected_version: int | None = None,
        *,
        timeout: float | None = None,
    ) -> int:
        """Replace a node's spec; with ``expected_version`` only if its spec_version still
        equals it (else FAILED_PRECONDITION)."""
        request = pb.UpdateSpecRequest(spec=spec_to_pb(spec))
        if expected_version is not None:
            request.expected_version = expected_version
        return await self._write("UpdateSpec", request, spec.node_id, timeout)

    async def report_suspect(
        self, reporter: str, suspect: str, reason: str = "", *, timeout: float | None = None
    ) -> tuple[str, int]:
        """Ask the leader to probe ``suspect``; returns (outcome name, flow version), the
        outcome being MARKED_DOWN, REFUTED or ALREADY_DOWN."""
        request = pb.ReportSuspectRequest(reporter=reporter, suspect=suspect, reason=reason)
        reply = await self._call(
            "ReportSuspect", request, version_of=lambda r: int(r.flow_version),
            timeout=timeout, sync_node=suspect,
        )
        return pb.ReportSuspectReply.Outcome.Name(reply.outcome), int(reply.flow_version)

    async def report_production(self, report: pb.ProductionReport, *,
                                timeout: float | None = None) -> None:
        """Send an agent's production figures (soft state of the replica that takes it)."""
        await self._call("ReportProduction", report, timeout=timeout)

    async def get_production(self, since_s: float = 0.0, *, timeout: float | None = None,
                             only: str | None = None) -> pb.ProductionReply:
        """One replica's production figures over the last ``since_s`` seconds (``only``:
        that replica's; each replica holds the reports it received)."""
        reply: pb.ProductionReply = await self._call(
            "GetProduction", pb.ProductionRequest(since_s=since_s), timeout=timeout,
            only=only)
        return reply

    async def drain(self, node_id: str, *, timeout: float | None = None) -> int:
        return await self._write("Drain", pb.NodeRequest(node_id=node_id), node_id, timeout)

    async def undrain(self, node_id: str, *, timeout: float | None = None) -> int:
        return await self._write("Undrain", pb.NodeRequest(node_id=node_id), node_id, timeout)

    async def decommission(self, node_id: str, *, timeout: float | None = None) -> int:
        return await self._write("Decommission", pb.NodeRequest(node_id=node_id), node_id, timeout)

    # ------------------------------------------------------------ reads

    async def get_flow(
        self, node_id: str | None = None, at_version: int = 0, *, timeout: float | None = None,
        consistency: int | None = None,
    ) -> pb.GetFlowReply:
        """The whole flow (``reply.flow``) or one node's neighbourhood
        (``reply.neighbourhood``); ``at_version`` reads a past version from the history."""
        request = pb.GetFlowRequest(
            node_id=node_id or "", at_version=at_version, min_version=self._floor,
            consistency=self._consistency(consistency),
        )
        if at_version:
            # A historical read is old on purpose; min_version still makes the replica
            # catch up first so its history covers everything this client saw.
            return await self._call("GetFlow", request, timeout=timeout)
        return await self._call("GetFlow", request, version_of=reply_version, timeout=timeout)

    async def list_nodes(
        self, *, timeout: float | None = None, consistency: int | None = None,
        only: str | None = None,
    ) -> pb.ListNodesReply:
        """The catalog with each node's state (``only``: exactly that replica's answer,
        serializable unless ``consistency`` says otherwise: its own soft state)."""
        if only is not None:
            request = pb.ListNodesRequest(consistency=self._consistency(
                pb.SERIALIZABLE if consistency is None else consistency))
            return await self._call("ListNodes", request, timeout=timeout, only=only)
        return await self._call(
            "ListNodes", pb.ListNodesRequest(consistency=self._consistency(consistency)),
            version_of=lambda r: int(r.flow_version), timeout=timeout,
        )

    async def cluster_status(
        self, address: str | None = None, *, timeout: float | None = None,
        consistency: int | None = None,
    ) -> pb.ClusterStatusReply:
        """Status as one replica sees it. Without ``address``: any replica not behind this
        client, and the client learns the leader and the replicas' gRPC addresses. With
        ``address``: exactly that replica, whatever its version (diagnostics; serializable
        unless ``consistency`` says otherwise: a cut-off replica still answers)."""
        if address is not None and consistency is None:
            consistency = pb.SERIALIZABLE
        request = pb.ClusterStatusRequest(consistency=self._consistency(consistency))
        if address is not None:
            return await self._call("ClusterStatus", request, timeout=timeout, only=address)
        reply = await self._call(
            "ClusterStatus", request,
            version_of=lambda r: int(r.flow_version), timeout=timeout,
        )
        self._learn(reply.replicas, reply.leader_grpc)
        return reply

    async def list_members(self, *, timeout: float | None = None) -> pb.MembersReply:
        reply = await self._call("ListMembers", pb.ClusterStatusRequest(), timeout=timeout)
        self._learn(reply.replicas)
        return reply

    async def add_member(
        self, raft_address: str, grpc_address: str = "", *, timeout: float | None = None
    ) -> pb.MembersReply:
        request = pb.MemberRequest(raft_address=raft_address, grpc_address=grpc_address)
        return await self._call("AddMember", request, timeout=timeout)

    async def remove_member(
        self, raft_address: str, grpc_address: str = "", *, timeout: float | None = None
    ) -> pb.MembersReply:
        request = pb.MemberRequest(raft_address=raft_address, grpc_address=grpc_address)
        return await self._call("RemoveMember", request, timeout=timeout)

    # ------------------------------------------------------------ watch

    async def watch_flow(self, node_id: str | None = None) -> AsyncIterator[pb.GetFlowReply]:
        """Yield the flow (or ``node_id``'s neighbourhood) now and on every change, forever:
        reconnects to another replica on stream failure with backoff, and yields only
        versions newer than the last one yielded (and never older than any seen). After
        ``watch_check_interval`` seconds without an update it asks the replica it follows
        for its status and moves on when that replica is cut off from a quorum or behind
        (a live but partitioned replica would otherwise keep the stream open and silent).
        Raises CoordinatorError only for errors retrying cannot fix (e.g. INVALID_ARGUMENT).

        Watches go to followers first (``_watch_order``: the leader, when known, last), and
        a replica that refuses a watch with a redirect (``fos-redirect-grpc``: over its
        limits, or a leader shedding watch load) is left for the replica it names."""
        last_yielded = -1
        failures = 0
        order = self._watch_order(node_id or "")
        address = order[0]
        while True:
            request = pb.WatchFlowRequest(node_id=node_id or "", min_version=self._floor)
            call = self._stub(address).WatchFlow(request)
            reason = "stream ended"
            stale = False
            reading: asyncio.Future[Any] | None = None
            try:
                while True:
                    if reading is None:
                        reading = asyncio.ensure_future(call.read())
                    done, _ = await asyncio.wait({reading}, timeout=self._watch_check)
                    if not done:
                        problem = await self._replica_problem(address)
                        if problem is None:
                            continue
                        reason = problem
                        break
                    reply, reading = reading.result(), None
                    if reply is grpc.aio.EOF:
                        break
                    version = reply_version(reply)
                    if version <= last_yielded:
                        continue
                    if version < self._floor:
                        # Another call of this client saw a newer version meanwhile. The
                        # replica pushes again only when this view changes, which may be
                        # never: ask anew from the floor instead of waiting for it.
                        reason, stale = f"reply {version} older than {self._floor}", True
                        break
                    last_yielded = version
                    self.observe_version(version)
                    self._preferred = address  # it answers: other calls may go there too
                    failures = 0
                    yield reply
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code in CALLER_ERRORS:
                    raise CoordinatorError(code, details, "WatchFlow") from None
                reason = f"{code.name}: {details}"
                redirect = redirect_hint(exc.trailing_metadata())
                if code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self._prefer_leader(leader_hint(details, exc.trailing_metadata()))
                if redirect and redirect != address:
                    if redirect not in self._addresses:
                        self._addresses.append(redirect)
                    log.debug("watch_redirect", address=address, to=redirect, reason=reason)
                    address = redirect
                    # at once the first time; a ping-pong of redirects still backs off
                    await asyncio.sleep(self._watch_backoff.delay(failures, self._rng) / 4)
                    failures += 1
                    continue
            finally:
                call.cancel()
                if reading is not None:
                    # The cancelled read ends with an error nobody awaits: consume it.
                    reading.add_done_callback(lambda f: f.cancelled() or f.exception())
            log.debug("watch_reconnect", address=address, reason=reason, failures=failures)
            if stale:  # same replica, at once: it answers when it has caught up to the floor
                continue
            order = self._watch_order(node_id or "")
            address = order[(order.index(address) + 1) % len(order)] if address in order \
                else order[0]
            await asyncio.sleep(self._watch_backoff.delay(failures, self._rng))
            failures += 1

    async def _replica_problem(self, address: str) -> str | None:
        """Why the replica a quiet watch follows should be left, or None if it is fine."""
        try:
            status = await self._stub(address).ClusterStatus(
                pb.ClusterStatusRequest(), timeout=min(self._attempt_timeout, 2.0)
            )
        except grpc.aio.AioRpcError as exc:
            return f"status check failed: {exc.code().name}"
        if not status.has_quorum:
            return "replica is cut off from a quorum"
        if status.flow_version < self._floor:
            return f"replica is behind ({status.flow_version} < {self._floor})"
        return None
