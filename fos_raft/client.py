"""Coordinator client with replica failover (asyncio, grpc.aio).

Used by node agents (one client per agent, for hours), by fosctl and by the experiment
harness. One channel per replica address, created on first use and reused until ``close()``.

Failover: a call goes to the preferred replica (the one that last answered, or the leader
when an UNAVAILABLE error's trailing metadata/message or a ClusterStatus names its gRPC
address), then to the others. UNAVAILABLE, DEADLINE_EXCEEDED and ABORTED move on to the next
replica; after every replica failed once, the client sleeps an exponential backoff with
jitter and starts another round, all within the call's overall deadline (``timeout``), each
attempt bounded by ``attempt_timeout``. Any other status is the caller's problem and is
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

The pure policy (codes, backoff, leader hints, error types) is in ``client_policy``; the
names are re-exported here.

Return types: writes return the new flow version (int); reads return the raw fos_pb
messages (``GetFlowReply``, ``ListNodesReply``, ``ClusterStatusReply``, ``MembersReply``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import grpc.aio
import structlog

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.client_policy import (
    CALL_BACKOFF,
    CALLER_ERRORS,
    DEFAULT_CHANNEL_OPTIONS,
    LEADER_METADATA_KEY,
    RETRYABLE,
    STATE_DEPENDENT,
    WATCH_BACKOFF,
    Backoff,
    CoordinatorError,
    CoordinatorUnavailable,
    leader_hint,
    reply_version,
)
from fos_raft.convert import spec_to_pb
from fos_raft.model import NodeSpec

log = structlog.get_logger("fos_raft.client")

__all__ = [
    "CALLER_ERRORS", "DEFAULT_CHANNEL_OPTIONS", "LEADER_METADATA_KEY", "RETRYABLE",
    "STATE_DEPENDENT", "Backoff", "CoordinatorClient", "CoordinatorError",
    "CoordinatorUnavailable", "leader_hint", "reply_version",
]


class CoordinatorClient:
    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout: float = 5.0,
        attempt_timeout: float | None = None,
        channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
        credentials: grpc.ChannelCredentials | None = None,
        backoff: Backoff = CALL_BACKOFF,
        watch_backoff: Backoff = WATCH_BACKOFF,
        min_version: int = 0,
        watch_check_interval: float = 10.0,
    ) -> None:
        """``addresses``: gRPC host:port of the replicas (order = preference when none is
        known). ``timeout``: overall deadline of one call, all retries included.
        ``attempt_timeout``: deadline of one attempt (default ``timeout / 2``).
        ``min_version``: a flow version the caller already saw (e.g. restored from disk).
        ``watch_check_interval``: silence after which a watch checks its replica's health."""
        unique = list(dict.fromkeys(a.strip() for a in addresses if a.strip()))
        if not unique:
            raise ValueError("CoordinatorClient needs at least one replica address")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._addresses = unique
        self._timeout = timeout
        self._attempt_timeout = attempt_timeout or timeout / 2
        self._options = list(channel_options)
        self._credentials = credentials
        self._backoff = backoff
        self._watch_backoff = watch_backoff
        self._rng = random.Random()
        self._preferred = unique[0]
        self._floor = min_version
        self._watch_check = watch_check_interval
        self._channels: dict[str, tuple[grpc.aio.Channel, pb_grpc.CoordinatorStub]] = {}
        self._closed = False

    # ------------------------------------------------------------ state

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    @property
    def preferred(self) -> str:
        """The replica the next call goes to first."""
        return self._preferred

    @property
    def flow_version(self) -> int:
        """Highest flow version seen: no read returns anything older."""
        return self._floor

    def observe_version(self, version: int) -> None:
        self._floor = max(self._floor, int(version))

    def _order(self) -> list[str]:
        i = self._addresses.index(self._preferred)
        return self._addresses[i:] + self._addresses[:i]

    def _demote(self, address: str) -> None:
        """Stop preferring a replica that failed: the next one in the list goes first."""
        if self._preferred == address and len(self._addresses) > 1:
            i = self._addresses.index(address)
            self._preferred = self._addresses[(i + 1) % len(self._addresses)]

    def _prefer(self, address: str | None) -> bool:
        if address and address in self._addresses:
            self._preferred = address
            return True
        return False

    def _learn(self, replicas: Sequence[pb.ReplicaStatus], leader_grpc: str = "") -> None:
        """Add replicas' gRPC addresses the cluster reports; prefer its leader."""
        for replica in replicas:
            if replica.grpc_address and replica.grpc_address not in self._addresses:
                self._addresses.append(replica.grpc_address)
        self._prefer(leader_grpc)

    def _stub(self, address: str) -> pb_grpc.CoordinatorStub:
        if self._closed:
            raise RuntimeError("CoordinatorClient is closed")
        entry = self._channels.get(address)
        if entry is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, self._options)
            else:
                channel = grpc.aio.insecure_channel(address, self._options)
            entry = (channel, pb_grpc.CoordinatorStub(channel))
            self._channels[address] = entry
        return entry[1]

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close()

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------ the retry loop

    async def _call(
        self,
        method: str,
        request: Any,
        *,
        version_of: Callable[[Any], int] | None = None,
        timeout: float | None = None,
        only: str | None = None,
        sync_node: str | None = None,
    ) -> Any:
        """Send ``request`` with failover; ``version_of`` extracts the reply's flow version
        (replies older than the floor are dropped). ``only``: this replica, no failover.
        ``sync_node``: for writes about that node, a refusal that depends on the replica's
        state (NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS) is trusted only once the
        replica has applied everything this client has seen: otherwise the client makes it
        catch up (GetFlow with min_version) and sends the write there once more. A replica
        checks writes against its own applied state, which may lag the client's last write
        made through another replica."""
        loop = asyncio.get_running_loop()
        total = timeout or self._timeout
        deadline = loop.time() + total
        tried: set[str] = set()
        failures: dict[str, str] = {}  # address -> its last failure, for the final error
        last_code = grpc.StatusCode.UNAVAILABLE
        rounds = 0
        synced: set[str] = set()
        retry_here: str | None = None
        while True:
            if retry_here:
                candidates, retry_here = [retry_here], None
            elif only:
                if only in tried:
                    break  # one replica asked for by name: one attempt, no failover
                candidates = [only]
            else:
                candidates = [a for a in self._order() if a not in tried]
            if not candidates:
                pause = self._backoff.delay(rounds, self._rng)
                if loop.time() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
                rounds += 1
                tried.clear()
                continue
            address = candidates[0]
            tried.add(address)
            remaining = deadline - loop.time()
            if remaining <= 0.005:
                break
            try:
                reply = await getattr(self._stub(address), method)(
                    request, timeout=remaining if only else min(remaining, self._attempt_timeout)
                )
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if (
                    code in STATE_DEPENDENT and sync_node is not None and self._floor > 0
                    and address not in synced
                ):
                    synced.add(address)
                    log.debug("coordinator_refusal_recheck", method=method, address=address,
                              code=code.name, details=details, floor=self._floor)
                    if await self._catch_up(address, sync_node, deadline):
                        retry_here = address
                        continue
                    code, details = grpc.StatusCode.UNAVAILABLE, "could not catch up"
                if code not in RETRYABLE:
                    raise CoordinatorError(code, details, method) from None
                last_code = code
                failures[address] = f"{address}: {code.name}: {details}"
                log.debug("coordinator_failover", method=method, address=address,
                          code=code.name, details=details)
                self._demote(address)
                self._prefer(leader_hint(details, exc.trailing_metadata()))
                continue
            if version_of is not None:
                version = version_of(reply)
                if version < self._floor:
                    failures[address] = (
                        f"{address}: answered version {version} < {self._floor}"
                    )
                    self._demote(address)
                    continue
                self.observe_version(version)
            if not only:
                self._preferred = address
            return reply
        tail = "; ".join(failures.values()) or "no attempt fitted in the deadline"
        raise CoordinatorUnavailable(
            last_code, f"no coordinator replica answered within {total:g} s ({tail})", method
        )

    async def _catch_up(self, address: str, node_id: str, deadline: float) -> bool:
        """Wait until ``address`` has applied this client's floor version (True), or fail."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0.005:
            return False
        request = pb.GetFlowRequest(node_id=node_id, min_version=self._floor)
        try:
            reply = await self._stub(address).GetFlow(
                request, timeout=min(remaining, self._attempt_timeout)
            )
        except grpc.aio.AioRpcError:
            return False
        return reply_version(reply) >= self._floor

    async def _write(
        self, method: str, request: Any, node_id: str, timeout: float | None
    ) -> int:
        reply = await self._call(
            method, request, version_of=lambda r: int(r.flow_version), timeout=timeout,
            sync_node=node_id,
        )
        return int(reply.flow_version)

    # ------------------------------------------------------------ writes

    async def register(self, spec: NodeSpec, *, timeout: float | None = None) -> int:
        """Add a node to the catalog; returns the new flow version."""
        request = pb.RegisterRequest(spec=spec_to_pb(spec))
        return await self._write("Register", request, spec.node_id, timeout)

    async def rejoin(
        self, node_id: str, address: str = "", *, timeout: float | None = None
    ) -> int:
        """Mark a registered node up again (after a restart); empty address keeps the old."""
        request = pb.RejoinRequest(node_id=node_id, address=address)
        return await self._write("Rejoin", request, node_id, timeout)

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

    async def drain(self, node_id: str, *, timeout: float | None = None) -> int:
        return await self._write("Drain", pb.NodeRequest(node_id=node_id), node_id, timeout)

    async def undrain(self, node_id: str, *, timeout: float | None = None) -> int:
        return await self._write("Undrain", pb.NodeRequest(node_id=node_id), node_id, timeout)

    async def decommission(self, node_id: str, *, timeout: float | None = None) -> int:
        return await self._write("Decommission", pb.NodeRequest(node_id=node_id), node_id, timeout)

    # ------------------------------------------------------------ reads

    async def get_flow(
        self, node_id: str | None = None, at_version: int = 0, *, timeout: float | None = None
    ) -> pb.GetFlowReply:
        """The whole flow (``reply.flow``) or one node's neighbourhood
        (``reply.neighbourhood``); ``at_version`` reads a past version from the history."""
        request = pb.GetFlowRequest(
            node_id=node_id or "", at_version=at_version, min_version=self._floor
        )
        if at_version:
            # A historical read is old on purpose; min_version still makes the replica
            # catch up first so its history covers everything this client saw.
            return await self._call("GetFlow", request, timeout=timeout)
        return await self._call("GetFlow", request, version_of=reply_version, timeout=timeout)

    async def list_nodes(self, *, timeout: float | None = None) -> pb.ListNodesReply:
        return await self._call(
            "ListNodes", pb.ListNodesRequest(),
            version_of=lambda r: int(r.flow_version), timeout=timeout,
        )

    async def cluster_status(
        self, address: str | None = None, *, timeout: float | None = None
    ) -> pb.ClusterStatusReply:
        """Status as one replica sees it. Without ``address``: any replica not behind this
        client, and the client learns the leader and the replicas' gRPC addresses. With
        ``address``: exactly that replica, whatever its version (diagnostics)."""
        if address is not None:
            return await self._call(
                "ClusterStatus", pb.ClusterStatusRequest(), timeout=timeout, only=address
            )
        reply = await self._call(
            "ClusterStatus", pb.ClusterStatusRequest(),
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
        Raises CoordinatorError only for errors retrying cannot fix (e.g. INVALID_ARGUMENT)."""
        last_yielded = -1
        failures = 0
        while True:
            address = self._preferred
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
                    self._preferred = address
                    failures = 0
                    yield reply
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code in CALLER_ERRORS:
                    raise CoordinatorError(code, details, "WatchFlow") from None
                reason = f"{code.name}: {details}"
                self._demote(address)
                self._prefer(leader_hint(details, exc.trailing_metadata()))
            finally:
                call.cancel()
                if reading is not None:
                    # The cancelled read ends with an error nobody awaits: consume it.
                    reading.add_done_callback(lambda f: f.cancelled() or f.exception())
            log.debug("watch_reconnect", address=address, reason=reason, failures=failures)
            if stale:  # same replica, at once: it answers when it has caught up to the floor
                continue
            if self._preferred == address:
                self._demote(address)
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
