"""What fos-sim reads from the running system: agents' Stats() and the coordinator's view.

`StatsPoller` keeps one gRPC channel per agent address (short reconnect backoff, so a
restarted agent is read again within a second) and tolerates dead agents. `ClusterView`
holds the coordinator's latest liveness, flow and counters from ListNodes / GetFlow /
ClusterStatus. Neither decides anything; the runner feeds their readings to the pure
bookkeeping in bench.sim.metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
import grpc.aio

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as cpb
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class StatsPoller:
    def __init__(self, timeout_s: float = 0.8) -> None:
        self.timeout_s = timeout_s
        self._channels: dict[str, tuple[grpc.aio.Channel, agent_pb2_grpc.AgentStub]] = {}

    def _stub(self, address: str) -> agent_pb2_grpc.AgentStub:
        if address not in self._channels:
            keep_grpc_aio_running()
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = (channel, agent_pb2_grpc.AgentStub(channel))
        return self._channels[address][1]

    async def stats(self, address: str) -> agent_pb2.StatsReply | None:
        """The agent's Stats(), or None when it does not answer in time."""
        try:
            return await self._stub(address).Stats(agent_pb2.StatsRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError:
            return None

    async def stats_many(
        self, addresses: Iterable[tuple[str, str]]
    ) -> dict[str, agent_pb2.StatsReply | None]:
        """``addresses``: (node, address) pairs; returns node -> reply or None."""
        pairs = list(addresses)
        replies = await asyncio.gather(*(self.stats(a) for _, a in pairs))
        return {node: reply for (node, _), reply in zip(pairs, replies, strict=True)}

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close(grace=None)
        self._channels.clear()


@dataclass
class ClusterView:
    """The coordinator's latest answers (empty until the first successful poll)."""

    flow_version: int = 0
    leader: str = ""
    alive: dict[str, bool] = field(default_factory=dict)
    drained: dict[str, bool] = field(default_factory=dict)
    in_flow: dict[str, bool] = field(default_factory=dict)
    ever_in_flow: set[str] = field(default_factory=set)
    edges: tuple[cpb.Edge, ...] = ()
    edges_version: int = -1
    refuted_suspicions: int = 0
    confirmed_suspicions: int = 0
    errors: int = 0

    def consumers_of(self, supplier: str) -> dict[str, str]:
        """consumer -> item for the primary (rank 0) edges ``supplier`` serves now."""
        return {e.consumer: e.item for e in self.edges if e.supplier == supplier and e.rank == 0}

    async def poll(self, client: CoordinatorClient, timeout_s: float = 2.0) -> bool:
        """One round of ListNodes + ClusterStatus (+ GetFlow when the version moved)."""
        try:
            nodes = await client.list_nodes(timeout=timeout_s)
            status = await client.cluster_status(timeout=timeout_s)
            version = max(int(nodes.flow_version), int(status.flow_version))
            if version != self.edges_version:
                flow = await client.get_flow(timeout=timeout_s)
                self.edges = tuple(flow.flow.edges)
                self.edges_version = int(flow.flow.version)
        except CoordinatorError:
            self.errors += 1
            return False
        self.flow_version = max(self.flow_version, version)
        self.leader = status.leader_grpc or status.leader
        self.refuted_suspicions = int(status.refuted_suspicions)
        self.confirmed_suspicions = int(status.confirmed_suspicions)
        for info in nodes.nodes:
            node = info.spec.node_id
            self.alive[node] = info.alive
            self.drained[node] = info.drained
            self.in_flow[node] = info.in_flow
            if info.in_flow:
                self.ever_in_flow.add(node)
        return True
