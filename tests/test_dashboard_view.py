"""fos_dashboard.view (pure): layout, states in words, events from snapshot diffs; and the
fos-dashboard command line's errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fos_dashboard import view
from fos_dashboard.view import ClusterRow, EdgeRow, NodeRow, Snapshot


@st.composite
def catalogs(draw: st.DrawFn) -> list[NodeRow]:
    """Layered catalogs (item i needs items of lower index), with optional back links that
    make catalog cycles, and random liveness."""
    items = draw(st.integers(1, 6))
    nodes = []
    for item in range(items):
        for k in range(draw(st.integers(1, 4))):
            needs = draw(st.sets(st.integers(0, items - 1), max_size=2)) if item else set()
            requires = tuple((f"i{n}", 1) for n in sorted(needs) if n != item)
            nodes.append(NodeRow(f"n{item}-{k}", f"h:{item}{k}", f"i{item}", 1, requires,
                                 alive=draw(st.booleans()), drained=draw(st.booleans()),
                                 in_flow=draw(st.booleans()), started=draw(st.booleans())))
    return nodes


@settings(max_examples=150, deadline=None)
@given(catalogs())
def test_layout_places_every_node_once_without_overlap(nodes: list[NodeRow]) -> None:
    placed = view.layout(nodes)
    assert set(placed.positions) == {n.node_id for n in nodes}
    spots = list(placed.positions.values())
    assert len(set(spots)) == len(spots)
    for x, y in spots:
        assert x >= 0 and x + view.NODE_WIDTH <= placed.width
        assert y >= 0 and y + view.NODE_HEIGHT <= placed.height


@settings(max_examples=150, deadline=None)
@given(catalogs())
def test_suppliers_sit_left_of_their_consumers_when_the_catalog_is_acyclic(
        nodes: list[NodeRow]) -> None:
    acyclic = [n for n in nodes
               if all(int(item[1:]) < int(n.produces[1:]) for item, _ in n.requires)]
    column = view.columns(acyclic)
    for consumer in acyclic:
        for item, _ in consumer.requires:
            for supplier in (n for n in acyclic if n.produces == item):
                assert column[supplier.node_id] < column[consumer.node_id]


def test_a_source_sits_next_to_its_only_consumer() -> None:
    nodes = [NodeRow("saw", "", "wood", 1), NodeRow("press", "", "frame", 1, (("wood", 1),)),
             NodeRow("glass", "", "glass", 1),
             NodeRow("window", "", "window", 1, (("frame", 1), ("glass", 1)))]
    assert view.columns(nodes) == {"saw": 0, "press": 1, "glass": 1, "window": 2}


def test_states_and_reasons_in_words() -> None:
    src = NodeRow("saw", "", "wood", 1, in_flow=True)
    down = replace(src, alive=False, down_reason="no answer for 1.5 s")
    idle = NodeRow("press", "", "frame", 1, (("wood", 3),))
    assert view.state_of(down) == "down" and "no answer for 1.5 s" in view.reason_in_words(
        down, [down, idle])
    assert view.reason_in_words(idle, [down, idle]) == "standby: no live supplier of wood"
    assert view.state_of(idle) == "standby"
    assert view.state_of(replace(src, drained=True)) == "drained"
    assert view.state_of(src) == "in-flow"
    never = replace(idle, alive=False, started=False)
    assert view.state_of(never) == "not-started"
    assert "agent has not registered" in view.reason_in_words(never, [never])
    assert view.state_of(replace(src, state="stale")) == "stale"


@settings(max_examples=150, deadline=None)
@given(catalogs(), catalogs())
def test_diff_reports_each_death_and_rejoin(before: list[NodeRow],
                                            after: list[NodeRow]) -> None:
    events = view.diff(Snapshot(1, tuple(before)), Snapshot(2, tuple(after)))
    old = {n.node_id: n for n in before}
    new = {n.node_id: n for n in after}
    deaths = {e.node for e in events if e.kind == "death"}
    rejoins = {e.node for e in events if e.kind == "rejoin"}
    starts = {e.node for e in events if e.kind == "start"}
    assert deaths == {k for k in old.keys() & new.keys() if old[k].alive and not new[k].alive}
    came = {k for k in old.keys() & new.keys() if not old[k].alive and new[k].alive}
    assert starts == {k for k in came if not old[k].started}
    assert rejoins == came - starts
    assert {e.node for e in events if e.kind == "join"} == new.keys() - old.keys()


def test_diff_sees_reroutes_and_leader_changes_and_starts_quiet() -> None:
    nodes = (NodeRow("a", "", "x", 1), NodeRow("b", "", "x", 1),
             NodeRow("c", "", "y", 1, (("x", 1),)))
    one = Snapshot(1, nodes, (EdgeRow("a", "c", "x", 1), EdgeRow("b", "c", "x", 1, 1)),
                   ClusterRow(leader="r1", term=1))
    two = Snapshot(2, nodes, (EdgeRow("b", "c", "x", 1),), ClusterRow(leader="r2", term=2))
    assert view.diff(Snapshot(), one) == []
    kinds = {e.kind: e.text for e in view.diff(one, two)}
    assert kinds["reroute"] == "c now gets x from b (was a)"
    assert kinds["leader"] == "new coordinator leader r2 (term 2)"


def test_graph_json_keeps_only_edges_between_known_nodes() -> None:
    nodes = (NodeRow("a", "", "x", 1), NodeRow("c", "", "y", 1, (("x", 1),)))
    snap = Snapshot(3, nodes, (EdgeRow("a", "c", "x", 1), EdgeRow("gone", "c", "x", 1, 1)))
    graph = view.graph_json(snap)
    assert [(e["supplier"], e["consumer"]) for e in graph["edges"]] == [("a", "c")]
    assert {n["id"] for n in graph["nodes"]} == {"a", "c"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "fos-dashboard"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, fragment", [
    (["--coordinators", "127.0.0.1:1", "--listen", "nope"], "--listen 'nope' is not HOST:PORT"),
    (["--coordinators", " , "], "--coordinators needs at least one HOST:PORT"),
    (["--coordinators", "127.0.0.1:1", "--tls-cert", "x.pem"], "missing --tls-key --tls-ca"),
])
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
