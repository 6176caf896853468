"""Planner properties P1-P7 (docs/architecture.md) and plain examples."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planner_strategies import (
    ADDS_CAPACITY,
    ALIVE,
    World,
    arbitrary_flows,
    changes,
    statuses,
    worlds,
)

from fos_raft.model import Edge, ItemReq, NodeSpec, NodeStatus, Plan
from fos_raft.planner import assign as planner_assign
from fos_raft.planner import edges as planner_edges
from fos_raft.planner import plan as planner_module
from fos_raft.planner.plan import BACKUPS, Planner, plan

DEAD = NodeStatus(alive=False, down_reason="probe failed")


def spec(
    node_id: str, produces: str, requires: tuple[str, ...] = (), capacity: int = 1
) -> NodeSpec:
    return NodeSpec(
        node_id=node_id,
        address="127.0.0.1:7000",
        produces=ItemReq(produces, 1),
        requires=tuple(ItemReq(item, 2) for item in requires),
        capacity=capacity,
    )


def window_chain() -> dict[str, NodeSpec]:
    specs = [
        spec("saw-1", "wood"),
        spec("saw-2", "wood"),
        spec("frame-1", "frame", ("wood",)),
        spec("frame-2", "frame", ("wood",)),
        spec("window-1", "window", ("frame",)),
        spec("window-2", "window", ("frame",)),
    ]
    return {s.node_id: s for s in specs}


def primaries(edges: tuple[Edge, ...]) -> dict[tuple[str, str], str]:
    return {(e.consumer, e.item): e.supplier for e in edges if e.rank == 0}


def test_window_chain_spreads_primaries_and_holds_one_backup() -> None:
    flow = plan(window_chain(), {})
    assert flow.members == frozenset(window_chain())
    assert primaries(flow.edges) == {
        ("frame-1", "wood"): "saw-1",
        ("frame-2", "wood"): "saw-2",
        ("window-1", "frame"): "frame-1",
        ("window-2", "frame"): "frame-2",
    }
    backups = {(e.consumer, e.item): e.supplier for e in flow.edges if e.rank == 1}
    assert backups == {
        ("frame-1", "wood"): "saw-2",
        ("frame-2", "wood"): "saw-1",
        ("window-1", "frame"): "frame-2",
        ("window-2", "frame"): "frame-1",
    }
    assert all(e.qty == 2 for e in flow.edges)
    assert list(flow.edges) == sorted(flow.edges)


def test_dead_supplier_moves_its_consumers_and_nothing_else() -> None:
    catalog = window_chain()
    before = plan(catalog, {})
    after = plan(catalog, {"saw-1": DEAD}, before.edges)
    assert "saw-1" not in after.members
    assert primaries(after.edges)[("frame-1", "wood")] == "saw-2"
    assert primaries(after.edges)[("frame-2", "wood")] == "saw-2"
    # frame-1's backup saw-2 is promoted; the frame links do not involve saw-1 and stay.
    assert [e for e in after.edges if e.item == "wood"] == [
        Edge("saw-2", "frame-1", "wood", 2, 0),
        Edge("saw-2", "frame-2", "wood", 2, 0),
    ]
    assert [e for e in after.edges if e.item == "frame"] == [
        e for e in before.edges if e.item == "frame"
    ]


def test_node_whose_only_supplier_is_dead_leaves_with_its_downstream() -> None:
    catalog = window_chain()
    catalog["glass-1"] = spec("glass-1", "glass")
    catalog["glazer-1"] = spec("glazer-1", "glazed", ("glass", "window"))
    catalog["crate-1"] = spec("crate-1", "crate", ("glazed",))
    assert {"glazer-1", "crate-1"} <= plan(catalog, {}).members
    after = plan(catalog, {"glass-1": DEAD})
    assert after.members == frozenset(window_chain())
    gone = {"glass-1", "glazer-1", "crate-1"}
    assert not any(gone & {e.supplier, e.consumer} for e in after.edges)


def test_orphan_promotes_its_backup_among_equally_loaded_suppliers() -> None:
    catalog = {n: spec(n, "wood") for n in ("saw-a", "saw-b", "saw-c")}
    catalog.update({n: spec(n, "frame", ("wood",)) for n in ("frame-1", "frame-2", "frame-3")})
    previous = [
        Edge("saw-a", "frame-1", "wood", 2, 0),
        Edge("saw-c", "frame-1", "wood", 2, 1),  # frame-1 falls back to saw-c, not saw-b
        Edge("saw-b", "frame-1", "wood", 2, 2),
        Edge("saw-b", "frame-2", "wood", 2, 0),
        Edge("saw-c", "frame-3", "wood", 2, 0),
    ]
    flow = plan(catalog, {"saw-a": DEAD}, previous)
    assert primaries(flow.edges) == {
        ("frame-1", "wood"): "saw-c",
        ("frame-2", "wood"): "saw-b",
        ("frame-3", "wood"): "saw-c",
    }
    assert Edge("saw-b", "frame-1", "wood", 2, 1) in flow.edges  # backup moves up a rank


def test_capacity_weights_the_spread() -> None:
    catalog = {"big": spec("big", "wood", capacity=3), "small": spec("small", "wood")}
    catalog.update({f"frame-{k}": spec(f"frame-{k}", "frame", ("wood",)) for k in range(8)})
    load: dict[str, int] = {"big": 0, "small": 0}
    for supplier in primaries(plan(catalog, {}).edges).values():
        load[supplier] += 1
    assert load == {"big": 6, "small": 2}


# ---- property tests ----------------------------------------------------------------------


def examples(n: int) -> settings:
    """``n`` examples, 50x under HYPOTHESIS_PROFILE=deep."""
    return settings(max_examples=n * 50 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else n)


def is_eligible(world: World, node_id: str) -> bool:
    return world.status.get(node_id, ALIVE).eligible


def naive_viable(world: World) -> set[str]:
    """Viability by plain fixpoint iteration: an oracle independent of the planner's."""
    viable: set[str] = set()
    while True:
        available = {world.catalog[n].produces.item for n in viable}
        grown = {
            n
            for n, s in world.catalog.items()
            if is_eligible(world, n) and s.required_items <= available
        }
        if grown == viable:
            return viable
        viable = grown


