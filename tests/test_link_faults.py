"""Link faults shown: an agent's production report lists its down links as supplier ->
consumer, a replica keeps them as soft state until a report without them (or the
reporter goes stale), and fosctl's table, ``--json`` and the metric show them."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from fos_agent.core.metrics import Metrics
from fos_agent.runtime.report import link_faults, production_report
from fos_pb import coordinator_pb2 as pb
from fos_raft.api.production import STALE_AFTER_S, ProductionBook, annotate
from fos_raft.api.production_metrics import ProductionCollector
from fos_raft.cli import render
from fos_raft.model import ItemReq, LinkFault, NodeSpec
from fos_raft.state.commands import Register
from fos_raft.state.core import CoordinatorState, apply

ORE = NodeSpec("ore-1", "127.0.0.1:7001", ItemReq("ore", 1))
PRESS = NodeSpec("press-1", "127.0.0.1:7002", ItemReq("steel", 1), (ItemReq("ore", 1),))
SINCE = 1_796_000_000.0  # 2026-11-30T00:53:20Z


@dataclass
class Clock:
    now: float = SINCE + 60

    def __call__(self) -> float:
        return self.now


def state() -> CoordinatorState:
    s = CoordinatorState()
    for spec in (ORE, PRESS):
        s, outcome = apply(s, "", Register(spec))
        assert outcome.error is None
    return s


def report(node: str, *down: pb.LinkDown) -> pb.ProductionReport:
    return production_report(node, 1, "x", Metrics(node), None, links_down=down)


def test_the_agent_names_its_down_links_supplier_first():
    up = link_faults("press-1", {"ore-1": SINCE}, consumers={"frame-1"})
    down = link_faults("press-1", {"frame-1": SINCE + 1}, consumers={"frame-1"})
    assert [(f.supplier, f.consumer, f.since_unix) for f in up] == [("ore-1", "press-1", SINCE)]
    assert [(f.supplier, f.consumer) for f in down] == [("press-1", "frame-1")]


def test_a_replica_shows_a_link_down_until_a_report_without_it():
    clock = Clock()
    book = ProductionBook(clock)
    cut = link_faults("press-1", {"ore-1": SINCE}, consumers=())
    book.record(report("press-1", *cut))
    book.record(report("ore-1", *link_faults("ore-1", {"press-1": SINCE - 2}, {"press-1"})))
    assert book.links_down() == [LinkFault("ore-1", "press-1", SINCE - 2)]  # once, earliest
    infos = [pb.NodeInfo(spec=pb.NodeSpec(node_id=n)) for n in ("ore-1", "press-1")]
    annotate(infos, state(), book)
    assert all(len(i.links_down) == 1 for i in infos)
    views = render.nodes_from_pb(pb.ListNodesReply(nodes=infos))
    doc = render.nodes_json(3, views)
    assert doc["links_down"] == [{"supplier": "ore-1", "consumer": "press-1", "state": "down",
                                  "since_unix": SINCE - 2,
                                  "text": "link down ore-1 -> press-1 since "
                                          "2026-11-30T00:53:18Z"}]
    assert any("link down ore-1 -> press-1" in cell for row in render.node_rows(views)
               for cell in row)
    registry = CollectorRegistry()
    replica = type("R", (), {"state": state()})()
    registry.register(ProductionCollector(replica, book, "r0"))  # type: ignore[arg-type]
    labels = {"replica": "r0", "supplier": "ore-1", "consumer": "press-1"}
    assert registry.get_sample_value("fos_link_down", labels) == 1
    book.record(report("press-1"))  # healed at one end; the other end still says so
    assert book.links_down() == [LinkFault("ore-1", "press-1", SINCE - 2)]
    book.record(report("ore-1"))
    assert book.links_down() == []
    assert registry.get_sample_value("fos_link_down", labels) is None


def test_a_silent_reporter_is_not_believed():
    clock = Clock()
    book = ProductionBook(clock)
    book.record(report("press-1", *link_faults("press-1", {"ore-1": SINCE}, ())))
    clock.now += STALE_AFTER_S + 1
    assert book.links_down() == []


def test_the_floor_display_says_which_link_is_down():
    from fos_dashboard import view

    text = render.link_text(LinkFault("ore-1", "press-1", SINCE))
    row = view.NodeRow("press-1", "127.0.0.1:7002", "steel", 1, in_flow=True, state="in-flow",
                       links_down=(text,))
    why = view.reason_in_words(row, [row])
    assert why.startswith("in the flow") and "link down ore-1 -> press-1 since" in why


def test_the_floor_display_gathers_link_faults_from_every_replica():
    import asyncio
    import json

    from fos_dashboard import view
    from fos_dashboard.collector import Collector

    clock = Clock()
    leader, other = ProductionBook(clock), ProductionBook(clock)
    other.record(report("press-1", *link_faults("press-1", {"ore-1": SINCE}, ())))
    books = {"a": leader, "b": other}

    class Client:
        addresses = ["a", "b"]

        async def get_production(self, since: float, *, only: str,
                                 timeout: float | None = None) -> pb.ProductionReply:
            doc = json.dumps(books[only].document(since, only))
            return pb.ProductionReply(document=doc, replica_id=only)

    collector = Collector(Client())  # type: ignore[arg-type]
    row = view.NodeRow("press-1", "127.0.0.1:7002", "steel", 1, in_flow=True, state="in-flow")
    collector.snapshot = view.Snapshot(1, (row,), ())
    asyncio.run(collector._poll_production())
    [shown] = json.loads(collector.document)["nodes"]
    assert "link down ore-1 -> press-1 since" in shown["reason"]
    other.record(report("press-1"))  # healed
    asyncio.run(collector._poll_production())
    [shown] = json.loads(collector.document)["nodes"]
    assert "link down" not in shown["reason"]
