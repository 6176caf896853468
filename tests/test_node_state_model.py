"""Node states in the replicated state (pure): a catalog node is not-started and never routed
to until its agent registers or rejoins; journals, snapshots and backup files written
before ``started`` existed load with the meaning they had; the soft production book and
its summary (stale, finished counts, bottleneck)."""

from __future__ import annotations

import json
import pickle

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.production import STALE_AFTER_S, ProductionBook
from fos_raft.api.production_view import merge, outcome_words, summary
from fos_raft.model import ItemReq, NodeSpec, NodeState, NodeStatus, node_state
from fos_raft.state.commands import MarkDown, MarkUp, Register
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.snapshot import decode, encode

SAW = NodeSpec("saw", "127.0.0.1:7001", ItemReq("wood", 1))
PRESS = NodeSpec("press", "127.0.0.1:7002", ItemReq("frame", 1), (ItemReq("wood", 1),))


def run(state: CoordinatorState, *commands: object) -> CoordinatorState:
    for command in commands:
        state, outcome = apply(state, "", command)  # type: ignore[arg-type]
        assert outcome.error is None, outcome.message
    return state


def test_a_catalog_node_is_not_started_and_routes_nothing_until_its_agent_comes():
    state = run(CoordinatorState(), Register(SAW, started=False), Register(PRESS, started=False))
    assert all(not e.status.started and not e.status.alive for e in state.nodes.values())
    assert state.flow.edges == () and state.flow.members == frozenset()
    # a suspicion of a node that never started changes nothing
    same, outcome = apply(state, "", MarkDown("saw", "no answer"))
    assert not outcome.changed and same is state
    # the saw's agent registers (same spec), the press's rejoins at its port-0 address
    state = run(state, Register(SAW, started=True), MarkUp("press", "127.0.0.1:40001"))
    assert all(e.status.started and e.status.alive for e in state.nodes.values())
    assert state.nodes["press"].spec.address == "127.0.0.1:40001"
    assert [(e.supplier, e.consumer) for e in state.flow.edges] == [("saw", "press")]
    # the operator's catalog again: nothing changes
    again, outcome = apply(state, "", Register(SAW, started=False))
    assert not outcome.changed and again.digest == state.digest


def test_state_words_and_their_precedence():
    assert node_state(NodeStatus(alive=False, started=False), True) is NodeState.NOT_STARTED
    assert node_state(NodeStatus(alive=False, drained=True), True) is NodeState.DOWN
    assert node_state(NodeStatus(drained=True), True, stale=True) is NodeState.DRAINED
    assert node_state(NodeStatus(), True, stale=True) is NodeState.STALE
    assert node_state(NodeStatus(), True) is NodeState.IN_FLOW
    assert node_state(NodeStatus(), False) is NodeState.STANDBY
    assert {s.value for s in NodeState} == {"not-started", "in-flow", "standby", "drained",
                                            "down", "stale"}
    assert all(s.meaning for s in NodeState)


def _old_pickle(obj: object, count: int, monkeypatch) -> bytes:
    """The bytes an older release wrote: the same class, only its first ``count`` fields."""
    with monkeypatch.context() as m:
        m.setattr(type(obj), "__getstate__",
                  lambda self: [getattr(self, f) for f in type(self).__slots__[:count]])
        return pickle.dumps(obj, protocol=2)


def test_journal_entries_and_snapshots_from_before_started_load_as_started(monkeypatch):
    status = pickle.loads(_old_pickle(NodeStatus(False, True, "x", False), 3, monkeypatch))
    assert status == NodeStatus(False, True, "x") and status.started
    command = pickle.loads(_old_pickle(Register(SAW, started=False), 1, monkeypatch))
    assert command == Register(SAW) and command.started
    state = run(CoordinatorState(), command)
    assert state.nodes["saw"].status.alive