def suppliers_in(world: World, flow: Plan, item: str) -> list[str]:
    return sorted(n for n in flow.members if world.catalog[n].produces.item == item)


def links_of(flow: Plan) -> dict[tuple[str, str], list[str]]:
    """(consumer, item) -> suppliers by rank (primary first)."""
    ranked: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for e in flow.edges:
        ranked.setdefault((e.consumer, e.item), []).append((e.rank, e.supplier))
    return {key: [s for _, s in sorted(pairs)] for key, pairs in ranked.items()}


def loads(world: World, flow: Plan, item: str) -> dict[str, int]:
    load = dict.fromkeys(suppliers_in(world, flow, item), 0)
    for e in flow.edges:
        if e.item == item and e.rank == 0:
            load[e.supplier] += 1
    return load


def is_balanced(load: dict[str, int], capacity: dict[str, int]) -> bool:
    """No supplier pair where moving one consumer strictly helps (exact arithmetic)."""
    return not any(
        Fraction(load[m], capacity[m]) > Fraction(load[n] + 1, capacity[n])
        for m in load
        for n in load
    )


@given(worlds(), st.data())
@examples(300)
def test_p1_edges_join_eligible_supplier_and_consumer_of_the_item(
    world: World, data: st.DataObject
) -> None:
    flow = plan(world.catalog, world.status, data.draw(arbitrary_flows(world)))
    assert list(flow.edges) == sorted(flow.edges)
    for e in flow.edges:
        assert is_eligible(world, e.supplier) and is_eligible(world, e.consumer)
        assert {e.supplier, e.consumer} <= flow.members
        assert world.catalog[e.supplier].produces.item == e.item
        assert ItemReq(e.item, e.qty) in world.catalog[e.consumer].requires
    links = links_of(flow)
    ranks: dict[tuple[str, str], list[int]] = {}
    for e in flow.edges:
        ranks.setdefault((e.consumer, e.item), []).append(e.rank)
    for consumer in flow.members:
        for req in world.catalog[consumer].requires:
            suppliers = links[consumer, req.item]
            expected = min(1 + BACKUPS, len(suppliers_in(world, flow, req.item)))
            assert len(suppliers) == len(set(suppliers)) == expected
            assert sorted(ranks[consumer, req.item]) == list(range(expected))
    assert {c for c, _ in links} <= flow.members


@given(worlds())
@examples(300)
def test_p2_members_have_a_member_supplier_for_every_input(world: World) -> None:
    flow = plan(world.catalog, world.status)
    for node_id in flow.members:
        assert is_eligible(world, node_id)
        for item in world.catalog[node_id].required_items:
            assert suppliers_in(world, flow, item), f"{node_id} lacks {item}"


@given(worlds())
@examples(300)
def test_p3_flow_is_acyclic(world: World) -> None:
    flow = plan(world.catalog, world.status)
    downstream: dict[str, set[str]] = {}
    for e in flow.edges:
        downstream.setdefault(e.supplier, set()).add(e.consumer)
    indegree = {n: 0 for n in flow.members}
    for consumers in downstream.values():
        for c in consumers:
            indegree[c] += 1
    ready = [n for n, d in indegree.items() if d == 0]
    ordered = 0
    while ready:
        node_id = ready.pop()
        ordered += 1
        for c in downstream.get(node_id, ()):
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    assert ordered == len(flow.members)


