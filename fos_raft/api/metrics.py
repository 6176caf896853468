"""Prometheus metrics of a replica, read from the live replica at scrape time.

Gauges and counters are computed at scrape time from the replica (nothing on the hot
path); the two latency histograms (`LatencyHistograms`) cost one ``observe`` per write
and per unary RPC. Names follow Prometheus conventions: base units, ``_seconds``,
``_total``. Per node: ``fos_node_up{node}`` from the replicated liveness and
``fos_node_seconds_since_last_receipt{node,item}`` from `ReceiptWatcher`;
``fos_node_drained{node}``, ``fos_node_in_flow{node}`` and
``fos_flow_edge{supplier,consumer,item,rank}`` from the replicated state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from fos_raft.api.health import ReplicaHealth
from fos_raft.api.suspicion import SuspicionJudge
from fos_raft.replica.core import Replica


class ReplicaCollector(Collector):
    def __init__(self, replica: Replica, judge: SuspicionJudge, replica_id: str,
                 health: ReplicaHealth | None = None,
                 receipts: Callable[[], dict[tuple[str, str], float]] | None = None) -> None:
        """``receipts``: (node, item) -> unix time of the node's last receipt of item."""
        self.replica = replica
        self.judge = judge
        self.replica_id = replica_id
        self.health = health
        self.receipts = receipts

    def collect(self) -> Iterator[Any]:
        replica = self.replica
        labels = ["replica"]
        value = [self.replica_id]
        state = replica.state
        raft = replica.raft_status()

        def gauge(name: str, doc: str, v: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(value, v)
            return g

        def counter(name: str, doc: str, v: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(value, v)
            return c

        writes = CounterMetricFamily(
            "fos_coordinator_writes", "Writes submitted here", labels=[*labels, "outcome"]
        )
        for outcome, count in sorted(replica.writes.items()):
            writes.add_metric([*value, outcome], count)
        yield writes
        yield gauge("fos_coordinator_flow_version", "Applied flow version", state.version)
        yield gauge("fos_coordinator_applied_index", "Raft applied index", raft["last_applied"])
        yield gauge("fos_coordinator_commit_index", "Raft commit index", raft["commit_idx"])
        yield gauge("fos_coordinator_term", "Raft current term", raft["raft_term"])
        yield gauge("fos_coordinator_is_leader", "1 on the leader", 1 if replica.is_leader else 0)
        yield gauge("fos_coordinator_has_leader", "1 while this replica knows a leader",
                    1 if replica.leader else 0)
        yield gauge("fos_coordinator_has_quorum", "1 while this replica reaches a majority",
                    1 if replica.has_quorum else 0)
        members = replica.members()
        yield gauge("fos_coordinator_members", "Voting members, this one included", len(members))
        yield gauge("fos_coordinator_members_connected", "Members this replica is connected to",
                    sum(1 for _, connected in members if connected))
        if self.health is not None:
            yield gauge("fos_coordinator_serving", "1 while grpc.health.v1 says SERVING",
                        1 if self.health.last.serving else 0)
            yield counter("fos_coordinator_leader_changes",
                          "Times a new leader became known here", self.health.leader_changes)
        up = GaugeMetricFamily("fos_node_up", "1 while the node is alive in the catalog",
                               labels=[*labels, "node"])
        for node_id, entry in sorted(state.nodes.items()):
            up.add_metric([*value, node_id], 1 if entry.status.alive else 0)
        yield up
        # what the alert rules need to tell a fault from a plan: a drained node, or one the
        # flow leaves out, receives nothing by design; an edge says whose stall is whose
        drained = GaugeMetricFamily("fos_node_drained", "1 while the node is drained",
                                    labels=[*labels, "node"])
        in_flow = GaugeMetricFamily("fos_node_in_flow", "1 while the node is in the flow",
                                    labels=[*labels, "node"])
        for node_id, entry in sorted(state.nodes.items()):
            drained.add_metric([*value, node_id], 1 if entry.status.drained else 0)
            in_flow.add_metric([*value, node_id], 1 if node_id in state.flow.members else 0)
        yield drained
        yield in_flow
        edges = GaugeMetricFamily("fos_flow_edge", "1 per flow edge (rank 0: primary)",
                                  labels=[*labels, "supplier", "consumer", "item", "rank"])
        for edge in state.flow.edges:
            edges.add_metric([*value, edge.supplier, edge.consumer, edge.item, str(edge.rank)],
                             1)
        yield edges
        if self.receipts is not None:
            since = GaugeMetricFamily(
                "fos_node_seconds_since_last_receipt",
                "Seconds since the node last received a batch of item (polled from agents)",
                labels=[*labels, "node", "item"])
            now = time.time()
            for (node_id, item), at in sorted(self.receipts().items()):
                since.add_metric([*value, node_id, item], max(0.0, now - at))
            yield since
        yield gauge("fos_coordinator_nodes", "Registered nodes", len(state.nodes))
        yield gauge("fos_coordinator_flow_edges", "Edges in the flow", len(state.flow.edges))
        yield counter(
            "fos_coordinator_suspicions_refuted", "Suspicions refuted by probe", state.refuted
        )
        yield counter(
            "fos_coordinator_suspicions_confirmed", "Suspicions confirmed", state.confirmed
        )
        yield counter("fos_coordinator_probes", "Health probes started here", self.judge.probes)
        rejected = CounterMetricFamily(
            "fos_raft_rejected_frames",
            "Frames refused on the Raft port (connection closed), by reason",
            labels=[*labels, "reason"],
        )
        for reason, count in sorted(replica.wire_guard.snapshot().items()):
            rejected.add_metric([*value, reason], count)
        yield rejected
        journal = replica.journal
        if journal is not None:
            stats = journal.stats()
            yield counter("fos_journal_fsyncs", "Journal fsyncs", stats["fsyncs"])
            yield counter("fos_journal_entries_added", "Entries written", stats["entries_added"])
            yield counter(
                "fos_journal_unsynced_sends",
                "Raft messages sent while log writes were unsynced (must stay 0)",
                stats["unsynced_sends"],
            )


# Raft commits take ~1 ms on an idle loopback cluster and seconds during an election.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class LatencyHistograms:
    """The replica's histograms, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commit = Histogram(
            "fos_coordinator_raft_commit_seconds",
            "Write submitted here until committed by a quorum and applied",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.journal_fsync = Histogram(
            "fos_journal_fsync_seconds", "One fsync of the Raft journal (LMDB sync)",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.rpc = Histogram(
            "fos_coordinator_rpc_seconds", "Unary gRPC call handling time by method",
            labelnames=["method"], buckets=LATENCY_BUCKETS, registry=registry)


class RpcTimer(grpc.aio.ServerInterceptor):
    """Times unary calls into ``histogram`` (streams are long-lived: not timed). The timed
    handler is built once per method and reused: the per-call cost is one await of the
    continuation, one dict lookup and one observe."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._timed: dict[str, tuple[Any, Any]] = {}  # method -> (handler, timed handler)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        known = self._timed.get(details.method)
        if known is not None and known[0] is handler:
            return known[1]
        inner = handler.unary_unary
        child = self.histogram.labels(details.method.rpartition("/")[2])

        async def timed(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                child.observe(time.perf_counter() - started)

        wrapped = grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
        self._timed[details.method] = (handler, wrapped)
        return wrapped
