"""The earliest a chain can make its first final product when its suppliers are scarce
(pure: no I/O, no clock).

The pipeline fill (``chain_depth x cycle_s``, bench.sim.topology) assumes every stage has
its inputs the moment it could use them. A scarce item breaks that: one final product of
a generated 100-type chain takes 10 batches of ``t02`` (its bill of materials, counted
in batches), and a stage makes one batch per cycle, so the stages that need ``t02`` early
compete for it. This module counts that competition.

Unfold one final product into the batches it is made of: the final batch at depth 0,
one batch of every input of a batch at depth + 1. A batch at depth d must be made by
cycle ``F - d`` for the final product to be made at cycle F. An item's producers make
its first batch at the item's own fill depth at the earliest and then one batch per
cycle each, so with P producers the k-th earliest-due batch of item X cannot be made
before ``fill(X) + ceil(k / P) - 1``. The smallest F that meets this for every item is a
lower bound on the first product (a relaxation: it ignores transfers and every other
item's competition for the same stages, so a real schedule can be later, never earlier).

Two figures, both in cycles:
- ``pooled``: P = all producers of the item, whichever consumer they serve: the bound
  for any allocation;
- ``lane``: P = 1: the bound when each stage buys from one supplier per input (a flow's
  first supplier, no backups), which is how a filling chain runs (fos_agent.runtime.inputs:
  backups are asked only when the first supplier has nothing).

Catalogs where producers of one item have different recipes are outside this model
(``None``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from fos_raft.model import NodeSpec


@dataclass(frozen=True, slots=True)
class FirstProductBound:
    fill: int  # the pipeline fill: stages on the shortest way to a final product
    pooled: int  # earliest first product, every producer of an item serving anyone
    lane: int  # earliest first product, one producer of each item serving a stage


def _recipes(specs: Iterable[NodeSpec]) -> tuple[dict[str, tuple[str, ...]], dict[str, int]] | None:
    requires: dict[str, tuple[str, ...]] = {}
    producers: dict[str, int] = defaultdict(int)
    for s in specs:
        inputs = tuple(sorted({r.item for r in s.requires}))
        if requires.setdefault(s.produces.item, inputs) != inputs:
            return None  # two recipes for one item
        producers[s.produces.item] += 1
    return requires, dict(producers)


def _fill_depths(requires: dict[str, tuple[str, ...]]) -> dict[str, int] | None:
    """Cycles until an item's first batch can exist (a source: 1); None if some item's
    inputs are not all produced, or the recipes loop."""
    depth: dict[str, int] = {}

    def depth_of(item: str, path: frozenset[str]) -> int | None:
        if item in depth:
            return depth[item]
        if item in path or item not in requires:
            return None
        inputs = [depth_of(x, path | {item}) for x in requires[item]]
        if any(d is None for d in inputs):
            return None
        depth[item] = 1 + max((d for d in inputs if d is not None), default=0)
        return depth[item]

    for item in requires:
        if depth_of(item, frozenset()) is None:
            return None
    return depth


def _due_counts(requires: dict[str, tuple[str, ...]], final: str,
                order: list[str]) -> dict[str, dict[int, int]]:
    """item -> {depth in the unfolded final product: batches of it at that depth}."""
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    counts[final][0] = 1
    for item in order:  # consumers before their inputs
        for d, n in list(counts[item].items()):
            for x in requires[item]:
                counts[x][d + 1] += n
    return counts


def _feasible(f: int, counts: dict[str, dict[int, int]], depth: dict[str, int],
              producers: dict[str, int]) -> bool:
    for item, by_depth in counts.items():
        k = 0
        for d in sorted(by_depth, reverse=True):  # earliest due first
            k += by_depth[d]
            if f - d < depth[item] + math.ceil(k / producers[item]) - 1:
                return False
    return True


def first_product_bound(specs: Iterable[NodeSpec],
                        final: Collection[str] | None = None) -> FirstProductBound | None:
    """The fill and the earliest first final product, pooled and per lane, in cycles
    (None outside the model: several recipes for one item, or no final item can be
    made). The earliest of the ``final`` items (default: the items nobody requires)."""
    specs = list(specs)
    recipes = _recipes(specs)
    if recipes is None:
        return None
    requires, producers = recipes
    depth = _fill_depths(requires)
    if depth is None:
        return None
    if final is None:
        used = {x for inputs in requires.values() for x in inputs}
        final = [item for item in requires if item not in used]
    best: FirstProductBound | None = None
    order = sorted(requires, key=lambda item: -depth[item])
    for item in final:
        if item not in depth:
            continue
        counts = _due_counts(requires, item, order)
        bounds = []
        for per in (producers, dict.fromkeys(producers, 1)):
            f = depth[item]
            while not _feasible(f, counts, depth, per):
                f += 1
            bounds.append(f)
        candidate = FirstProductBound(depth[item], bounds[0], bounds[1])
        if best is None or (candidate.lane, candidate.pooled) < (best.lane, best.pooled):
            best = candidate
    return best
