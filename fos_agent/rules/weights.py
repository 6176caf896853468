"""A supplier's weights for its consumers: their share of the catalog's need for its item,
and the priorities that break the ties between them. Pure: the catalog in, numbers out.

A scarce item shared by several consumer types should go where the final products need
it: in a chain where ``t06`` feeds ``t07`` (4 batches per final product), ``t10`` (2) and
``t15`` (1), a supplier serving them round robin gives each a third until the
over-served branches fill their buffers and block, which takes long at low rates. The
catalog says how many batches of each item one final product takes (its bill of
materials, counted in batches: a consumer takes one batch of each input per cycle):

    need(final item) = 1,   need(X) = sum of need(Y) over the item types Y that require X

A consumer node of type Y then deserves ``need(Y) / (active producers of Y)``: exactly
the node rates of the throughput bound when every item has one recipe (the generated
chains), a sound guess otherwise. Weights only matter while a supplier has fewer batches
than waiting consumers (``fos_agent.rules.share.FairShare``); backpressure still stops a
consumer that cannot use its share.

Priorities break the ties between equal start tags: a consumer's priority is its item's
height, the most stages a batch of it still passes through before it is part of a final
product (a final item: 0). In a filling chain a stage of height h must produce by
``fill - h`` cycles for the first final product to come at the fill, so the highest
consumers are the ones to serve first.

The real agent reads the catalog from the coordinator's ListNodes when its flow changes
(fos_agent.runtime.shares.keep_weights); the simulated factory from its coordinator's
state (fos_agent.testing.factory). Both weigh with ``need_shares``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from fos_raft.model import NodeSpec


def item_needs(specs: Iterable[NodeSpec]) -> dict[str, float]:
    """Batches of each item one final product takes (items nobody requires: 1 each)."""
    specs = list(specs)
    requires: dict[str, set[str]] = {}  # item -> the items its producers require
    for s in specs:
        requires.setdefault(s.produces.item, set()).update(r.item for r in s.requires)
    users: dict[str, set[str]] = {}  # item -> the item types that require it
    for item, inputs in requires.items():
        for x in inputs:
            users.setdefault(x, set()).add(item)
    need: dict[str, float] = {}

    def need_of(item: str, path: frozenset[str]) -> float:
        if item in need:
            return need[item]
        if item in path:  # a cycle (the catalog refuses them): count it once
            return 0.0
        mine = users.get(item)
        value = (sum(need_of(u, path | {item}) for u in mine) if mine else 1.0)
        need[item] = value
        return value

    for item in requires:
        need_of(item, frozenset())
    return need


def item_heights(specs: Iterable[NodeSpec]) -> dict[str, int]:
    """Stages on the longest way from each item to a final product (items nobody
    requires: 0)."""
    users: dict[str, set[str]] = {}  # item -> the item types that require it
    items: set[str] = set()
    for s in specs:
        items.add(s.produces.item)
        for r in s.requires:
            users.setdefault(r.item, set()).add(s.produces.item)
    height: dict[str, int] = {}

    def height_of(item: str, path: frozenset[str]) -> int:
        if item in height:
            return height[item]
        if item in path:  # a cycle (the catalog refuses them): stop there
            return 0
        value = max((1 + height_of(u, path | {item}) for u in users.get(item, ())), default=0)
        height[item] = value
        return value

    for item in items:
        height_of(item, frozenset())
    return height


def consumer_priorities(specs: Iterable[NodeSpec], active: Collection[str],
                        consumers: Iterable[str]) -> dict[str, float]:
    """Priority of each of ``consumers``: its item's height over the ``active`` nodes'
    specs. Unknown consumers are left out (priority 0)."""
    live = [s for s in specs if s.node_id in active]
    height = item_heights(live)
    item_of = {s.node_id: s.produces.item for s in live}
    return {c: float(height[item_of[c]]) for c in consumers if c in item_of}


def consumer_weights(specs: Iterable[NodeSpec], active: Collection[str],
                     consumers: Iterable[str]) -> dict[str, float]:
    """Weight of each of ``consumers``: need(its item) / active producers of its item, over
    the ``active`` nodes' specs (alive, not drained). Unknown consumers are left out."""
    live = [s for s in specs if s.node_id in active]
    need = item_needs(live)
    item_of = {s.node_id: s.produces.item for s in live}
    producers: dict[str, int] = {}
    for s in live:
        producers[s.produces.item] = producers.get(s.produces.item, 0) + 1
    out: dict[str, float] = {}
    for c in consumers:
        item = item_of.get(c)
        if item is not None and need.get(item, 0.0) > 0:
            out[c] = need[item] / producers[item]
    return out


def need_shares(specs: Iterable[NodeSpec], active: Collection[str],
                consumers: Collection[str]) -> tuple[dict[str, float], dict[str, float]]:
    """The weights and the priorities of ``consumers`` (``consumer_weights``,
    ``consumer_priorities``) over the ``active`` nodes' specs."""
    specs = list(specs)
    return (consumer_weights(specs, active, consumers),
            consumer_priorities(specs, active, consumers))
