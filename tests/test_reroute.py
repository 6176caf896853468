"""route_around: a down link is avoided whenever another supplier exists (properties)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from planner_strategies import World, worlds

from fos_raft.model import ItemReq, NodeSpec, NodeStatus
from fos_raft.planner.assign import Links, assign_item
from fos_raft.planner.plan import Planner, plan
from fos_raft.planner.reroute import route_around

NAMES = [f"s{i}" for i in range(5)]
CONSUMERS = [f"c{i}" for i in range(5)]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], dict[str, Links], set[tuple[str, str]]]:
    suppliers = sorted(draw(st.sets(st.sampled_from(NAMES), min_size=1)))
    consumers = sorted(draw(st.sets(st.sampled_from(CONSUMERS), min_size=1)))
    capacity = {s: draw(st.integers(1, 3)) for s in suppliers}
    links = assign_item(suppliers, capacity, consumers, {})
    pairs = [(s, c) for s in suppliers for c in consumers]
    down = draw(st.sets(st.sampled_from(pairs)))
    return suppliers, links, down


@given(cases())
def test_no_down_links_changes_nothing(case: tuple) -> None:
    suppliers, links, _ = case
    assert route_around(suppliers, links, ()) == links


@given(cases())
def test_down_pairs_avoided_when_another_supplier_exists(case: tuple) -> None:
    suppliers, links, down = case
    routed = route_around(suppliers, links, down)
    assert routed.keys() == links.keys()
    for consumer, lk in routed.items():
        chain = (lk.primary, *lk.backups)
        assert set(chain) <= set(suppliers)
        assert len(set(chain)) == len(chain)
        if any((s, consumer) not in down for s in suppliers):
            assert all((s, consumer) not in down for s in chain)
        else:
            assert lk == links[consumer]


@given(cases())
def test_untouched_consumers_keep_their_links(case: tuple) -> None:
    suppliers, links, down = case
    routed = route_around(suppliers, links, down)
    for consumer, lk in links.items():
        if not any((s, consumer) in down for s in (lk.primary, *lk.backups)):
            assert routed[consumer] == lk


@given(cases())
def test_deterministic_whatever_the_order_of_down_pairs(case: tuple) -> None:
    suppliers, links, down = case
    forward = route_around(suppliers, links, sorted(down))
    backward = route_around(suppliers, links, sorted(down, reverse=True))
    assert forward == backward == route_around(suppliers, dict(links), set(down))


def test_next_backup_takes_over() -> None:
    links = {"c": Links("a", ("b", "d"))}
    assert route_around(["a", "b", "d"], links, {("a", "c")}) == {"c": Links("b", ("d",))}


def test_all_down_keeps_links() -> None:
    links = {"c": Links("a", ("b",))}
    assert route_around(["a", "b"], links, {("a", "c"), ("b", "c")}) == links


@given(worlds(), st.data())
def test_plan_avoids_down_links_and_is_deterministic(world: World, data: st.DataObject) -> None:
    base = plan(world.catalog, world.status)
    pairs = sorted({(e.supplier, e.consumer) for e in base.edges})
    down = data.draw(st.sets(st.sampled_from(pairs))) if pairs else set()
    routed = plan(world.catalog, world.status, base, down)
    assert routed == plan(world.catalog, world.status, base, sorted(down, reverse=True))
    suppliers_of: dict[tuple[str, str], set[str]] = {}
    for e in base.edges:
        suppliers_of.setdefault((e.consumer, e.item), set()).add(e.supplier)
    # the same nodes flow: a down link changes who supplies whom, never who is viable
    assert {(e.consumer, e.item) for e in routed.edges} == suppliers_of.keys()
    for e in routed.edges:
        reachable = [s for s in suppliers_of[e.consumer, e.item] if (s, e.consumer) not in down]
        if reachable:
            assert (e.supplier, e.consumer) not in down


@given(worlds())
def test_plan_without_down_links_is_unchanged(world: World) -> None:
    base = plan(world.catalog, world.status)
    assert plan(world.catalog, world.status, base, ()) == plan(world.catalog, world.status, base)


def test_incremental_planner_keeps_routing_while_a_link_is_down() -> None:
    catalog = {
        "a": NodeSpec("a", "127.0.0.1:1", ItemReq("x", 1)),
        "b": NodeSpec("b", "127.0.0.1:2", ItemReq("x", 1)),
        "c": NodeSpec("c", "127.0.0.1:3", ItemReq("y", 1), (ItemReq("x", 1),)),
        "d": NodeSpec("d", "127.0.0.1:4", ItemReq("z", 1)),
    }
    planner = Planner()
    first = planner.full(catalog, {}, (), {("a", "c")})
    assert all(e.supplier != "a" for e in first.edges if e.consumer == "c")
    after = planner.after_change(catalog, {"d": NodeStatus(alive=False)}, first, "d")
    assert all(e.supplier != "a" for e in after.edges if e.consumer == "c")
