"""The agent's counters (the paper's metric names), in-process and for Prometheus.

Counters are a plain dict updated on the hot path (no locks: one event loop per agent);
Prometheus reads them at scrape time through a custom collector, so several agents in one
process each keep their own numbers and one registry can serve all of them with a ``node``
label (fos_agent.host).

Names (readable as ``agent.metrics["successful_cycles"]`` and in the Stats RPC's counters):

- ``successful_cycles``, ``skipped_cycles``, ``total_cycles``: manufacture cycles of the
  stage loop (a cycle is skipped when an input is missing or the output buffer is full).
- ``cycles_waiting_for:<item>``, ``cycles_blocked``: the simulated stage's skipped cycles
  by cause: waiting for a batch of that input; output buffer full, nobody buying (blocked
  downstream). Absent until the first one; skipped cycles in neither failed their step
  or were lost to a stalled event loop.
- ``batches_produced``, ``batches_consumed``: outputs queued / inputs consumed by cycles.
- ``batches_delivered``: outbound batches that went DELIVERED (the consumer confirmed).
- ``batches_received``: inbound batches recorded here (first time only).
- ``batches_scrapped``: inputs consumed by a scrap (no output; counted in
  ``batches_consumed`` too), and ``batches_scrapped.<item>`` per input item;
  ``scrapped_cycles``: scrap calls of the program (each scraps one or more inputs).
- ``batches_requested``: RequestBatch calls this node made as a consumer.
- ``planned_requests``: RequestBatch calls this node made to a supplier other than its
  first one because the first-article plan said so (fos_agent.runtime.fillplan).
- ``messages_sent.<Kind>``, ``messages_received.<Kind>``: peer RPCs by kind (RequestBatch,
  WaitingForBatch, DeliveryConfirmed, OfferBatch, Ping); ``sent`` counts attempts.
- ``heartbeats``: explicit Pings this node sent to idle neighbours (successful RPCs of any
  kind also count as liveness evidence but are not heartbeats).
- ``wal_recovered_batches``: batch records found unfinished in the WAL at start (outbound
  QUEUED/IN_TRANSIT, inbound IN_TRANSIT/QUEUED): what recovery resumed.
- ``wal_ghost_batches``: batches this node first learned of through a supplier's re-offer
  from its WAL (OfferBatch of a batch unknown here): trades whose BatchSent reply was lost
  (a crash, a timeout) and that the WAL-driven retry completed instead of losing.
- ``flow_queries``: coordinator reads (GetFlow, ListNodes) plus flow updates received on
  the WatchFlow stream.
- ``suspicions_reported``: ReportSuspect calls delivered to the coordinator.
- ``detector_stalls``: times the failure detector found its own process had not run for
  a while and gave every neighbour a fresh window instead of suspecting it.
- ``batches_reclaimed``: IN_TRANSIT batches taken back because their consumer was
  decommissioned (each re-queued as a new batch whose lineage is the old id).
- ``plan_taken_at`` (unix seconds; absent until then): when this agent took its part of
  the first-article plan (fos_agent.runtime.fillplan) from the catalog; a harness that starts
  every stage at once waits for it.
- ``first_output_at`` (unix seconds; absent until then): when this incarnation's stage queued
  its first output; a time, not a count (fos-sim's first product, precise to the
  millisecond whatever its polling period).
- ``batches_received_from:<supplier>`` and ``last_received_from_at:<supplier>`` (unix
  seconds): per-supplier receipts, for the harness's reroute times.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from fos_raft.runtime.version import BuildInfoCollector

COUNTERS = (
    "successful_cycles", "skipped_cycles", "total_cycles", "batches_produced",
    "batches_consumed", "batches_delivered", "batches_received", "batches_requested",
    "heartbeats", "wal_recovered_batches", "wal_ghost_batches", "flow_queries",
    "suspicions_reported", "batches_reclaimed", "detector_stalls", "planned_requests",
    "batches_scrapped", "scrapped_cycles",
)
MESSAGE_KINDS = ("RequestBatch", "WaitingForBatch", "DeliveryConfirmed", "OfferBatch", "Ping")
RECEIVED_FROM = "batches_received_from:"
SCRAPPED_ITEM = "batches_scrapped."
REFUSED = "refused:"  # + reason (fos_agent.protocol.validate): fos_agent_refused_total{reason}
RECEIVED_AT = "last_received_from_at:"
FIRST_OUTPUT_AT = "first_output_at"
# Cycle outcomes for the coordinator's production figures (docs/operations.md): input
# batches consumed per item, and the skipped cycle slots by cause: output full (nobody
# bought: blocked downstream) or waiting for this input.
CONSUMED_OF = "consumed_of:"
CYCLES_BLOCKED = "cycles_blocked"
CYCLES_WAITING = "cycles_waiting_for:"
PLAN_TAKEN_AT = "plan_taken_at"


RECEIPT_RING = 256

# Histograms (seconds), exported as fos_agent_<name>{node} histograms:
# wal_commit_seconds (a durable WAL group commit: LMDB write + fsync), cycle_seconds (a
# successful cycle: inputs held -> output durable), rpc_seconds{kind} (a peer RPC this node
# made, RequestBatch long-polls included), reroute_seconds (a flow change took a supplier of
# an input away: seconds until the first batch of that input from a supplier of the new flow).
HISTOGRAMS = ("wal_commit_seconds", "cycle_seconds", "reroute_seconds")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, float("inf"))


class Buckets:
    """A fixed-bucket histogram: one bisect and two additions per observation."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(LATENCY_BUCKETS)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip(LATENCY_BUCKETS, self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass(frozen=True, slots=True)
