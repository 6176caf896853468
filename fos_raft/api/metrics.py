"""Prometheus metrics of a replica, read from the live replica at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fos_raft.api.suspicion import SuspicionJudge
from fos_raft.replica.core import Replica


class ReplicaCollector(Collector):
    def __init__(self, replica: Replica, judge: SuspicionJudge, replica_id: str) -> None:
        self.replica = replica
        self.judge = judge
        self.replica_id = replica_id

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
        yield gauge("fos_coordinator_nodes", "Registered nodes", len(state.nodes))
        yield gauge("fos_coordinator_flow_edges", "Edges in the flow", len(state.flow.edges))
        yield counter(
            "fos_coordinator_suspicions_refuted", "Suspicions refuted by probe", state.refuted
        )
        yield counter(
            "fos_coordinator_suspicions_confirmed", "Suspicions confirmed", state.confirmed
        )
        yield counter("fos_coordinator_probes", "Health probes started here", self.judge.probes)
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
