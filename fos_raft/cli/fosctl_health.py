"""``fosctl health``: is every endpoint serving, and does the cluster have a leader and a
quorum? Exit 0 only when all of it holds, 1 otherwise; one line per endpoint.

Coordinator replicas (``--coordinators``) are asked grpc.health.v1 and ClusterStatus;
extra endpoints (agents, given as arguments) grpc.health.v1 only. Each endpoint is asked
directly, never through failover: the point is to see each one.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.fosctl_commands import Out
from fos_raft.security.tls import TlsConfig, aio_channel

EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1


@dataclass(slots=True)
class EndpointHealth:
    endpoint: str
    kind: str  # "coordinator" or "agent"
    status: str  # SERVING, NOT_SERVING, UNREACHABLE, ...
    replica_id: str = ""
    leader: str = ""
    has_quorum: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        if self.status != "SERVING":
            return False
        return self.kind != "coordinator" or (bool(self.leader) and self.has_quorum)

    def line(self) -> str:
        text = f"{self.endpoint:<22} {self.kind:<11} {self.status:<12}"
        if self.kind == "coordinator" and not self.error:
            text += (f" {self.replica_id} leader={self.leader or 'none'} "
                     f"quorum={'yes' if self.has_quorum else 'NO'}")
        if self.error:
            text += f" {self.error}"
        return text.rstrip()


async def check_endpoint(address: str, kind: str, tls: TlsConfig | None,
                         timeout: float, server_name: str | None = None) -> EndpointHealth:
    result = EndpointHealth(address, kind, "UNREACHABLE")
    channel = aio_channel(address, tls, server_name=server_name)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        result.status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if kind == "coordinator":
            st = await pb_grpc.CoordinatorStub(channel).ClusterStatus(
                pb.ClusterStatusRequest(), timeout=timeout)
            result.replica_id, result.leader = st.replica_id, st.leader
            result.has_quorum = st.has_quorum
    except grpc.aio.AioRpcError as exc:
        if result.status == "UNREACHABLE" or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            # the whole reason, on one line: its end ("... certificate verify failed",
            # "... Connection refused") is what an operator acts on
            result.error = f"{exc.code().name}: {' '.join((exc.details() or '').split())}"
    finally:
        await channel.close()
    return result


async def check_all(coordinators: list[str], agents: list[str], tls: TlsConfig | None,
                    timeout: float) -> list[EndpointHealth]:
    checks = [check_endpoint(a, "coordinator", tls, timeout) for a in coordinators]
    # an agent's certificate names its node, not the coordinator: skip the name check by
    # asking for the name the caller gives as NODE@HOST:PORT
    for agent in agents:
        name, _, address = agent.rpartition("@")
        checks.append(check_endpoint(address, "agent", tls, timeout, name or None))
    return list(await asyncio.gather(*checks))


def summary_ok(results: list[EndpointHealth]) -> bool:
    """All serve, and at least one coordinator was asked and they agree on a leader."""
    coordinators = [r for r in results if r.kind == "coordinator"]
    leaders = {r.leader for r in coordinators}
    return (bool(coordinators) and all(r.ok for r in results) and len(leaders) == 1)


async def cmd_health(coordinators: list[str], args: argparse.Namespace,
                     tls: TlsConfig | None, out: Out) -> int:
    results = await check_all(coordinators, list(args.agents), tls, args.timeout)
    healthy = summary_ok(results)
    if out.as_json:
        out.json({"healthy": healthy,
                  "endpoints": [asdict(r) | {"ok": r.ok} for r in results]})
    else:
        for r in results:
            out.line(r.line())
    return EXIT_HEALTHY if healthy else EXIT_UNHEALTHY
