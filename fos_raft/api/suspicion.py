"""Confirm or refute a suspected node death by probing its standard gRPC health endpoint.

Runs on the leader. A suspect is marked down only if every try of ``grpc.health.v1.Check``
(service "", short deadline) fails; a refuted suspicion is counted in the replicated state.
Concurrent reports about one suspect share one probe and one outcome.

Dead and slow are told apart. A dead agent's port refuses connections at once: ``tries``
refusals in a row decide quickly (a SIGKILL is confirmed in well under a second). A suspect
whose tries time out may only be slow (a starved machine, a long GC): it is probed on until
``patience`` seconds have passed, and a try that took far longer than its deadline (this
replica was itself not running) does not use up that patience. Measured before this rule:
two live agents marked down during a machine-wide stall of about 5 s.

The answer must come from the suspect itself. After SERVING, the same try asks the agent
who it is (``Agent.Ping`` with no sender: an identity query, no heartbeat): a reply naming
another node, or an older incarnation than the one the suspect last registered or rejoined
with (when this replica served that call: the book is not replicated), or no Agent
service, counts like a refused connection. On a shared host another factory's agent that
took the dead node's port answers health checks too; it must not keep the dead node alive.
With TLS the probe is also mutual TLS and expects the suspect's certificate to carry its
node id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as pb
from fos_raft.replica.core import Replica
from fos_raft.runtime.logging import get_logger
from fos_raft.security.tls import TlsConfig, aio_channel
from fos_raft.state.commands import MarkDown, NoteRefuted

log = get_logger("fos_raft.api.suspicion")
Outcome = pb.ReportSuspectReply.Outcome
STALL_S = 0.5  # a try this much later than its deadline: the prober itself was stalled


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    timeout: float = 0.25  # per try
    tries: int = 3
    interval: float = 0.05  # pause between failed tries (rides out a hiccup)
    patience: float = 5.0  # tries time out (not refused): probe on this long before "down"
    write_timeout: float = 5.0  # committing the verdict


def identity_mismatch(reply: agent_pb2.PingReply, node: str, incarnation: int) -> str:
    """Why ``reply`` is not from ``node`` (at ``incarnation`` or later); "" if it is."""
    if reply.node_id != node:
        return f"answered as node {reply.node_id!r}, not {node!r}"
    if reply.incarnation < incarnation:  # an agent's incarnation only grows (its WAL)
        return f"answered as incarnation {reply.incarnation}, older than {incarnation}"
    return ""


async def _identify(channel: grpc.aio.Channel, node: str, incarnation: int,
                    timeout: float) -> str:
    """"" when the agent behind ``channel`` is ``node`` (at ``incarnation`` or later),
    else why not. Raises AioRpcError for no answer (UNAVAILABLE, DEADLINE_EXCEEDED)."""
    stub = agent_pb2_grpc.AgentStub(channel)
    try:
        reply = await stub.Ping(agent_pb2.PingRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise
        return f"no agent identity ({exc.code().name}: {exc.details()})"
    return identity_mismatch(reply, node, incarnation)


async def probe_health(address: str, settings: ProbeSettings, tls: TlsConfig | None = None,
                       node: str | None = None, incarnation: int = 0) -> bool:
    """True as soon as a health check answers SERVING and, with ``node``, the agent there
    proves to be ``node`` (at ``incarnation`` or a later one, when nonzero). False after
    ``settings.tries`` refused connections or wrong identities in a row (nothing of the
    suspect's listens there any more), or after at least ``settings.tries`` failed tries
    spanning ``settings.patience`` seconds (no answer). With ``tls``, the suspect must
    present a certificate naming ``node`` (a failed handshake is UNAVAILABLE, like a
    refused connection)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.patience
    refused = failed = 0
    last_error = ""
    while True:
        if failed:
            await asyncio.sleep(settings.interval)
        started = loop.time()
        # A fresh channel per try: no reconnect backoff carried over from a failed try.
        async with aio_channel(address, tls, node) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=settings.timeout
                )
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    refused = 0
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    last_error = f"health {status}"
                elif node is None:
                    return True
                else:
                    last_error = await _identify(channel, node, incarnation, settings.timeout)
                    if not last_error:
                        return True
                    refused += 1  # someone else lives there: as good as a refusal
            except grpc.aio.AioRpcError as exc:
                refused = refused + 1 if exc.code() == grpc.StatusCode.UNAVAILABLE else 0
                last_error = f"{exc.code().name}: {exc.details()}"
        failed += 1
        late = loop.time() - started - settings.timeout - STALL_S
        if late > 0:  # this replica did not run meanwhile: its silence is not the suspect's
            deadline += late
        if refused >= settings.tries or (failed >= settings.tries and loop.time() >= deadline):
            log.info("probe found no live suspect", address=address, tries=failed,
                     refused_in_a_row=refused, last_error=last_error,
                     spent_s=round(loop.time() - deadline + settings.patience, 3))
            return False


class SuspicionJudge:
    """Decides ReportSuspect on the leader; one in-flight decision per suspect."""

    def __init__(self, replica: Replica, settings: ProbeSettings | None = None,
                 tls: TlsConfig | None = None) -> None:
        self.replica = replica
        self.settings = settings or ProbeSettings()
        self.tls = tls
        self._inflight: dict[str, asyncio.Task[tuple[int, int]]] = {}
        # node -> the incarnation it last registered or rejoined with through this replica
        self.incarnations: dict[str, int] = {}
        self.probes = 0
        self.reports = 0

    async def judge(self, suspect: str, reporter: str, reason: str) -> tuple[int, int]:
        """(ReportSuspectReply.Outcome, flow version). Raises ModelError / Unavailable."""
        self.reports += 1
        task = self._inflight.get(suspect)
        if task is None:
            task = asyncio.ensure_future(self._decide(suspect, reporter, reason))
            self._inflight[suspect] = task
            task.add_done_callback(lambda _t: self._inflight.pop(suspect, None))
        return await asyncio.shield(task)

    async def _decide(self, suspect: str, reporter: str, reason: str) -> tuple[int, int]:
        entry = self.replica.state.nodes.get(suspect)
        if entry is None or not entry.status.alive:
            return Outcome.ALREADY_DOWN, self.replica.state.version
        self.probes += 1
        incarnation = self.incarnations.get(suspect, 0)
        alive = await probe_health(entry.spec.address, self.settings, self.tls, suspect,
                                   incarnation)
        log.info("probed suspect", suspect=suspect, reporter=reporter, alive=alive,
                 incarnation=incarnation)
        timeout = self.settings.write_timeout
        if alive:
            outcome = await self.replica.submit(NoteRefuted(suspect), timeout)
            return Outcome.REFUTED, outcome.version
        why = f"suspected by {reporter}: {reason}" if reason else f"suspected by {reporter}"
        outcome = await self.replica.submit(MarkDown(suspect, why[:512], suspicion=True), timeout)
        return (Outcome.MARKED_DOWN if outcome.changed else Outcome.ALREADY_DOWN), outcome.version


def outcome_reply(result: tuple[int, int]) -> Any:
    return pb.ReportSuspectReply(outcome=result[0], flow_version=result[1])
