"""The dashboard's I/O: follows the coordinator (WatchFlow, ListNodes, ClusterStatus) and
reads agents' Stats, keeps the newest page state as one JSON document, and wakes the
browsers' event streams when it changes.

Four loops: the production figures (every replica's GetProduction, merged, every 5 s),
the flow watch (a change reaches the page as soon as the coordinator pushes it),
a cluster-status poll (leader changes, and liveness changes that leave the whole flow's
edges as they were, which WatchFlow does not push), and an agent Stats poll (cycle counts,
last receipt). Nothing here writes to the coordinator or the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import grpc.aio

from fos_dashboard import view
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as pb
from fos_raft.api import production_view
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.api.convert import link_fault_from_pb, link_fault_text
from fos_raft.model import LinkFault, earliest_faults
from fos_raft.runtime.logging import get_logger
from fos_raft.security.tls import TlsConfig, aio_channel
from fos_raft.textsafe import page_json

log = get_logger("fos_dashboard.collector")

STATUS_EVERY_S = 0.5
STATS_EVERY_S = 2.0
STATS_TIMEOUT_S = 1.0
MAX_EVENTS = 200
PRODUCTION_EVERY_S = 5.0  # the agents report every 5 s; asking faster shows nothing new
STATS_FIELDS = ("successful_cycles", "skipped_cycles", "total_cycles", "batches_produced",
                "batches_consumed")


def rows_of(nodes: pb.ListNodesReply, flow: pb.GetFlowReply) -> view.Snapshot:
    rows = tuple(
        view.NodeRow(
            node_id=n.spec.node_id, address=n.spec.address, produces=n.spec.produces.item,
            produces_qty=int(n.spec.produces.qty),
            requires=tuple((r.item, int(r.qty)) for r in n.spec.requires),
            capacity=int(n.spec.capacity) or 1, alive=n.alive, drained=n.drained,
            in_flow=n.in_flow, down_reason=n.down_reason,
            started=n.started or not n.state, state=n.state,
            links_down=tuple(link_fault_text(link_fault_from_pb(f)) for f in n.links_down))
        for n in nodes.nodes
    )
    edges = tuple(view.EdgeRow(e.supplier, e.consumer, e.item, int(e.qty), int(e.rank))
                  for e in flow.flow.edges)
    return view.Snapshot(max(int(nodes.flow_version), int(flow.flow.version)), rows, edges)


def cluster_of(status: pb.ClusterStatusReply) -> view.ClusterRow:
    return view.ClusterRow(
        leader=status.leader, term=int(status.term), has_quorum=status.has_quorum,
        flow_version=int(status.flow_version), commit_index=int(status.commit_index),
        replicas=tuple((r.raft_address, r.grpc_address, r.is_leader, r.connected)
                       for r in status.replicas))


def stats_of(reply: agent_pb2.StatsReply) -> dict[str, Any]:
    out: dict[str, Any] = {k: int(reply.counters.get(k, 0)) for k in STATS_FIELDS}
    out["queued_outbound"] = int(reply.queued_outbound)
    out["queued_inbound"] = int(reply.queued_inbound)
    out["incarnation"] = int(reply.incarnation)
    if reply.recent_receipts:
        last = reply.recent_receipts[-1]
        out["last_receipt"] = {"supplier": last.supplier, "item": last.item,
                               "batch_id": last.batch_id, "unix_ms": int(last.unix_ms)}
    return out


@dataclass
class Collector:
    client: CoordinatorClient
    tls: TlsConfig | None = None
    clock: Callable[[], float] = time.time
    snapshot: view.Snapshot = field(default_factory=view.Snapshot)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    coordinator_error: str = ""
    document: str = "{}"
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0
    targets: dict[str, float] = field(default_factory=dict)  # item -> batches per hour
    production: dict[str, Any] = field(default_factory=dict)
    links_down: dict[str, tuple[str, ...]] | None = None  # node -> texts, every replica's
    _channels: dict[tuple[str, str], grpc.aio.Channel] = field(default_factory=dict)
    _refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # ------------------------------------------------------------ state

    def _with_links(self) -> view.Snapshot:
        """The snapshot with every replica's link faults (each replica keeps those of the
        reports it received), once the production poll has gathered them."""
        links = self.links_down
        if links is None:
            return self.snapshot
        s = self.snapshot
        rows = tuple(replace(n, links_down=links.get(n.node_id, ())) for n in s.nodes)
        return view.Snapshot(s.version, rows, s.edges, s.cluster)

    def _publish(self) -> None:
        """Rebuild the page document and wake every event stream."""
        doc = {
            "generation": self.generation + 1,
            "updated_unix": self.clock(),
            "coordinator_error": self.coordinator_error,
            "graph": view.graph_json(self.snapshot),
            "nodes": view.node_table(self._with_links(), self.stats, {
                s["node_id"]: production_view.outcome_words(s)
                for s in self.production.get("stages", ())}),
            "production": self.production,
            "cluster": view.cluster_json(self.snapshot.cluster),
            "events": list(self.events),
        }
        self.generation += 1
        # Every string in it came from the cluster or an agent: escaped once, here, so the
        # page and the API show control characters as \x1b and never carry markup.
        self.document = page_json(doc)
        self.changed.set()
        self.changed = asyncio.Event()

    def _advance(self, after: view.Snapshot) -> None:
        now = self.clock()
        for ev in view.diff(self.snapshot, after):
            self.events.appendleft({"unix": now, "kind": ev.kind, "node": ev.node,
                                    "text": ev.text})
        self.snapshot = after
        self._publish()

    async def wait_change(self, generation: int) -> None:
        """Return once the document is newer than ``generation``."""
        while self.generation <= generation:
            await self.changed.wait()

    # ------------------------------------------------------------ coordinator

    async def refresh(self, flow: pb.GetFlowReply | None = None) -> None:
        """Read nodes (and the flow unless given) and publish what changed."""
        async with self._refresh_lock:
            nodes = await self.client.list_nodes()
            if flow is None or int(nodes.flow_version) > int(flow.flow.version):
                flow = await self.client.get_flow()
            after = rows_of(nodes, flow)
            if after.version < self.snapshot.version:
                return  # an older answer than one already shown
            self._advance(view.Snapshot(after.version, after.nodes, after.edges,
                                        self.snapshot.cluster))

    async def watch_loop(self) -> None:
        async for reply in self.client.watch_flow():
            await self._guard(self.refresh(reply))

    async def status_loop(self) -> None:
        while True:
            await self._guard(self._poll_status())
            await asyncio.sleep(STATUS_EVERY_S)

    async def _poll_status(self) -> None:
        status = await self.client.cluster_status()
        if int(status.flow_version) > self.snapshot.version:
            await self.refresh()
        cluster = cluster_of(status)
        if cluster != self.snapshot.cluster:
            s = self.snapshot
            self._advance(view.Snapshot(s.version, s.nodes, s.edges, cluster))

    async def _guard(self, call: Awaitable[None]) -> None:
        """Keep the loops alive through coordinator outages; say so on the page."""
        try:
            await call
        except CoordinatorError as exc:
            message = f"coordinator unreachable: {exc}"
            if message != self.coordinator_error:
                self.coordinator_error = message
                log.warning("coordinator_error", error=str(exc))
                self._publish()
            return
        if self.coordinator_error:
            self.coordinator_error = ""
            self._publish()

    # ------------------------------------------------------------ agents

    def _channel(self, node_id: str, address: str) -> grpc.aio.Channel:
        key = (node_id, address)
        if key not in self._channels:
            self._channels[key] = aio_channel(address, self.tls, server_name=node_id)
        return self._channels[key]

    async def _stats_one(self, node: view.NodeRow) -> tuple[str, dict[str, Any] | None]:
        stub = agent_pb2_grpc.AgentStub(self._channel(node.node_id, node.address))
        try:
            reply = await stub.Stats(agent_pb2.StatsRequest(), timeout=STATS_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return node.node_id, None
        return node.node_id, stats_of(reply)

    async def stats_loop(self) -> None:
        while True:
            alive = [n for n in self.snapshot.nodes if n.alive]
            results = await asyncio.gather(*(self._stats_one(n) for n in alive))
            fresh = {node_id: s for node_id, s in results if s is not None}
            # a node not answering keeps its last figures: the table says how old they are
            known = {n.node_id for n in self.snapshot.nodes}
            merged = {k: v for k, v in {**self.stats, **fresh}.items() if k in known}
            current = {(n.node_id, n.address) for n in self.snapshot.nodes}
            for key in [k for k in self._channels if k not in current]:  # gone or moved
                await self._channels.pop(key).close()
            if merged != self.stats:
                self.stats = merged
                self._publish()
            await asyncio.sleep(STATS_EVERY_S)

    async def _poll_production(self) -> None:
        docs = []
        for address in self.client.addresses:
            with contextlib.suppress(CoordinatorError):
                reply = await self.client.get_production(3600.0, only=address, timeout=3.0)
                docs.append(json.loads(reply.document))
        if not docs:
            return
        figures = production_view.summary(production_view.merge(docs),
                                          view.specs_of(self.snapshot), self.targets)
        faults = earliest_faults(LinkFault(str(link["supplier"]), str(link["consumer"]),
                                           float(link["since_unix"]))
                                 for doc in docs for link in doc.get("links_down", ()))
        links: dict[str, tuple[str, ...]] = {}
        for f in faults:
            for node in (f.supplier, f.consumer):
                links[node] = (*links.get(node, ()), link_fault_text(f))
        if figures != self.production or links != self.links_down:
            self.production = figures
            self.links_down = links
            self._publish()

    async def production_loop(self) -> None:
        while True:
            await self._guard(self._poll_production())
            await asyncio.sleep(PRODUCTION_EVERY_S)

    # ------------------------------------------------------------ lifetime

    async def run(self) -> None:
        """All loops until cancelled."""
        self._publish()
        await self._guard(self.refresh())
        loops = [asyncio.create_task(c) for c in
                 (self.watch_loop(), self.status_loop(), self.stats_loop(),
                  self.production_loop())]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels.clear()
