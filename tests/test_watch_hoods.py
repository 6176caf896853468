"""FlowIndex (fos_raft.api.hoods): the nodes a version changed, never missing one.

Random command sequences on a layered catalog; after each step (or after several at once,
as a replica that applied a batch between two wake-ups sees them) the nodes FlowIndex names
must include every node whose neighbourhood reply (views.neighbourhood_to_pb, without its
version) differs, and the index's edges must be the flow's.
"""

from __future__ import annotations

import pickle
import random

import pytest

from bench.bench_planner import make_catalog
from fos_pb import coordinator_pb2 as pb
from fos_raft.api.hoods import FlowIndex
from fos_raft.api.views import content_key, neighbourhood_to_pb
from fos_raft.model import NodeStatus
from fos_raft.planner.plan import Planner, plan
from fos_raft.state.commands import (
    Command,
    Decommission,
    Drain,
    MarkDown,
    MarkUp,
    Register,
    Undrain,
)
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.entry import NodeEntry


def seeded(nodes: int, seed: int) -> CoordinatorState:
    catalog = make_catalog(nodes, 5, seed)
    flow = plan(catalog, {})
    entries = {n: NodeEntry(s, NodeStatus(), 1, 1) for n, s in catalog.items()}
    return CoordinatorState(version=1, nodes=entries, flow=flow, history=((1, flow),))


def views(state: CoordinatorState, ids: set[str]) -> dict[str, bytes]:
    return {n: content_key(pb.GetFlowReply(neighbourhood=neighbourhood_to_pb(state, n)))
            for n in ids}


def random_command(state: CoordinatorState, rng: random.Random, spare: list[str]) -> Command:
    node = rng.choice(sorted(state.nodes))
    entry = state.nodes[node]
    roll = rng.random()
    if roll < 0.3:
        return Undrain(node) if entry.status.drained else Drain(node)
    if roll < 0.6:
        return MarkUp(node, "") if not entry.status.alive else MarkDown(node, "test")
    if roll < 0.7:
        return MarkUp(node, f"127.0.0.1:{rng.randint(30000, 40000)}")
    if roll < 0.85 and spare:
        template = state.nodes[node].spec
        return Register(type(template)(spare.pop(), template.address, template.produces,
                                       template.requires, template.capacity))
    return Decommission(node)


@pytest.mark.parametrize("seed,batch", [(1, 1), (2, 1), (3, 3), (4, 7)])
def test_every_changed_neighbourhood_is_named(seed: int, batch: int) -> None:
    rng = random.Random(seed)
    state = seeded(120, seed)
    planner = Planner()
    index = FlowIndex(state)
    spare = [f"new-{seed}-{i}" for i in range(30)]
    named_total = changed_total = 0
    for _ in range(60 // batch):
        before = state
        for _ in range(batch):
            previous = state
            state, outcome = apply(state, "", random_command(state, rng, spare),
                                   lambda c, s, p, n: planner.after_change(c, s, p, n))
            delta = planner.last_delta
            if delta is not None and state.flow is not previous.flow:
                # what the state machine records: exactly the edges that changed
                old_edges, new_edges = set(previous.flow.edges), set(state.flow.edges)
                assert delta == (old_edges - new_edges, new_edges - old_edges)
                state.note_edge_delta(*delta)
        named = index.advance(state)
        everyone = set(before.nodes) | set(state.nodes)
        old, new = views(before, everyone), views(state, everyone)
        changed = {n for n in everyone if old[n] != new[n]}
        assert changed <= named, (changed - named, outcome)
        named_total += len(named)
        changed_total += len(changed)
        for node in everyone:
            assert index.edges_of(node) == set(state.edges_of(node))
    # a superset, but not the whole catalog: the point is to wake few
    assert named_total < 3 * changed_total + 60, (named_total, changed_total)
    if batch == 1:  # one version at a time: only the first (a full plan) is diffed
        assert index.fallbacks <= 1


def test_a_reloaded_state_is_diffed_by_value() -> None:
    """A snapshot load gives new objects for everything: still exactly the changes."""
    state = seeded(80, 9)
    index = FlowIndex(state)
    node = sorted(state.nodes)[5]
    planner = Planner()
    changed, _ = apply(state, "", Drain(node), lambda c, s, p, n: planner.after_change(c, s, p, n))
    reloaded = pickle.loads(pickle.dumps(changed))
    assert reloaded.changed_node is None
    named = index.advance(reloaded)
    old, new = views(state, set(state.nodes)), views(reloaded, set(state.nodes))
    expected = {n for n in state.nodes if old[n] != new[n]}
    assert expected <= named
    assert len(named) < len(state.nodes) // 2
