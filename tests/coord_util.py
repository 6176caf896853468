"""Helpers for the multi-process coordinator tests (real fos-coordinator processes)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster

T = TypeVar("T")


@contextlib.contextmanager
def running_cluster(n: int, base: Path, *, replica_flags: dict[int, list[str]] | None = None,
                    **flags: Any) -> Iterator[LocalCluster]:
    """A LocalCluster of ``n`` replicas, started and with a leader; its replicas are stopped
    (by PID) on the way out, even on failure. ``replica_flags``: extra flags per replica."""
    cluster = LocalCluster(n, base, **flags)
    for i, extra in (replica_flags or {}).items():
        cluster.replica_flags[i] = extra
    with cluster:
        cluster.wait_for_leader(timeout=30)
        yield cluster


def spec(
    node_id: str,
    port: int,
    produces: tuple[str, int],
    requires: Sequence[tuple[str, int]] = (),
    capacity: int = 1,
    host: str = "127.0.0.1",
) -> pb.NodeSpec:
    return pb.NodeSpec(
        node_id=node_id,
        address=f"{host}:{port}",
        produces=pb.ItemReq(item=produces[0], qty=produces[1]),
        requires=[pb.ItemReq(item=i, qty=q) for i, q in requires],
        capacity=capacity,
    )


# The paper's window chain, two suppliers per item type.
WINDOW_FACTORY = [
    spec("saw-1", 7201, ("wood", 3)),
    spec("saw-2", 7202, ("wood", 3)),
    spec("glass-1", 7203, ("glass", 2)),
    spec("glass-2", 7204, ("glass", 2)),
    spec("frame-1", 7205, ("frame", 1), [("wood", 3)]),
    spec("frame-2", 7206, ("frame", 1), [("wood", 3)]),
    spec("window-1", 7207, ("window", 1), [("frame", 1), ("glass", 2)]),
    spec("window-2", 7208, ("window", 1), [("frame", 1), ("glass", 2)]),
]


def retry_unavailable(call: Callable[[], T], timeout: float = 15.0) -> T:
    """Call until it does not fail UNAVAILABLE/DEADLINE_EXCEEDED (a leader change)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            retryable = exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            if not retryable or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def register_all(cluster: LocalCluster, index: int, specs: Sequence[pb.NodeSpec]) -> int:
    """Register ``specs`` as their agents would (``from_agent``: alive at once): these tests
    stand in for the agents. An operator's catalog would leave them not-started."""
    version = 0
    for node in specs:
        reply = retry_unavailable(
            lambda node=node: cluster.stub(index).Register(
                pb.RegisterRequest(spec=node, from_agent=True), timeout=5.0
            )
        )
        version = reply.flow_version
    return version


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.05)


class SlowHealth(health_pb2_grpc.HealthServicer):
    """A node's health endpoint that answers SERVING after ``delay`` and counts checks."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.checks = 0

    def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        self.checks += 1
        time.sleep(self.delay)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class IdentityOnly(agent_pb2_grpc.AgentServicer):
    """Answers Ping as ``node_id`` (the suspicion probe asks who answers at the address)."""

    def __init__(self, node_id: str, incarnation: int = 0) -> None:
        self.node_id = node_id
        self.incarnation = incarnation

    def Ping(self, request: Any, context: Any) -> agent_pb2.PingReply:
        return agent_pb2.PingReply(node_id=self.node_id, incarnation=self.incarnation)


def start_health_server(delay: float, node_id: str = "") -> tuple[grpc.Server, SlowHealth, int]:
    """A health endpoint; with ``node_id`` also an Agent whose Ping names that node."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    servicer = SlowHealth(delay)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if node_id:
        agent_pb2_grpc.add_AgentServicer_to_server(IdentityOnly(node_id), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, servicer, port
