"""Prometheus metrics of node states and production figures, read at scrape time from the
replica's state and its `ProductionBook` (docs/operations.md, "Production figures").

Names: ``fos_node_state{node,state}`` (1 for the node's state word, 0 for the others),
``fos_item_finished_batches_total{item}`` (final items), ``fos_node_batches_produced_total
{node,item}``, ``fos_node_cycles_total{node,outcome,input}`` (outcome ok, waiting (input
names what for), blocked, failed), ``fos_node_report_age_seconds{node}``,
``fos_node_inputs_scrapped_total{node,item}`` (input batches the node scrapped, since its
agent started),
``fos_link_down{supplier,consumer}`` (1 while an end reports the link down; absent once
healed). The production
figures are those of the reports this replica received: sum nothing across replicas, take
the ``max by (node)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fos_raft.api.production import ProductionBook, state_of
from fos_raft.model import NodeState
from fos_raft.replica.core import Replica


class ProductionCollector(Collector):
    def __init__(self, replica: Replica, book: ProductionBook, replica_id: str) -> None:
        self.replica = replica
        self.book = book
        self.replica_id = replica_id

    def collect(self) -> Iterator[Any]:
        state = self.replica.state
        rid = [self.replica_id]
        states = GaugeMetricFamily("fos_node_state", "1 for the node's state word",
                                   labels=["replica", "node", "state"])
        for node_id in sorted(state.nodes):
            word = state_of(state, node_id, self.book)
            for candidate in NodeState:
                states.add_metric([*rid, node_id, candidate.value],
                                  1 if candidate is word else 0)
        yield states
        links = GaugeMetricFamily("fos_link_down", "1 while an end of the link reports it "
                                  "down (both ends alive, one cannot reach the other)",
                                  labels=["replica", "supplier", "consumer"])
        for fault in self.book.links_down():
            links.add_metric([*rid, fault.supplier, fault.consumer], 1)
        yield links
        required = {r.item for e in state.nodes.values() for r in e.spec.requires}
        finished = CounterMetricFamily(
            "fos_item_finished_batches", "Batches of a final item made (reports received here)",
            labels=["replica", "item"])
        produced = CounterMetricFamily(
            "fos_node_batches_produced", "Batches the node made (reports received here)",
            labels=["replica", "node", "item"])
        cycles = CounterMetricFamily(
            "fos_node_cycles", "Cycle slots by outcome (input: what a waiting slot lacked)",
            labels=["replica", "node", "outcome", "input"])
        age = GaugeMetricFamily("fos_node_report_age_seconds",
                                "Seconds since this replica last heard from the agent",
                                labels=["replica", "node"])
        scrapped = CounterMetricFamily(
            "fos_node_inputs_scrapped", "Input batches the node scrapped, since its agent started",
            labels=["replica", "node", "item"])
        per_item: dict[str, int] = {}
        now = self.book.clock()
        for node_id, book in sorted(self.book.nodes.items()):
            entry = state.nodes.get(node_id)
            if entry is None:
                continue
            item = entry.spec.produces.item
            total = book.total()
            produced.add_metric([*rid, node_id, item], total.produced)
            if item not in required:
                per_item[item] = per_item.get(item, 0) + total.produced
            cycles.add_metric([*rid, node_id, "ok", ""], total.ok)
            cycles.add_metric([*rid, node_id, "blocked", ""], total.blocked)
            cycles.add_metric([*rid, node_id, "failed", ""], total.failed)
            for what, n in sorted(total.waiting.items()):
                cycles.add_metric([*rid, node_id, "waiting", what], n)
            age.add_metric([*rid, node_id], max(0.0, now - book.last_report))
            for what, n in sorted(book.scrapped.items()):
                scrapped.add_metric([*rid, node_id, what], n)
        for item, n in sorted(per_item.items()):
            finished.add_metric([*rid, item], n)
        yield finished
        yield produced
        yield cycles
        yield age
        yield scrapped
