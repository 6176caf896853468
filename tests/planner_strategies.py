"""Hypothesis strategies for planner tests: random layered catalogs, liveness, single changes.

Item ``i<k>`` may only be made from items ``i<j>`` with ``j < k``, so every catalog drawn here
has an acyclic item graph, as ``model.check_catalog_with`` guarantees in production. Nodes of
the same item may use different recipes; some items have no supplier at all, so viability
cascades happen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import strategies as st

from fos_raft.model import Edge, ItemReq, NodeSpec, NodeStatus

ITEMS = tuple(f"i{k}" for k in range(6))
ALIVE = NodeStatus()
DEAD = NodeStatus(alive=False, down_reason="probe failed")
DRAINED = NodeStatus(drained=True)
DEAD_DRAINED = NodeStatus(alive=False, drained=True, down_reason="probe failed")

STATES = ("absent", "alive", "alive", "alive", "dead", "drained", "both")

node_ids = st.text(alphabet="abcnxz0179", min_size=1, max_size=3)


@st.composite
def node_specs(
    draw: st.DrawFn, node_id: str, n_items: int, index: int | None = None
) -> NodeSpec:
    """A node making item ``index`` (random if None) from 0..3 lower items."""
    if index is None:
        index = draw(st.integers(0, n_items - 1))
    inputs = draw(st.lists(st.integers(0, index - 1), unique=True, max_size=3)) if index else []
    requires = tuple(ItemReq(ITEMS[j], draw(st.integers(1, 3))) for j in sorted(inputs))
    return NodeSpec(
        node_id=node_id,
        address="127.0.0.1:7000",
        produces=ItemReq(ITEMS[index], 1),
        requires=requires,
        capacity=draw(st.integers(1, 4)),
    )


@dataclass
class World:
    """A catalog, its liveness (some nodes absent from ``status``: alive) and its item count."""

    catalog: dict[str, NodeSpec]
    status: dict[str, NodeStatus]
    n_items: int


@st.composite
def worlds(draw: st.DrawFn, max_per_item: int = 4) -> World:
    """Items ``i0..i<n-1>``, each with 0..``max_per_item`` suppliers sharing the item's recipe
    (or, now and then, their own): items with several suppliers and several consumers, where
    balance and stability have something to decide, are the common case."""
    n_items = draw(st.sampled_from((3, 4, 2, 1)))  # sampled_from favours the first ones
    catalog: dict[str, NodeSpec] = {}
    for index in range(n_items):
        recipe: tuple[ItemReq, ...] = ()
        if index:
            inputs = draw(st.lists(st.integers(0, index - 1), unique=True, min_size=1, max_size=2))
            recipe = tuple(ItemReq(ITEMS[j], 1 + j % 3) for j in sorted(inputs))
        for _ in range(draw(st.sampled_from((2, 3, *range(max_per_item + 1))))):
            node_id = draw(node_ids.filter(lambda n: n not in catalog))
            node = draw(node_specs(node_id, index + 1, index))
            if draw(st.integers(0, 3)):
                node = replace(node, requires=recipe)
            catalog[node_id] = node
    return World(catalog, draw(statuses(catalog)), n_items)


@st.composite
def statuses(draw: st.DrawFn, catalog: dict[str, NodeSpec]) -> dict[str, NodeStatus]:
    """Random liveness for ``catalog``'s nodes; absent nodes count as alive."""
    status: dict[str, NodeStatus] = {}
    for node_id in catalog:
        state = draw(st.sampled_from(STATES))
        if state != "absent":
            status[node_id] = {
                "alive": ALIVE,
                "dead": DEAD,
                "drained": DRAINED,
                "both": DEAD_DRAINED,
            }[state]
    return status


CHANGES = ("kill", "revive", "drain", "undrain", "add", "remove", "requires", "capacity")
ADDS_CAPACITY = frozenset({"revive", "undrain", "add", "capacity_up"})


@dataclass
class Change:
    kind: str  # one of CHANGES, with "capacity" split into capacity_up / capacity_down
    node_id: str


@st.composite
def changes(draw: st.DrawFn, world: World) -> Change:
    """Apply one random single-node change to ``world`` in place and describe it."""
    kind = draw(st.sampled_from(CHANGES))
    ids = sorted(world.catalog)
    if kind == "add" or not ids:
        node_id = draw(node_ids.filter(lambda n: n not in world.catalog))
        world.catalog[node_id] = draw(node_specs(node_id, world.n_items))
        if draw(st.booleans()):
            world.status[node_id] = ALIVE
        return Change("add", node_id)
    node_id = draw(st.sampled_from(ids))
    current = world.status.get(node_id, ALIVE)
    if kind == "remove":
        del world.catalog[node_id]
        world.status.pop(node_id, None)
    elif kind == "kill":
        world.status[node_id] = replace(current, alive=False, down_reason="killed")
    elif kind == "revive":
        world.status[node_id] = replace(current, alive=True, down_reason="")
    elif kind == "drain":
        world.status[node_id] = replace(current, drained=True)
    elif kind == "undrain":
        world.status[node_id] = replace(current, drained=False)
    elif kind == "requires":
        fresh = draw(node_specs(node_id, world.n_items))
        old = world.catalog[node_id]
        index = ITEMS.index(old.produces.item)
        kept_item = tuple(r for r in fresh.requires if ITEMS.index(r.item) < index)
        world.catalog[node_id] = replace(old, requires=kept_item)
    else:
        old = world.catalog[node_id]
        capacity = draw(st.integers(1, 6).filter(lambda c: c != old.capacity))
        world.catalog[node_id] = replace(old, capacity=capacity)
        kind = "capacity_up" if capacity > old.capacity else "capacity_down"
    return Change(kind, node_id)


@st.composite
def arbitrary_flows(draw: st.DrawFn, world: World) -> list[Edge]:
    """A "previous flow" that no planner made: random, unbalanced, even malformed edges.

    Suppliers are any catalog producers of the item (dead ones too); some links lack a
    rank-0 edge, some have two, ranks may repeat or skip.
    """
    producers: dict[str, list[str]] = {}
    for node_id in sorted(world.catalog):
        producers.setdefault(world.catalog[node_id].produces.item, []).append(node_id)
    edges: list[Edge] = []
    for node_id in sorted(world.catalog):
        for req in world.catalog[node_id].requires:
            candidates = producers.get(req.item)
            if not candidates or not draw(st.integers(0, 9)):
                continue
            ranked = draw(
                st.lists(st.tuples(st.sampled_from(candidates), st.integers(0, 3)), max_size=4)
            )
            edges.extend(Edge(s, node_id, req.item, req.qty, rank) for s, rank in ranked)
    return edges
