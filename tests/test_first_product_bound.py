"""The earliest first final product under scarce suppliers (bench.sim.firstbound, pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.firstbound import first_product_bound
from bench.sim.topology import chain_depth, generate_topology
from fos_raft.model import ItemReq, NodeSpec


def _spec(node_id: str, produces: str, *requires: str) -> NodeSpec:
    return NodeSpec(node_id, "127.0.0.1:1", ItemReq(produces, 1),
                    tuple(ItemReq(r, 1) for r in requires))


def test_a_scarce_source_needed_at_every_stage_delays_the_first_product():
    # ore goes into plate, frame and car: three ore batches per car; plate -> frame -> car
    # is 4 stages (the fill), but one ore mine makes one batch a cycle, and plate needs
    # its ore at cycle 1, frame at 2, car at 3: one mine can do exactly that
    specs = [_spec("o1", "ore"), _spec("p1", "plate", "ore"),
             _spec("f1", "frame", "plate", "ore"), _spec("c1", "car", "frame", "ore")]
    bound = first_product_bound(specs)
    assert bound is not None and (bound.fill, bound.pooled, bound.lane) == (4, 4, 4)
    # the car takes a plate instead of ore: ore is due once at cycle 1 (the frame's
    # plate) and twice at cycle 2 (the frame itself, the car's plate); one mine has made
    # only two batches by then, two mines can, but not when each stage buys from one
    specs2 = [_spec("o1", "ore"), _spec("p1", "plate", "ore"),
              _spec("f1", "frame", "plate", "ore"), _spec("c1", "car", "frame", "plate")]
    one_mine = first_product_bound(specs2)
    two_mines = first_product_bound([*specs2, _spec("o2", "ore")])
    assert one_mine is not None and two_mines is not None
    assert (one_mine.fill, one_mine.pooled) == (4, 5)  # the mine is the bottleneck
    assert (two_mines.fill, two_mines.pooled, two_mines.lane) == (4, 4, 5)


def test_catalogs_outside_the_model_have_no_bound():
    two_recipes = [_spec("o1", "ore"), _spec("s1", "steel", "ore"), _spec("s2", "steel")]
    assert first_product_bound(two_recipes) is None
    assert first_product_bound([_spec("c1", "car", "wheel")]) is None  # nobody makes wheels


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60), st.integers(1, 4), st.integers(0, 10_000))
def test_bounds_are_ordered_and_more_suppliers_never_hurt(types, per_type, seed):
    topo = generate_topology(types, per_type, seed)
    bound = first_product_bound(topo.specs)
    assert bound is not None
    assert bound.fill == chain_depth(topo.specs)
    assert bound.fill <= bound.pooled <= bound.lane
    if per_type == 1:
        assert bound.pooled == bound.lane
    more = first_product_bound(generate_topology(types, per_type + 1, seed).specs)
    assert more is not None and more.pooled <= bound.pooled and more.lane == bound.lane
