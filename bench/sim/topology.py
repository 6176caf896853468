"""Seeded random supply-chain topologies and their throughput bound (pure: no I/O, no clock).

`generate_topology` builds the layered DAG of the paper's experiments: N item types, one final
product, T alternative suppliers per type, every type feeding the final product.
`throughput_bound` is the LP of docs/experiments.md: the largest final-product rate the
catalog permits when every node makes at most one batch per cycle.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from fos_raft.model import ItemReq, NodeSpec

SIM_EXTRA_MISSING = ("fos-sim needs numpy and scipy for its throughput bound: "
                     "pip install 'factoryos[sim]'")


class SimExtraMissing(ImportError):
    """numpy/scipy are not installed (they come with the ``sim`` extra)."""

MAX_REQUIRES_PER_TYPE = 3
MAX_BATCH_QTY = 5
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Topology:
    """A generated catalog plus the structure it was generated from (for reports and tests)."""

    specs: tuple[NodeSpec, ...]
    items: tuple[str, ...]  # item types in index order; the last one is the final product
    final_item: str
    layer_of: Mapping[str, int]  # item -> layer (0 = sources; the final product is alone last)
    requires_of: Mapping[str, tuple[str, ...]]  # item -> the item types it is made from
    batch_qty: Mapping[str, int]  # item -> units per batch

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(s.node_id for s in self.specs)

    def suppliers_of(self, item: str) -> tuple[str, ...]:
        return tuple(s.node_id for s in self.specs if s.produces.item == item)


def item_name(index: int, types: int) -> str:
    """``t03``: zero-padded so names sort in index order whatever N is."""
    return f"t{index:0{max(2, len(str(types - 1)))}d}"


def node_name(item: str, supplier: int) -> str:
    """``t03-s1``: supplier numbers start at 1."""
    return f"{item}-s{supplier}"


def generate_topology(
    types: int,
    per_type: int,
    seed: int,
    address_of: Callable[[str], str] | None = None,
) -> Topology:
    """A random layered DAG of ``types`` item types with ``per_type`` suppliers each.

    Construction (all draws from ``random.Random(seed)``):
    1. Type ``types-1`` is the final product. Every other type ``i`` gets one consumer type
       chosen among the types with a higher index that still have fewer than 3 inputs; such a
       type always exists (k later types offer 3k slots and hold at most k-1 edges), so every
       type feeds the final product by construction: no dead branches.
    2. Every type that got a consumer edge in step 1 (a non-source) draws a target of 1-3 inputs
       and tops its list up with random lower-index types: the item graph only points from
       higher to lower indices, so it is acyclic.
    3. Layers are longest-path depths from the sources; the final product is the only type
       nobody requires, so it is alone in the last layer.
    4. Each type draws a batch quantity 1..5; consumers require exactly that quantity, so "one
       batch of every input per cycle" and unit counting agree.

    ``address_of(node_id)`` gives each node's address; by default ``127.0.0.1:<port>`` with
    placeholder ports from 20000 up (the harness passes real free ports).
    """
    if types < 1:
        raise ValueError(f"--types must be at least 1, got {types}")
    if per_type < 1:
        raise ValueError(f"--per-type must be at least 1, got {per_type}")
    rng = random.Random(seed)
    items = [item_name(i, types) for i in range(types)]
    inputs: list[list[int]] = [[] for _ in range(types)]
    for i in range(types - 2, -1, -1):
        open_slots = [j for j in range(i + 1, types) if len(inputs[j]) < MAX_REQUIRES_PER_TYPE]
        inputs[rng.choice(open_slots)].append(i)
    for i in range(types):
        if not inputs[i]:
            continue  # a source
        target = rng.randint(len(inputs[i]), MAX_REQUIRES_PER_TYPE)
        candidates = [j for j in range(i) if j not in inputs[i]]
        rng.shuffle(candidates)
        inputs[i].extend(candidates[: max(0, target - len(inputs[i]))])
        inputs[i].sort()
    layer = [0] * types
    for i in range(types):
        layer[i] = 1 + max((layer[j] for j in inputs[i]), default=-1)
    batch_qty = {item: rng.randint(1, MAX_BATCH_QTY) for item in items}
    if address_of is None:
        ids = [node_name(item, s) for item in items for s in range(1, per_type + 1)]
        ports = {node_id: 20000 + n for n, node_id in enumerate(ids)}

        def address_of(node_id: str) -> str:
            return f"{DEFAULT_HOST}:{ports[node_id]}"

    specs = []
    for i, item in enumerate(items):
        requires = tuple(ItemReq(items[j], batch_qty[items[j]]) for j in inputs[i])
        for s in range(1, per_type + 1):
            node_id = node_name(item, s)
            specs.append(
                NodeSpec(
                    node_id=node_id,
                    address=address_of(node_id),
                    produces=ItemReq(item, batch_qty[item]),
                    requires=requires,
                )
            )
    return Topology(
        specs=tuple(specs),
        items=tuple(items),
        final_item=items[-1],
        layer_of={item: layer[i] for i, item in enumerate(items)},
        requires_of={item: tuple(items[j] for j in inputs[i]) for i, item in enumerate(items)},
        batch_qty=batch_qty,
    )


def final_items(specs: Iterable[NodeSpec]) -> frozenset[str]:
    """Item types that are produced but required by nobody: the chain's final products."""
    specs = list(specs)
    required = {r.item for s in specs for r in s.requires}
    return frozenset(s.produces.item for s in specs if s.produces.item not in required)