class Receipt:
    """A batch this node received (its inbound record was created), wall-clock stamped."""

    supplier: str
    item: str
    batch_id: str
    unix_ms: int


class Metrics(Mapping[str, float]):
    """One agent's counters. Every paper name exists from the start (value 0)."""

    def __init__(self, node_id: str, receipts: int = RECEIPT_RING) -> None:
        self.node_id = node_id
        self.receipts: deque[Receipt] = deque(maxlen=receipts)
        self._values: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self.histograms: dict[str, Buckets] = {name: Buckets() for name in HISTOGRAMS}
        self.rpc_seconds: dict[str, Buckets] = {}  # by message kind
        self._suppliers: dict[str, frozenset[str]] = {}  # item -> suppliers in the flow
        self._rerouting: dict[str, float] = {}  # item -> monotonic time a supplier left
        for kind in MESSAGE_KINDS:
            self._values[f"messages_sent.{kind}"] = 0.0
            self._values[f"messages_received.{kind}"] = 0.0

    def inc(self, name: str, amount: float = 1.0) -> None:
        self._values[name] = self._values.get(name, 0.0) + amount

    def set(self, name: str, value: float) -> None:
        self._values[name] = value

    def observe(self, name: str, seconds: float) -> None:
        self.histograms[name].observe(seconds)

    def rpc_time(self, kind: str, seconds: float) -> None:
        buckets = self.rpc_seconds.get(kind)
        if buckets is None:
            buckets = self.rpc_seconds[kind] = Buckets()
        buckets.observe(seconds)

    def sent(self, kind: str) -> None:
        self.inc(f"messages_sent.{kind}")

    def received(self, kind: str) -> None:
        self.inc(f"messages_received.{kind}")

    def suppliers_changed(self, suppliers: Mapping[str, Iterable[str]]) -> None:
        """The flow now names these suppliers per input item (reroute_seconds starts when
        one of an item's suppliers leaves while others remain or arrive)."""
        now = time.monotonic()
        for item, nodes in suppliers.items():
            current = frozenset(nodes)
            before = self._suppliers.get(item)
            if before and before - current and current and item not in self._rerouting:
                self._rerouting[item] = now
            self._suppliers[item] = current
        for item in set(self._suppliers) - set(suppliers):
            del self._suppliers[item]
            self._rerouting.pop(item, None)

    def scrapped(self, item: str) -> None:
        self.inc("batches_scrapped")
        self.inc(SCRAPPED_ITEM + item)

    def receipt(self, supplier: str, item: str, batch_id: str) -> None:
        if item in self._rerouting and supplier in self._suppliers.get(item, ()):
            self.observe("reroute_seconds", time.monotonic() - self._rerouting.pop(item))
        now = time.time()
        self.inc("batches_received")
        self.inc(RECEIVED_FROM + supplier)
        self._values[RECEIVED_AT + supplier] = now
        self.receipts.append(Receipt(supplier, item, batch_id, int(now * 1000)))

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def snapshot(self) -> dict[str, float]:
        return dict(self._values)


