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
    polls: int = 0  # rounds whose ListNodes and ClusterStatus both answered
    errors: int = 0  # calls that did not answer in time

    def consumers_of(self, supplier: str) -> dict[str, str]:
        """consumer -> item for the primary (rank 0) edges ``supplier`` serves now."""
        return {e.consumer: e.item for e in self.edges if e.supplier == supplier and e.rank == 0}

    async def poll(self, client: CoordinatorClient, timeout_s: float = 5.0) -> bool:
        """One round of ListNodes + ClusterStatus (+ GetFlow when the version moved). Each
        answer is kept as it comes (a saturated coordinator that answers ListNodes but not
        GetFlow in time still updates liveness); True when the first two answered."""
        try:
            nodes = await client.list_nodes(timeout=timeout_s)
        except CoordinatorError:
            self.errors += 1
            return False
        self.flow_version = max(self.flow_version, int(nodes.flow_version))
        for info in nodes.nodes:
            node = info.spec.node_id
            self.alive[node] = info.alive
            self.drained[node] = info.drained
            self.in_flow[node] = info.in_flow
            if info.in_flow:
                self.ever_in_flow.add(node)
        try:
            status = await client.cluster_status(timeout=timeout_s)
        except CoordinatorError:
            self.errors += 1
            return False
        self.polls += 1
        self.flow_version = max(self.flow_version, int(status.flow_version))
        self.leader = status.leader_grpc or status.leader
        self.refuted_suspicions = int(status.refuted_suspicions)
        self.confirmed_suspicions = int(status.confirmed_suspicions)
        if self.flow_version != self.edges_version:
            try:
                flow = await client.get_flow(timeout=timeout_s)
            except CoordinatorError:
                self.errors += 1  # the edges stay as they were; liveness is current
            else:
                self.edges = tuple(flow.flow.edges)
                self.edges_version = int(flow.flow.version)
        return True


def cluster_view_notes(polls: int, errors: int) -> list[str]:
    """What the report must say when fos-sim's view of the coordinators had gaps: its
    death figures come from that view."""
    if polls == 0:
        return ["fos-sim never read the coordinators' view (every ListNodes or ClusterStatus "
                "went unanswered in time): the death figures are unverified"]
    if errors:
        return [f"{errors} of fos-sim's coordinator calls went unanswered in time ({polls} "
                "polls answered): a node down and up between answered polls counts as "
                "unclassified"]
    return []
