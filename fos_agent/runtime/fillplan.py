"""The first-article plan: who makes and who gets each batch of the first final product
(pure: no I/O, no clock).

A chain that fills by fair shares fills every final product's supply tree at once, each
at the pace of the suppliers its flow gives it. When one item is scarce (a 100-type chain
takes 10 batches of ``t02`` per final product, and the planner's flow gives each stage
one ``t02`` supplier), the first product comes cycles after the pipeline fill even though
the item's producers together could have made its share in time (issue 14: 16.3 s
against an 11 s fill; ``bench.sim.firstbound`` is the bound). The plan makes the first
product of each final item the fill's priority:

1. unfold it into the batches it is made of: the final batch at depth 0, one batch of
   each input of a batch at depth + 1 (a batch at depth d is due ``d`` cycles before the
   product);
2. for each item, hand its batches to its producers round robin in order of due date
   (deepest first, then unfolding order), so the k-th earliest-due batch is made by
   producer ``k mod P`` (producers sorted by node id; the final product by the first);
3. the consumer of a batch is the producer of the batch it goes into.

Each node then has its duties: as a supplier, the consumers its first batches go to, in
order; as a consumer, the suppliers its first batches of each input come from, in order.
Every agent computes the same plan from the same catalog (the coordinator's ListNodes),
so the two ends of a planned delivery agree without a message. A plan is advice: a
supplier serves its next planned consumer first when that consumer is waiting (else its
fair share order, fos_agent.core.fairshare), a consumer long-polls its next planned
supplier besides its first one (fos_agent.runtime.inputs), and a delivery whose two ends
are not neighbours in the flow is simply not planned for by either.

A final item outside the model (an item of its product whose producers have different
recipes, or that no active node makes) is left out of the plan, and so is a product
that would take the plan above ``MAX_BATCHES`` batches (deep bills of materials unfold
exponentially); those chains fill by fair shares alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from fos_raft.model import NodeSpec

MAX_BATCHES = 20_000


@dataclass(frozen=True, slots=True)
class Duties:
    """One node's part of the plan."""

    serve: tuple[str, ...] = ()  # consumers of this node's first batches, in order
    buy: dict[str, tuple[str, ...]] = field(default_factory=dict)  # input item -> its
    # suppliers for this node's first batches of it, in order


@dataclass(frozen=True, slots=True)
class Plan:
    deliveries: tuple[tuple[str, str, str], ...]  # (item, supplier, consumer), due order

    def duties(self, node_id: str) -> Duties:
        serve: list[str] = []
        buy: dict[str, list[str]] = defaultdict(list)
        for item, supplier, consumer in self.deliveries:
            if supplier == node_id:
                serve.append(consumer)
            if consumer == node_id:
                buy[item].append(supplier)
        return Duties(tuple(serve), {item: tuple(s) for item, s in buy.items()})


def _recipes(specs: Iterable[NodeSpec]
             ) -> tuple[dict[str, tuple[str, ...] | None], dict[str, list[str]]]:
    """item -> its inputs (None: its producers have different recipes), and its
    producers sorted by node id."""
    requires: dict[str, tuple[str, ...] | None] = {}
    producers: dict[str, list[str]] = defaultdict(list)
    for s in specs:
        inputs = tuple(sorted({r.item for r in s.requires}))
        if requires.setdefault(s.produces.item, inputs) != inputs:
            requires[s.produces.item] = None
        producers[s.produces.item].append(s.node_id)
    return requires, {item: sorted(nodes) for item, nodes in producers.items()}


def _unfold(final: str, requires: dict[str, tuple[str, ...] | None], budget: int
            ) -> list[tuple[str, int, int]] | None:
    """The batches of one ``final`` product, breadth first: (item, depth, index of the
    batch it goes into, -1 for the product); None if an item in it has no producer or
    several recipes, the recipes loop, or it takes more than ``budget`` batches."""
    batches: list[tuple[str, int, int]] = [(final, 0, -1)]
    i = 0
    while i < len(batches):
        item, depth, _ = batches[i]
        inputs = requires.get(item)
        if inputs is None or depth > len(requires):
            return None
        if len(batches) + len(inputs) > budget:
            return None
        batches.extend((x, depth + 1, i) for x in inputs)
        i += 1
    return batches


def first_article_plan(specs: Iterable[NodeSpec], active: Collection[str],
                       max_batches: int = MAX_BATCHES) -> Plan | None:
    """The plan for the first product of every final item (one no active node requires)
    over the ``active`` nodes' specs. A final item outside the model (an item of its
    product nobody active makes, or made by several recipes) is left out; None when no
    final item is left, or their products take more than ``max_batches`` batches."""
    live = [s for s in specs if s.node_id in active]
    requires, producers = _recipes(live)
    used = {r.item for s in live for r in s.requires}
    batches: list[tuple[str, int, int]] = []
    for final in sorted(set(requires) - used):
        tree = _unfold(final, requires, max_batches - len(batches))
        if tree is not None:
            base = len(batches)
            batches.extend((item, depth, parent + base if parent >= 0 else -1)
                           for item, depth, parent in tree)
    if all(parent < 0 for _, _, parent in batches):
        return None  # no final item planned, or none with inputs: nothing to deliver
    by_item: dict[str, list[int]] = defaultdict(list)
    for index, (item, _, _) in enumerate(batches):
        by_item[item].append(index)
    maker: dict[int, str] = {}
    for item, indices in by_item.items():
        indices.sort(key=lambda b: (-batches[b][1], b))  # earliest due first
        makers = producers[item]
        for k, b in enumerate(indices):
            maker[b] = makers[k % len(makers)]  # a final item's one batch: the first
    planned = sorted((b for b in range(len(batches)) if batches[b][2] >= 0),
                     key=lambda b: (-batches[b][1], b))
    return Plan(tuple((batches[b][0], maker[b], maker[batches[b][2]]) for b in planned))
