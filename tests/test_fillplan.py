"""The first-article plan (fos_agent.runtime.fillplan, pure) and its supplier side in
FairShare: who makes and who gets each batch of the first final product."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.firstbound import first_product_bound
from bench.sim.topology import generate_topology
from fos_agent.core.fairshare import PLAN_SKIPS, FairShare
from fos_agent.runtime.fillplan import Plan, first_article_plan
from fos_raft.model import ItemReq, NodeSpec


def _spec(node_id: str, produces: str, *requires: str) -> NodeSpec:
    return NodeSpec(node_id, "127.0.0.1:1", ItemReq(produces, 1),
                    tuple(ItemReq(r, 1) for r in requires))


def _everyone(specs: list[NodeSpec]) -> set[str]:
    return {s.node_id for s in specs}


def _first_product_cycle(plan: Plan, specs: list[NodeSpec]) -> int:
    """The cycle the plan's first product is made in when every node makes its planned
    batches in plan order, each as soon as its inputs have come (one batch a cycle)."""
    requires = {s.produces.item: sorted({r.item for r in s.requires}) for s in specs}
    done_at: dict[str, int] = defaultdict(int)  # node -> cycle of its last planned batch
    ready: dict[tuple[str, str], list[int]] = defaultdict(list)  # (node, item) -> cycles
    for item, supplier, consumer in plan.deliveries:  # inputs always come before users
        inputs = [ready[(supplier, x)].pop(0) for x in requires[item]]
        made = max([done_at[supplier], *inputs]) + 1
        done_at[supplier] = made
        ready[(consumer, item)].append(made)
    finals = [s.node_id for s in specs if s.produces.item not in
              {x for xs in requires.values() for x in xs}]
    return min(max([0, *(ready[(n, x)][0] for x in requires[spec.produces.item])]) + 1
               for n in finals for spec in specs if spec.node_id == n
               if all(ready[(n, x)] for x in requires[spec.produces.item]))


def test_a_scarce_source_is_pooled_for_the_first_product():
    # a car takes a frame and a plate, a frame a plate and ore, a plate ore: three ore
    # batches for the first car (depth 3: the frame's plate's; depth 2: the frame's own
    # and the car's plate's), due in cycles 1, 2 and 2 for a car at the 4-cycle fill
    specs = [_spec("o1", "ore"), _spec("o2", "ore"), _spec("p1", "plate", "ore"),
             _spec("p2", "plate", "ore"), _spec("f1", "frame", "plate", "ore"),
             _spec("c1", "car", "frame", "plate")]
    plan = first_article_plan(specs, _everyone(specs))
    assert plan is not None
    assert plan.deliveries == (  # in due order; each item's producers take turns
        ("ore", "o1", "p1"),  # depth 3
        ("ore", "o2", "f1"), ("plate", "p1", "f1"), ("ore", "o1", "p2"),  # depth 2
        ("frame", "f1", "c1"), ("plate", "p2", "c1"))  # depth 1
    assert plan.duties("o1").serve == ("p1", "p2")
    assert plan.duties("c1").buy == {"frame": ("f1",), "plate": ("p2",)}
    assert plan.duties("x").serve == () and plan.duties("x").buy == {}
    assert _first_product_cycle(plan, specs) == 4  # the fill: ore, plate, frame, car
    # without the second mine, one mine serves all three in due order: a cycle later
    alone = [s for s in specs if s.node_id != "o2"]
    plan1 = first_article_plan(alone, _everyone(alone))
    assert plan1 is not None and plan1.duties("o1").serve == ("p1", "f1", "p2")
    assert _first_product_cycle(plan1, alone) == 5
    # only the active nodes take part
    assert first_article_plan(specs, _everyone(specs) - {"o2"}) == plan1


def test_catalogs_outside_the_model_have_no_plan():
    two_recipes = [_spec("o1", "ore"), _spec("s1", "steel", "ore"), _spec("s2", "steel")]
    assert first_article_plan(two_recipes, _everyone(two_recipes)) is None
    nobody_makes_ore = [_spec("s1", "steel", "ore"), _spec("c1", "car", "steel")]
    assert first_article_plan(nobody_makes_ore, _everyone(nobody_makes_ore)) is None
    specs = [_spec("o1", "ore"), _spec("s1", "steel", "ore"), _spec("c1", "car", "steel")]
    assert first_article_plan(specs, _everyone(specs) - {"o1"}) is None  # ore is down
    assert first_article_plan(specs, _everyone(specs), max_batches=2) is None  # too big
    assert first_article_plan(specs, _everyone(specs), max_batches=3) is not None
    # a final item outside the model leaves the others planned (a shared catalog where
    # another line lacks a supplier)
    mixed = [*specs, _spec("w1", "wheel", "rubber"), _spec("b1", "bike", "wheel")]
    plan = first_article_plan(mixed, _everyone(mixed))
    assert plan is not None
    assert plan.deliveries == (("ore", "o1", "s1"), ("steel", "s1", "c1"))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60), st.integers(1, 4), st.integers(0, 10_000))
def test_plans_of_generated_chains_make_the_first_product_at_the_pooled_bound(
        types, per_type, seed):
    topo = generate_topology(types, per_type, seed)
    specs = list(topo.specs)
    plan = first_article_plan(specs, _everyone(specs))
    bound = first_product_bound(specs)
    assert plan is not None and bound is not None
    item_of = {s.node_id: s.produces.item for s in specs}
    requires = {s.node_id: {r.item for r in s.requires} for s in specs}
    # every delivery goes from a producer of the item to a node that requires it, and
    # each item's planned batches are spread evenly over its producers
    per_producer: dict[str, Counter[str]] = defaultdict(Counter)
    for item, supplier, consumer in plan.deliveries:
        assert item_of[supplier] == item and item in requires[consumer]
        per_producer[item][supplier] += 1
    for item, counts in per_producer.items():
        makers = [n for n, i in item_of.items() if i == item]
        spread = [counts.get(n, 0) for n in makers]
        assert max(spread) - min(spread) <= 1
    # the two ends of a delivery see it in the same order
    for node in item_of:
        duties = plan.duties(node)
        for suppliers in duties.buy.values():
            for s in set(suppliers):
                mine = [c for c in plan.duties(s).serve if c == node]
                assert len(mine) == suppliers.count(s)
    assert _first_product_cycle(plan, specs) == bound.pooled


def _serve(fair: FairShare, waiting: str) -> str:
    """The consumer ``fair`` serves next among ``waiting`` (one batch available)."""
    (winner,) = [c for c in waiting if fair.turn(c, 1)]
    fair.served(winner)
    return winner


def test_a_supplier_serves_its_planned_consumers_first_when_they_wait():
    fair = FairShare()
    for c in "abc":
        fair.enter(c)
    fair.set_plan(["c", "b", "x", "c"])
    assert _serve(fair, "abc") == "c"  # planned, though a comes first by name
    assert _serve(fair, "abc") == "b"
    assert fair.plan() == ("x", "c")
    # x is not waiting: fair order meanwhile (a has not been served: it goes first), and
    # after PLAN_SKIPS such batches x is dropped and c's planned batch comes
    skipped = [_serve(fair, "abc") for _ in range(PLAN_SKIPS)]
    assert skipped[0] == "a"
    assert fair.plan() == ("c",)
    assert _serve(fair, "abc") == "c"
    assert fair.plan() == ()
    # a planned service counts like any other: c, served three times, now waits its turn
    fair.set_plan([])
    assert [_serve(fair, "abc") for _ in range(3)].count("c") <= 1


def test_two_batches_at_once_go_to_the_planned_consumer_and_the_next_in_line():
    fair = FairShare()
    for c in "ab":
        fair.enter(c)
    fair.set_plan(["b"])
    assert fair.ahead_of("b") == 0 and fair.ahead_of("a") == 1
    assert fair.turn("a", 2) and fair.turn("b", 2) and not fair.turn("a", 1)
    fair.leave("b")  # no longer waiting: the plan's head does not hold a back
    assert fair.turn("a", 1)