@given(worlds())
@examples(300)
def test_p4_every_node_that_could_be_viable_is_a_member(world: World) -> None:
    assert plan(world.catalog, world.status).members == naive_viable(world)


@given(worlds(), st.data())
@examples(400)
def test_p5_one_change_moves_only_what_it_forces(world: World, data: st.DataObject) -> None:
    before = plan(world.catalog, world.status)
    old_world = World(dict(world.catalog), dict(world.status), world.n_items)
    change = data.draw(changes(world))
    after = plan(world.catalog, world.status, before.edges)
    old_links, new_links = links_of(before), links_of(after)
    newly_viable = after.members - before.members
    gone_consumers: dict[str, int] = {}
    for _consumer, item in old_links.keys() - new_links.keys():
        gone_consumers[item] = gone_consumers.get(item, 0) + 1
    other_moves: dict[str, int] = {}
    for (consumer, item), new in new_links.items():
        old = old_links.get((consumer, item))
        if old is None or consumer == change.node_id:
            continue
        viable_suppliers = set(suppliers_in(world, after, item))
        if old[0] in viable_suppliers and old[0] != new[0]:
            if change.node_id in (old[0], new[0]) or new[0] in newly_viable:
                continue  # touches the changed node, or moves into new capacity
            other_moves[item] = other_moves.get(item, 0) + 1
        # Previous backups stay while viable and not promoted, in their order.
        kept = [b for b in old[1:] if b in viable_suppliers and b != new[0]]
        assert new[1 : 1 + len(kept)] == kept
    for item, moved in other_moves.items():
        assert change.kind not in ADDS_CAPACITY or change.kind == "add", (item, moved)
        assert moved <= gone_consumers.get(item, 0), (change, item, moved)
    # Items none of whose suppliers, consumers or quantities changed keep all their edges.
    changed_items = {
        i
        for n in (before.members ^ after.members) | {change.node_id}
        for w in (old_world, world)
        if n in w.catalog
        for i in (w.catalog[n].produces.item, *w.catalog[n].required_items)
    }
    for item in {e.item for e in before.edges} - changed_items:
        assert [e for e in before.edges if e.item == item] == [
            e for e in after.edges if e.item == item
        ]


@given(worlds(), st.data())
@examples(300)
def test_p6_primaries_are_balanced_by_capacity(world: World, data: st.DataObject) -> None:
    # Against a flow made for other liveness, or an arbitrary one: kept primaries unbalance.
    if data.draw(st.booleans()):
        previous = list(plan(world.catalog, data.draw(statuses(world.catalog))).edges)
    else:
        previous = data.draw(arbitrary_flows(world))
    flow = plan(world.catalog, world.status, previous)
    for item in {e.item for e in flow.edges}:
        load = loads(world, flow, item)
        assert is_balanced(load, {s: world.catalog[s].capacity for s in load}), (item, load)


@given(worlds(), st.randoms(use_true_random=False))
@examples(300)
def test_p7_result_depends_on_contents_not_order(world: World, rnd: random.Random) -> None:
    previous = plan(world.catalog, {})  # a different flow to be stable against
    expected = plan(world.catalog, world.status, previous.edges)

    def shuffled(mapping: dict) -> dict:
        keys = list(mapping)
        rnd.shuffle(keys)
        return {k: mapping[k] for k in keys}

    edges = list(previous.edges)
    rnd.shuffle(edges)
    assert plan(shuffled(world.catalog), shuffled(world.status), edges) == expected


@given(worlds(), st.data())
@examples(300)
def test_replanning_a_plan_against_itself_is_a_fixpoint(
    world: World, data: st.DataObject
) -> None:
    start = plan(world.catalog, world.status, data.draw(arbitrary_flows(world)))
    data.draw(changes(world))
    once = plan(world.catalog, world.status, start.edges)
    assert plan(world.catalog, world.status, once.edges) == once
    assert plan(world.catalog, world.status, once) == once