class AgentCollector(Collector):
    """Prometheus view of one or more agents' Metrics, labelled by node.

    ``fos_agent_<name>_total{node}`` for the paper counters,
    ``fos_agent_messages_sent_total{node,kind}`` / ``..._received_total``,
    ``fos_agent_batches_received_from_total{node,supplier}``,
    ``fos_agent_batches_scrapped_by_item_total{node,item}``,
    ``fos_agent_refused_total{node,reason}`` (peer messages refused as malformed or forged,
    fos_agent.protocol.validate), and gauges
    ``fos_agent_queued_outbound{node}`` / ``fos_agent_queued_inbound{node}`` when the
    source provides them.
    """

    def __init__(self, sources: Iterable[object]) -> None:
        self._sources = list(sources)  # objects with .metrics and optionally .gauges()

    def add(self, source: object) -> None:
        self._sources.append(source)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily
                                  | HistogramMetricFamily]:
        plain = {name: CounterMetricFamily(f"fos_agent_{name}", name.replace("_", " "),
                                           labels=["node"]) for name in COUNTERS}
        sent = CounterMetricFamily("fos_agent_messages_sent", "peer RPCs sent by kind",
                                   labels=["node", "kind"])
        received = CounterMetricFamily("fos_agent_messages_received",
                                       "peer RPCs received by kind", labels=["node", "kind"])
        by_supplier = CounterMetricFamily("fos_agent_batches_received_from",
                                          "batches received per supplier",
                                          labels=["node", "supplier"])
        scrapped = CounterMetricFamily("fos_agent_batches_scrapped_by_item",
                                       "inputs scrapped (consumed without an output) per item",
                                       labels=["node", "item"])
        refused = CounterMetricFamily("fos_agent_refused", "peer messages refused, by reason",
                                      labels=["node", "reason"])
        gauges: dict[str, GaugeMetricFamily] = {}
        histograms = {name: HistogramMetricFamily(f"fos_agent_{name}", name.replace("_", " "),
                                                  labels=["node"]) for name in HISTOGRAMS}
        rpc = HistogramMetricFamily("fos_agent_rpc_seconds", "peer RPCs made, by kind",
                                    labels=["node", "kind"])
        for source in self._sources:
            metrics: Metrics = source.metrics  # type: ignore[attr-defined]
            node = metrics.node_id
            for name, buckets in metrics.histograms.items():
                histograms[name].add_metric([node], buckets.cumulative(), buckets.total)
            for kind, buckets in sorted(metrics.rpc_seconds.items()):
                rpc.add_metric([node, kind], buckets.cumulative(), buckets.total)
            for name, value in metrics.snapshot().items():
                if name in plain:
                    plain[name].add_metric([node], value)
                elif name.startswith("messages_sent."):
                    sent.add_metric([node, name.partition(".")[2]], value)
                elif name.startswith("messages_received."):
                    received.add_metric([node, name.partition(".")[2]], value)
                elif name.startswith(RECEIVED_FROM):
                    by_supplier.add_metric([node, name[len(RECEIVED_FROM):]], value)
                elif name.startswith(SCRAPPED_ITEM):
                    scrapped.add_metric([node, name[len(SCRAPPED_ITEM):]], value)
                elif name.startswith(REFUSED):
                    refused.add_metric([node, name[len(REFUSED):]], value)
            gauge_fn = getattr(source, "gauges", None)
            for name, value in (gauge_fn() if gauge_fn else {}).items():
                family = gauges.setdefault(name, GaugeMetricFamily(
                    f"fos_agent_{name}", name.replace("_", " "), labels=["node"]))
                family.add_metric([node], value)
        yield from plain.values()
        yield sent
        yield received
        yield by_supplier
        yield scrapped
        yield refused
        yield from gauges.values()
        yield from histograms.values()
        yield rpc


def registry_for(sources: Iterable[object], process: bool = False
                 ) -> tuple[CollectorRegistry, AgentCollector]:
    """A fresh registry (never the global one: several agents may share a process);
    ``process``: add the process, platform and build-info collectors (one per process)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = AgentCollector(sources)
    registry.register(collector)
    if process:
        registry.register(ProcessCollector(registry=None))
        registry.register(PlatformCollector(registry=None))
        registry.register(BuildInfoCollector())
    return registry, collector