def chain_depth(specs: Iterable[NodeSpec], final: Collection[str] | None = None) -> int:
    """Stages on the shortest way to a first final product: a perfect chain cannot make
    its first final product before ``chain_depth x cycle_s`` (the pipeline fill).

    An item is ready after ``1 + max(depth of its inputs)`` stages with the earliest of its
    producers (a source: 1); the depth is the earliest final item's. 0 when no final item
    can be made (an input nobody produces)."""
    specs = list(specs)
    if final is None:
        final = final_items(specs)
    depth: dict[str, int] = {}
    changed = True
    while changed:  # relax until stable: the item graph is acyclic, so this ends
        changed = False
        for s in specs:
            ins = [depth.get(r.item) for r in s.requires]
            if any(d is None for d in ins):
                continue
            d = 1 + max((d for d in ins if d is not None), default=0)
            if d < depth.get(s.produces.item, d + 1):
                depth[s.produces.item] = d
                changed = True
    return min((depth[item] for item in final if item in depth), default=0)


@dataclass(frozen=True, slots=True)
class Bound:
    """The LP optimum: final-product batches per second and each node's rate at the optimum."""

    per_s: float
    node_rates: Mapping[str, float]


def throughput_bound(
    specs: Sequence[NodeSpec],
    cycle_s: float | Mapping[str, float],
    active: Collection[str] | None = None,
    final: Collection[str] | None = None,
) -> Bound:
    """Max final-product batches/s at one batch per node per cycle (docs/experiments.md).

    Variables: r_n in [0, 1/cycle_s(n)] for every node n in ``active`` (default: all; dead and
    drained nodes are left out). For every item X: sum of r_c over nodes c requiring X <= sum of
    r_p over nodes p producing X (each consumer takes one batch of X per cycle, each producer
    makes one). Objective: maximise the sum of r_p over producers of the ``final`` items
    (default: the items nobody requires).
    """
    nodes = [s for s in specs if active is None or s.node_id in active]
    if final is None:
        final = final_items(specs)
    if not nodes:
        return Bound(0.0, {})

    def max_rate(node_id: str) -> float:
        c = cycle_s[node_id] if isinstance(cycle_s, Mapping) else cycle_s
        if c <= 0:
            raise ValueError(f"cycle time of {node_id} must be positive, got {c}")
        return 1.0 / c

    try:  # lazily: the core install (agents, coordinators) does without numpy and scipy
        import numpy as np
        from scipy.optimize import linprog
    except ImportError:
        raise SimExtraMissing(SIM_EXTRA_MISSING) from None
    index = {s.node_id: n for n, s in enumerate(nodes)}
    items = sorted({s.produces.item for s in nodes} | {r.item for s in nodes for r in s.requires})
    row = {item: k for k, item in enumerate(items)}
    a_ub = np.zeros((len(items), len(nodes)))
    for s in nodes:
        a_ub[row[s.produces.item], index[s.node_id]] -= 1.0
        for r in s.requires:
            a_ub[row[r.item], index[s.node_id]] += 1.0
    objective = np.zeros(len(nodes))
    for s in nodes:
        if s.produces.item in final:
            objective[index[s.node_id]] = -1.0  # linprog minimises
    if not objective.any():
        return Bound(0.0, {s.node_id: 0.0 for s in nodes})
    result = linprog(
        objective,
        A_ub=a_ub,
        b_ub=np.zeros(len(items)),
        bounds=[(0.0, max_rate(s.node_id)) for s in nodes],
        method="highs",
    )
    if result.status != 0:  # r = 0 is always feasible, so this is a solver failure
        raise RuntimeError(f"throughput LP failed: {result.message}")
    rates = {s.node_id: max(0.0, float(result.x[index[s.node_id]])) for s in nodes}
    return Bound(per_s=max(0.0, -float(result.fun)), node_rates=rates)
