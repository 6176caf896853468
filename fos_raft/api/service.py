"""The gRPC face of a replica: fos.v1.Coordinator, grpc.health.v1 and reflection (grpc.aio).

Every RPC is served by every replica. Writes are validated here (fast error) and replicated
through the Raft leader (pysyncobj forwards a follower's command to the leader). ModelError
maps to a gRPC status by its ErrorCode; no leader until the deadline -> UNAVAILABLE naming
the last known leader. ReportSuspect is decided on the leader: a follower forwards it there.

With TLS (docs/security.md) every client presents a certificate, and node-scoped writes are
authorised by its name (fos_raft.security.tls.Authority): node X's Register/UpdateSpec/Rejoin/Leave/
Drain/Undrain need the name X or an admin name, ReportSuspect needs reporter == the caller's name,
Decommission and membership changes need an admin name; PERMISSION_DENIED otherwise.
Reads need only a valid certificate.

Status codes beyond the model's (docs/coordinator.md): ReportSuspect from a reporter that
is not a registered node is FAILED_PRECONDITION (the suspect's neighbours report; a replica
forwarding a report keeps its reporter); GetFlow with ``at_version`` more than
AT_VERSION_MARGIN beyond this replica's applied version is OUT_OF_RANGE at once (within
the margin it waits, as a lagging follower may yet apply it); RemoveMember of an address
that is neither a member nor a remembered replica is NOT_FOUND.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.api.backup import snapshot_reply
from fos_raft.api.convert import spec_from_pb
from fos_raft.api.production import ProductionBook, annotate
from fos_raft.api.production_rpc import ProductionRpcs
from fos_raft.api.reads import read_state
from fos_raft.api.suspicion import ProbeSettings, SuspicionJudge, outcome_reply
from fos_raft.api.views import flow_to_pb, neighbourhood_to_pb, node_infos
from fos_raft.api.watch import WatchHub, WatchLimits
from fos_raft.model import STOPPED_REASON, ErrorCode, ModelError, check_address, check_id
from fos_raft.replica.core import Replica, Unavailable
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running
from fos_raft.runtime.logging import get_logger
from fos_raft.security.tls import (
    DEFAULT_ADMIN_NAMES,
    Authority,
    TlsConfig,
    add_port,
    aio_channel,
    peer_names,
)
from fos_raft.state.commands import (
    Command,
    Decommission,
    Drain,
    MarkDown,
    MarkUp,
    Register,
    Undrain,
    UpdateSpec,
)
from fos_raft.state.core import CoordinatorState

log = get_logger("fos_raft.api.service")

STATUS_OF = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}
FORWARDED = "fos-forwarded"
LEADER_METADATA_KEY = "fos-leader-grpc"  # on UNAVAILABLE: where the leader was last seen
# A follower lags the leader by the entries in flight to it: a version this far beyond its
# applied one was never written (a client bug or a version from another cluster).
AT_VERSION_MARGIN = 1000


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    default_timeout: float = 5.0  # when the client sets no deadline
    deadline_margin: float = 0.05  # answer UNAVAILABLE this long before the client gives up


class CoordinatorService(ProductionRpcs, pb_grpc.CoordinatorServicer):
    def __init__(
        self,
        replica: Replica,
        replica_id: str,
        settings: ServiceSettings | None = None,
        probe: ProbeSettings | None = None,
        tls: TlsConfig | None = None,
        admin_names: frozenset[str] = frozenset(DEFAULT_ADMIN_NAMES),
        watch_limits: WatchLimits | None = None,
    ) -> None:
        """``tls``: serve and call with mutual TLS and authorise writes by certificate
        name (``admin_names`` may act for any node); None: plaintext, no authorisation.
        ``watch_limits``: WatchFlow admission (fos_raft.api.watch)."""
        self.replica = replica
        self.replica_id = replica_id
        self.settings = settings or ServiceSettings()
        self.tls = tls
        self.authority = (Authority(frozenset(admin_names), tls.coordinator_name)
                          if tls is not None else None)
        self.judge = SuspicionJudge(replica, probe, tls)
        self.watch = WatchHub(replica, watch_limits)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.health: Any = None  # the grpc.health.v1 servicer, set by start_server
        self.production = ProductionBook()  # soft: contact times, production figures

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    # ---------------------------------------------------------------- helpers

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            return self.settings.default_timeout
        return max(0.0, min(remaining - self.settings.deadline_margin, remaining * 0.95))

    async def _unavailable(self, context: grpc.aio.ServicerContext, message: str) -> None:
        leader_grpc = self.replica.state.replicas.get(self.replica.leader, "")
        metadata = ((LEADER_METADATA_KEY, leader_grpc),) if leader_grpc else ()
        await context.abort(grpc.StatusCode.UNAVAILABLE, message, trailing_metadata=metadata)

    async def _write(self, context: grpc.aio.ServicerContext, command: Command) -> pb.WriteReply:
        try:
            outcome = await self.replica.submit(command, self._timeout(context))
        except ModelError as exc:
            await context.abort(STATUS_OF[exc.code], exc.message)
        except Unavailable as exc:
            await self._unavailable(context, str(exc))
        return pb.WriteReply(flow_version=outcome.version, leader=self.replica.leader)

    async def _wait_version(
        self, context: grpc.aio.ServicerContext, version: int
    ) -> CoordinatorState:
        try:
            return await self.replica.wait_for_version(version, self._timeout(context))
        except Unavailable as exc:
            await self._unavailable(context, str(exc))
            raise  # unreachable: abort raises

    async def _read_state(self, context: Any, consistency: int) -> CoordinatorState:
        """The state a read answers from, per its consistency (fos_raft.api.reads)."""
        try:
            return await read_state(self.replica, consistency, self._timeout(context))
        except Unavailable as exc:
            await self._unavailable(context, str(exc))
            raise  # unreachable: abort raises

    async def _allow_node(self, context: Any, node: str, what: str) -> None:
        """With TLS: abort PERMISSION_DENIED unless the caller may act for ``node``."""
        if self.authority is None:
            return
        refusal = self.authority.node_refusal(peer_names(context), node, what)
        if refusal is not None:
            log.warning("refused", reason=refusal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

    async def _allow_admin(self, context: Any, what: str) -> None:
        if self.authority is None:
            return
        refusal = self.authority.admin_refusal(peer_names(context), what)
        if refusal is not None:
            log.warning("refused", reason=refusal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

    @staticmethod
    async def _check_node_id(context: grpc.aio.ServicerContext, node_id: str) -> None:
        try:
            check_id("node id", node_id)
        except ModelError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)

    # ---------------------------------------------------------------- writes

    def _note_incarnation(self, node_id: str, incarnation: int) -> None:
        """The suspicion probe then expects ``node_id`` at this incarnation or a later one
        (replica-local: the replica that served the call knows it)."""
        if incarnation:
            self.judge.incarnations[node_id] = incarnation

    async def Register(self, request: pb.RegisterRequest, context: Any) -> pb.WriteReply:
        await self._allow_node(context, request.spec.node_id, "register")
        # an agent's own Register (not an operator's catalog) makes the node alive at once
        from_agent = request.from_agent or request.incarnation != 0
        reply = await self._write(context, Register(spec_from_pb(request.spec), from_agent))
        self._note_incarnation(request.spec.node_id, request.incarnation)
        if from_agent:
            self.production.heard(request.spec.node_id)
        return reply

    async def UpdateSpec(self, request: pb.UpdateSpecRequest, context: Any) -> pb.WriteReply:
        await self._allow_node(context, request.spec.node_id, "update the spec of")
        expected = request.expected_version if request.HasField("expected_version") else None
        return await self._write(context, UpdateSpec(spec_from_pb(request.spec), expected))

    async def Rejoin(self, request: pb.RejoinRequest, context: Any) -> pb.WriteReply:
        await self._allow_node(context, request.node_id, "rejoin")
        reply = await self._write(context, MarkUp(request.node_id, request.address))
        self._note_incarnation(request.node_id, request.incarnation)
        self.production.heard(request.node_id)
        return reply

    async def Leave(self, request: pb.LeaveRequest, context: Any) -> pb.WriteReply:
        """A clean stop: the node is down at once, its consumers rerouted without a
        suspicion. A Leave older than the incarnation this replica last saw register or
        rejoin is from an agent since restarted: it changes nothing."""
        await self._allow_node(context, request.node_id, "leave as")
        known = self.judge.incarnations.get(request.node_id, 0)
        if request.incarnation and known > request.incarnation:
            return pb.WriteReply(flow_version=self.replica.state.version,
                                 leader=self.replica.leader)
        return await self._write(context, MarkDown(request.node_id, STOPPED_REASON))

    async def Drain(self, request: pb.NodeRequest, context: Any) -> pb.WriteReply:
        await self._allow_node(context, request.node_id, "drain")
        return await self._write(context, Drain(request.node_id))

    async def Undrain(self, request: pb.NodeRequest, context: Any) -> pb.WriteReply:
        await self._allow_node(context, request.node_id, "undrain")
        return await self._write(context, Undrain(request.node_id))

    async def Decommission(self, request: pb.NodeRequest, context: Any) -> pb.WriteReply:
        await self._allow_admin(context, f"decommission node {request.node_id!r}")
        reply = await self._write(context, Decommission(request.node_id))
        self.judge.incarnations.pop(request.node_id, None)
        return reply

    # ---------------------------------------------------------------- suspicion

    async def ReportSuspect(
        self, request: pb.ReportSuspectRequest, context: Any
    ) -> pb.ReportSuspectReply:
        await self._check_node_id(context, request.suspect)
        if request.reporter:
            await self._check_node_id(context, request.reporter)
        await self._allow_node(context, request.reporter, "report suspects as")
        entry = self.replica.state.nodes.get(request.suspect)
        if entry is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"node {request.suspect!r} is not registered"
            )
        if request.reporter not in self.replica.state.nodes:
            # only a registered node's neighbours watch it: anyone else asking for a probe
            # is a misconfigured or foreign agent (each report costs a probe)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"reporter {request.reporter!r} is not a registered node",
            )
        if not entry.status.alive:
            return pb.ReportSuspectReply(
                outcome=pb.ReportSuspectReply.ALREADY_DOWN, flow_version=self.replica.state.version
            )
        forwarded = any(k == FORWARDED for k, _ in (context.invocation_metadata() or ()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout(context)
        last_error = "no leader known"
        while loop.time() < deadline:
            try:
                if self.replica.is_leader:
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        result = await self.judge.judge(
                            request.suspect, request.reporter, request.reason[:256])
                    return outcome_reply(result)
                if forwarded:
                    break  # the sender retries; never forward twice
                leader_grpc = self.replica.state.replicas.get(self.replica.leader, "")
                if leader_grpc:
                    return await self._forward_suspect(request, leader_grpc, deadline - loop.time())
            except ModelError as exc:
                await context.abort(STATUS_OF[exc.code], exc.message)
            except (Unavailable, TimeoutError, grpc.aio.AioRpcError) as exc:
                last_error = str(exc) or type(exc).__name__
            await asyncio.sleep(0.05)
        await self._unavailable(
            context,
            f"no leader decided the suspicion in time ({last_error}); {self.replica.leader_hint()}",
        )

    async def _forward_suspect(
        self, request: pb.ReportSuspectRequest, address: str, timeout: float
    ) -> pb.ReportSuspectReply:
        channel = self._channels.get(address)
        if channel is None:
            channel = aio_channel(address, self.tls)
            self._channels[address] = channel
        stub = pb_grpc.CoordinatorStub(channel)
        try:
            return await stub.ReportSuspect(
                request, timeout=max(0.01, timeout), metadata=((FORWARDED, "1"),)
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            for model_code, status in STATUS_OF.items():
                if code == status:
                    raise ModelError(model_code, exc.details() or "") from exc
            raise

    # ---------------------------------------------------------------- reads

    async def GetFlow(self, request: pb.GetFlowRequest, context: Any) -> pb.GetFlowReply:
        if request.node_id:
            await self._check_node_id(context, request.node_id)
        current = await self._read_state(context, request.consistency)
        if request.at_version > current.version + AT_VERSION_MARGIN:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"flow version {request.at_version} is beyond this replica's "
                f"{current.version} by more than {AT_VERSION_MARGIN}: it was never written",
            )
        state = await self._wait_version(context, max(request.min_version, request.at_version))
        return await self._flow_reply(context, state, request.node_id, request.at_version)

    async def _flow_reply(
        self, context: Any, state: CoordinatorState, node_id: str, at_version: int = 0
    ) -> pb.GetFlowReply:
        plan, version = state.flow, state.version
        if at_version:
            found = state.flow_at(at_version)
            if found is None:
                kept = f"{state.history[0][0]}..{state.history[-1][0]}"
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"flow version {at_version} is not in the history (kept: {kept})",
                )
            plan, version = found, at_version
        if node_id:
            hood = neighbourhood_to_pb(state, node_id, None if not at_version else plan, version)
            return pb.GetFlowReply(neighbourhood=hood)
        return pb.GetFlowReply(flow=flow_to_pb(plan, version))

    async def WatchFlow(
        self, request: pb.WatchFlowRequest, context: Any
    ) -> AsyncIterator[pb.GetFlowReply]:
        # served by the hub (fos_raft.api.watch): one reply per changed neighbourhood
        if request.node_id:
            await self._check_node_id(context, request.node_id)
        async for reply in self.watch.serve(request, context):
            yield reply

    async def ListNodes(self, request: pb.ListNodesRequest, context: Any) -> pb.ListNodesReply:
        state = await self._read_state(context, request.consistency)
        infos = node_infos(state)
        annotate(infos, state, self.production)
        return pb.ListNodesReply(flow_version=state.version, nodes=infos)

    async def ClusterStatus(
        self, request: pb.ClusterStatusRequest, context: Any
    ) -> pb.ClusterStatusReply:
        replica = self.replica
        state = await self._read_state(context, request.consistency)
        raft = replica.raft_status()
        leader = replica.leader
        statuses = [entry.status for entry in state.nodes.values()]
        return pb.ClusterStatusReply(
            replica_id=self.replica_id,
            raft_address=replica.raft_address,
            grpc_address=replica.grpc_address,
            leader=leader,
            leader_grpc=state.replicas.get(leader, ""),
            term=raft["raft_term"],
            commit_index=raft["commit_idx"],
            applied_index=raft["last_applied"],
            flow_version=state.version,
            nodes_total=len(statuses),
            nodes_alive=sum(1 for s in statuses if s.alive),
            nodes_in_flow=len(state.flow.members),
            nodes_drained=sum(1 for s in statuses if s.drained),
            edges=len(state.flow.edges),
            refuted_suspicions=state.refuted,
            confirmed_suspicions=state.confirmed,
            state_digest=state.digest,
            replicas=self._replica_statuses(state, leader),
            has_quorum=bool(raft["has_quorum"]),
        )

    def _replica_statuses(self, state: CoordinatorState, leader: str) -> list[pb.ReplicaStatus]:
        return [
            pb.ReplicaStatus(
                raft_address=address,
                grpc_address=state.replicas.get(address, ""),
                is_self=address == self.replica.raft_address,
                is_leader=address == leader,
                connected=connected,
            )
            for address, connected in self.replica.members()
        ]

    # ---------------------------------------------------------------- membership

    async def ListMembers(self, request: Any, context: Any) -> pb.MembersReply:
        state = self.replica.state
        return pb.MembersReply(replicas=self._replica_statuses(state, self.replica.leader))

    async def _member_change(self, request: pb.MemberRequest, context: Any, add: bool) -> Any:
        await self._allow_admin(context, "change the coordinator's membership")
        # checked before pysyncobj sees it: the membership change happens before the
        # replicated AnnounceReplica would refuse a bad address
        for kind, address in (("raft", request.raft_address), ("grpc", request.grpc_address)):
            if address or kind == "raft":
                try:
                    check_address(f"{kind} address", address)
                except ModelError as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        if not add and request.raft_address not in {
            address for address, _ in self.replica.members()
        } | set(self.replica.state.replicas):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"{request.raft_address!r} is not a member of this cluster",
            )
        if not add and request.raft_address == self.replica.raft_address:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "a replica cannot remove itself; ask another member",
            )
        try:
            if add:
                await self.replica.add_member(
                    request.raft_address, request.grpc_address, self._timeout(context)
                )
            else:
                await self.replica.remove_member(request.raft_address, self._timeout(context))
        except ModelError as exc:
            await context.abort(STATUS_OF[exc.code], exc.message)
        except Unavailable as exc:
            await self._unavailable(context, str(exc))
        return await self.ListMembers(request, context)

    async def AddMember(self, request: pb.MemberRequest, context: Any) -> pb.MembersReply:
        return await self._member_change(request, context, add=True)

    async def RemoveMember(self, request: pb.MemberRequest, context: Any) -> pb.MembersReply:
        return await self._member_change(request, context, add=False)

    async def Snapshot(self, request: pb.SnapshotRequest, context: Any) -> pb.SnapshotReply:
        await self._allow_admin(context, "take a snapshot")
        await self._wait_version(context, request.min_version)
        return snapshot_reply(self.replica, self.replica_id)  # fos_raft.api.backup


async def start_server(
    service: CoordinatorService, address: str, interceptors: tuple[Any, ...] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> tuple[grpc.aio.Server, int]:
    """Serve Coordinator + health + reflection on ``address`` (port 0 picks one); mutual
    TLS when the service has a TlsConfig. ``interceptors``: e.g. the metrics' RpcTimer and
    the per-client RpcLimiter; ``options``: grpc core limits (fos_raft.runtime.limits)."""
    # No SO_REUSEPORT: a port another process holds must fail to bind, not be shared.
    keep_grpc_aio_running()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options],
                             interceptors=interceptors)
    pb_grpc.add_CoordinatorServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service.health = health_servicer  # fos_raft.api.health keeps it truthful once Raft runs
    names = (
        pb.DESCRIPTOR.services_by_name["Coordinator"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = add_port(server, address, service.tls)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC address {address}")
    await server.start()
    # NOT_SERVING until fos_raft.api.health has seen a leader and a quorum
    for name in ("", names[0]):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, port
