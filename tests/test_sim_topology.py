"""Topology generator properties and the throughput LP on hand-checked chains."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.topology import chain_depth, final_items, generate_topology, throughput_bound
from fos_raft.model import ItemReq, NodeSpec, find_item_cycle

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = 200 * (50 if DEEP else 1)

sizes = st.tuples(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**32 - 1))


@settings(max_examples=EXAMPLES)
@given(sizes)
def test_generated_topology_is_a_valid_acyclic_chain_into_one_final_product(args):
    types, per_type, seed = args
    topo = generate_topology(types, per_type, seed)
    specs = topo.specs
    assert len(specs) == types * per_type
    assert len({s.node_id for s in specs}) == len(specs)
    assert len({s.address for s in specs}) == len(specs)
    for spec in specs:
        spec.validate()
        assert 1 <= len(spec.requires) <= 3 or not spec.requires
    assert find_item_cycle(specs) is None
    assert final_items(specs) == {topo.final_item}
    # every item type reaches the final product through "is required by" edges
    consumers: dict[str, set[str]] = {}
    for spec in specs:
        for req in spec.requires:
            consumers.setdefault(req.item, set()).add(spec.produces.item)
    for item in topo.items:
        seen, todo = {item}, [item]
        while todo:
            for nxt in consumers.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert topo.final_item in seen, f"{item} is a dead branch"
    # T suppliers per type, consumers ask for exactly the producer's batch quantity
    for item in topo.items:
        assert len(topo.suppliers_of(item)) == per_type
    produced = {s.produces.item: s.produces.qty for s in specs}
    for spec in specs:
        for req in spec.requires:
            assert req.qty == produced[req.item]
            assert topo.layer_of[req.item] < topo.layer_of[spec.produces.item]
    # the final product is alone in the last layer
    last = max(topo.layer_of.values())
    assert [i for i, layer in topo.layer_of.items() if layer == last] == [topo.final_item]
    # all suppliers of a type share its spec: the fill is one stage per layer
    assert chain_depth(specs) == last + 1


@settings(max_examples=EXAMPLES // 4)
@given(sizes)
def test_generation_is_determined_by_the_seed(args):
    types, per_type, seed = args
    assert generate_topology(types, per_type, seed) == generate_topology(types, per_type, seed)


def test_different_seeds_give_different_graphs():
    graphs = {
        tuple(sorted(generate_topology(12, 1, seed).requires_of.items())) for seed in range(20)
    }
    assert len(graphs) > 10


def test_node_ids_and_custom_addresses():
    topo = generate_topology(3, 2, 7, address_of=lambda n: f"10.0.0.1:{7000 + len(n)}")
    assert topo.node_ids[:2] == ("t00-s1", "t00-s2")
    assert all(s.address.startswith("10.0.0.1:") for s in topo.specs)
    assert generate_topology(120, 1, 1).node_ids[0] == "t000-s1"


@pytest.mark.parametrize("types,per_type", [(0, 1), (1, 0), (-3, 2)])
def test_bad_sizes_are_refused(types, per_type):
    with pytest.raises(ValueError, match="at least 1"):
        generate_topology(types, per_type, 1)


def spec(node_id: str, produces: str, *requires: str) -> NodeSpec:
    inputs = tuple(ItemReq(r, 1) for r in requires)
    return NodeSpec(node_id, "127.0.0.1:1", ItemReq(produces, 1), inputs)


def test_bound_of_a_simple_chain_is_one_batch_per_cycle():
    chain = [spec("a", "wood"), spec("b", "frame", "wood"), spec("c", "window", "frame")]
    bound = throughput_bound(chain, cycle_s=2.0)
    assert bound.per_s == pytest.approx(0.5)
    assert bound.node_rates == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})


def test_bound_is_limited_by_the_narrowest_stage():
    # two final assemblers, but only one frame maker: one window per cycle
    nodes = [
        spec("w1", "wood"),
        spec("w2", "wood"),
        spec("f1", "frame", "wood"),
        spec("x1", "window", "frame"),
        spec("x2", "window", "frame"),
    ]
    assert throughput_bound(nodes, cycle_s=1.0).per_s == pytest.approx(1.0)
    nodes.append(spec("f2", "frame", "wood"))
    assert throughput_bound(nodes, cycle_s=1.0).per_s == pytest.approx(2.0)


def test_bound_with_two_inputs_and_shared_supply():
    # glass feeds both the pane maker and the window: the window needs one pane and one glass
    nodes = [
        spec("g1", "glass"),
        spec("g2", "glass"),
        spec("p1", "pane", "glass"),
        spec("p2", "pane", "glass"),
        spec("x1", "window", "pane", "glass"),
        spec("x2", "window", "pane", "glass"),
    ]
    # 2 glass/cycle shared by panes and windows: r_p + r_x <= 2, r_x <= r_p -> r_x = 1
    assert throughput_bound(nodes, cycle_s=1.0).per_s == pytest.approx(1.0)


def test_chain_depth_is_the_earliest_way_to_a_final_product():
    chain = [spec("a", "wood"), spec("b", "frame", "wood"), spec("c", "window", "frame", "wood")]
    assert chain_depth(chain) == 3
    # a second frame maker that needs no wood is a shorter way to the first window
    assert chain_depth([*chain, spec("b2", "frame")]) == 2
    assert chain_depth([spec("x", "window", "pane")]) == 0  # nobody makes panes
    assert chain_depth([]) == 0


def test_bound_under_failures_and_per_node_cycle_times():
    nodes = [spec("a1", "wood"), spec("a2", "wood"), spec("b1", "frame", "wood")]
    assert throughput_bound(nodes, 1.0, active={"a1", "a2"}).per_s == 0.0
    assert throughput_bound(nodes, 1.0, active={"a2", "b1"}).per_s == pytest.approx(1.0)
    assert throughput_bound(nodes, 1.0, active=set()).per_s == 0.0
    slow_wood = {"a1": 4.0, "a2": 4.0, "b1": 1.0}
    assert throughput_bound(nodes, slow_wood).per_s == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positive"):
        throughput_bound(nodes, 0.0)


@settings(max_examples=EXAMPLES // 4)
@given(sizes)
def test_bound_of_generated_chains_is_per_type_batches_per_cycle(args):
    # all types have T suppliers at one batch per cycle, and every final batch needs at most
    # one batch of each type per level; the bound is at most T per cycle and positive.
    types, per_type, seed = args
    topo = generate_topology(types, per_type, seed)
    bound = throughput_bound(topo.specs, cycle_s=1.0)
    assert 0 < bound.per_s <= per_type + 1e-6
    # killing every supplier of one type stops the chain
    victim = topo.items[seed % types]
    alive = {n for n in topo.node_ids if not n.startswith(victim + "-")}
    assert throughput_bound(topo.specs, 1.0, active=alive).per_s == pytest.approx(0.0, abs=1e-9)