def minimal_moves(before: dict[str, int], capacity: dict[str, int]) -> int:
    """Fewest consumers to move from load vector ``before`` to any balanced vector."""
    suppliers = sorted(before)
    total = sum(before.values())
    best = total

    def compositions(n: int, parts: int) -> Iterator[tuple[int, ...]]:
        if parts == 1:
            yield (n,)
            return
        for first in range(n + 1):
            for rest in compositions(n - first, parts - 1):
                yield (first, *rest)

    for target in compositions(total, len(suppliers)):
        load = dict(zip(suppliers, target, strict=True))
        if is_balanced(load, capacity):
            best = min(best, sum(max(0, load[s] - before[s]) for s in suppliers))
    return best


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
    st.integers(0, 9),
    st.sampled_from(["join", "revive", "undrain", "grow"]),
    st.integers(1, 4),
)
@examples(300)
def test_added_capacity_takes_exactly_the_consumers_balance_needs(
    capacities: list[int], n_consumers: int, how: str, new_capacity: int
) -> None:
    catalog = {f"s{k}": spec(f"s{k}", "x", capacity=c) for k, c in enumerate(capacities)}
    catalog.update({f"c{k}": spec(f"c{k}", "y", ("x",)) for k in range(n_consumers)})
    status: dict[str, NodeStatus] = {}
    newcomer = "s9"
    if how == "grow":
        newcomer = "s0"
    else:
        catalog[newcomer] = spec(newcomer, "x", capacity=new_capacity)
        if how == "join":
            del catalog[newcomer]
        status[newcomer] = DEAD if how == "revive" else NodeStatus(drained=True)
    world = World(catalog, status, 2)
    before = plan(catalog, status)
    if how == "grow":
        catalog["s0"] = spec("s0", "x", capacity=catalog["s0"].capacity + new_capacity)
    else:
        catalog[newcomer] = spec(newcomer, "x", capacity=new_capacity)
        status.pop(newcomer, None)
    after = plan(catalog, status, before.edges)
    old, new = primaries(before.edges), primaries(after.edges)
    moved = [c for c in old if old[c] != new[c]]
    assert all(new[c] == newcomer for c in moved)
    load_before = dict.fromkeys(suppliers_in(world, after, "x"), 0)
    for supplier in old.values():
        load_before[supplier] += 1
    capacity = {s: catalog[s].capacity for s in load_before}
    assert len(moved) == minimal_moves(load_before, capacity)
    assert is_balanced(loads(world, after, "x"), capacity)


@given(worlds(), st.lists(st.data(), min_size=1, max_size=6))
@examples(200)
def test_incremental_replan_equals_full_plan(world: World, steps: list[st.DataObject]) -> None:
    planner = Planner()
    flow = planner.full(world.catalog, world.status)
    assert flow == plan(world.catalog, world.status)
    for data in steps:
        change = data.draw(changes(world))
        reference = plan(world.catalog, world.status, flow)
        flow = planner.after_change(world.catalog, world.status, flow, change.node_id)
        assert flow == reference, change


@given(worlds(max_per_item=6), st.data())
@examples(200)
def test_heap_and_scan_paths_of_assignment_agree(world: World, data: st.DataObject) -> None:
    previous = data.draw(arbitrary_flows(world))
    scanned = plan(world.catalog, world.status, previous)
    limit = planner_assign.SCAN_LIMIT
    planner_assign.SCAN_LIMIT = 0  # every item takes the heap path
    try:
        assert plan(world.catalog, world.status, previous) == scanned
    finally:
        planner_assign.SCAN_LIMIT = limit


@given(st.text(), st.text(), st.integers(), st.lists(st.text(), max_size=3, unique=True))
@examples(50)
def test_fast_edge_builder_makes_the_same_records(
    consumer: str, item: str, qty: int, ranked: list[str]
) -> None:
    fast_build = planner_edges.link_edges
    assert fast_build is not planner_edges.link_edges_slow, "the fast builder fell back"
    fast: defaultdict[str, list[Edge]] = defaultdict(list)
    slow: defaultdict[str, list[Edge]] = defaultdict(list)
    fast_build(consumer, item, qty, ranked, fast)
    planner_edges.link_edges_slow(consumer, item, qty, ranked, slow)
    assert fast.keys() == slow.keys()
    for supplier in slow:
        for f, s in zip(fast[supplier], slow[supplier], strict=True):
            assert type(f) is Edge
            assert f == s and hash(f) == hash(s) and repr(f) == repr(s)
            assert not f < s and not s < f


def test_incremental_falls_back_to_full_for_a_plan_it_did_not_make() -> None:
    catalog = window_chain()
    foreign = plan(catalog, {})
    planner = Planner()
    flow = planner.after_change(catalog, {"saw-1": DEAD}, foreign, "saw-1")
    assert flow == plan(catalog, {"saw-1": DEAD}, foreign)
    # An unchanged node returns the previous plan object itself.
    assert planner.after_change(catalog, {"saw-1": DEAD}, flow, "saw-2") is flow


def test_a_failed_replan_is_never_trusted_as_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = window_chain()
    planner = Planner()
    flow = planner.full(catalog, {})

    def broken(*args: object) -> None:
        raise RuntimeError("planner bug")

    with monkeypatch.context() as patched:
        patched.setattr(planner_module, "assign_item", broken)
        with pytest.raises(RuntimeError):
            planner.after_change(catalog, {"saw-1": DEAD}, flow, "saw-1")
    # The caches were left half-updated; the planner must plan in full, not trust them.
    assert planner.after_change(catalog, {"saw-1": DEAD}, flow, "saw-1") == plan(
        catalog, {"saw-1": DEAD}, flow
    )