def test_an_older_state_keeps_its_digest_and_its_backup_files_restore():
    state = run(CoordinatorState(), Register(SAW), Register(PRESS))
    doc = json.loads(encode(state))
    # every node started: the canonical form is the one of before (three status values)
    assert all(len(node[2]) == 3 for node in doc["state"]["nodes"])
    assert decode(encode(state))[0].digest == state.digest
    fresh = run(CoordinatorState(), Register(SAW, started=False))
    assert json.loads(encode(fresh))["state"]["nodes"][0][2] == [False, False, "", False]
    restored = decode(encode(fresh))[0]
    assert restored.digest == fresh.digest and not restored.nodes["saw"].status.started


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def report(node: str, produced: int, ok: int, incarnation: int = 1, produces: str = "frame",
           waiting: dict[str, int] | None = None, blocked: int = 0) -> pb.ProductionReport:
    return pb.ProductionReport(node_id=node, incarnation=incarnation, produces=produces,
                               batches_produced=produced, cycles_ok=ok,
                               cycles_waiting=waiting or {}, cycles_blocked=blocked)


def test_book_counts_across_incarnations_and_calls_a_silent_agent_stale():
    clock = Clock()
    book = ProductionBook(clock)
    assert book.contact_age("press") == -1 and not book.is_stale("press")
    book.record(report("press", 5, 5))
    clock.now += 5
    book.record(report("press", 8, 8))
    clock.now += 5
    book.record(report("press", 2, 2, incarnation=2))  # restarted: its counters began anew
    doc = book.document(3600, "r0")
    assert doc["nodes"]["press"]["produced_total"] == 10
    assert doc["nodes"]["press"]["produced"] == 10  # first heard within the window
    clock.now += STALE_AFTER_S + 1
    assert book.is_stale("press")
    assert book.document(3600, "r0")["nodes"]["press"]["down_s"] > 0


def test_summary_names_final_items_and_the_bottleneck_and_merges_replicas():
    clock = Clock()
    leader, other = ProductionBook(clock), ProductionBook(clock)
    other.record(report("press", 1, 1))  # an old report on another replica
    clock.now += 10
    leader.record(report("saw", 40, 40, produces="wood", blocked=50))
    leader.record(report("press", 30, 30, waiting={"wood": 2}))
    merged = merge([other.document(3600, "r1"), leader.document(3600, "r0")])
    doc = summary(merged, [SAW, PRESS], {"frame": 60.0})
    (frame,) = doc["final_items"]
    assert frame["item"] == "frame" and frame["finished"] == 30  # the freshest report won
    assert frame["target_per_hour"] == 60.0 and frame["of_target"] is not None
    assert doc["bottleneck"]["item"] == "frame" and "bottleneck" in doc["bottleneck"]["text"]
    stages = {s["node_id"]: s for s in doc["stages"]}
    assert outcome_words(stages["press"]) == "30 made a batch, 2 waiting for wood"
    assert "blocked" in outcome_words(stages["saw"])
    nothing = summary({"nodes": {}}, [SAW, PRESS])
    assert nothing["bottleneck"]["item"] is None and nothing["final_items"][0]["finished"] == 0


def test_scrapped_inputs_travel_from_the_agent_report_to_fosctl_words_and_metrics() -> None:
    from types import SimpleNamespace

    from fos_agent.core.metrics import Metrics
    from fos_agent.runtime.report import production_report
    from fos_raft.api.production_metrics import ProductionCollector

    metrics = Metrics("press")
    metrics.inc("successful_cycles", 3)
    for item in ("wood", "wood", "glue"):
        metrics.scrapped(item)
    sent = production_report("press", 1, "frame", metrics, None)
    assert dict(sent.scrapped) == {"wood": 2, "glue": 1}
    old = pb.ProductionReport.FromString(  # a report from an agent without the field
        report("saw", 4, 4, produces="wood").SerializeToString())
    assert dict(old.scrapped) == {}
    book = ProductionBook(Clock())
    book.record(sent)
    book.record(old)
    doc = summary(book.document(3600, "r0"), [SAW, PRESS])
    stages = {s["node_id"]: s for s in doc["stages"]}
    assert stages["press"]["scrapped_total"] == {"glue": 1, "wood": 2}
    assert "1 glue scrapped since start, 2 wood scrapped since start" in outcome_words(
        stages["press"])
    assert "scrapped" not in outcome_words(stages["saw"])
    state = run(CoordinatorState(), Register(SAW), Register(PRESS))
    collector = ProductionCollector(SimpleNamespace(state=state), book, "r0")  # type: ignore[arg-type]
    samples = {(s.name, s.labels.get("node"), s.labels.get("item")): s.value
               for family in collector.collect() for s in family.samples}
    assert samples[("fos_node_inputs_scrapped_total", "press", "wood")] == 2
    assert ("fos_node_inputs_scrapped_total", "saw", "wood") not in samples
