"""The deterministic flow planner: catalog + liveness + previous flow -> next flow (pure).

No gRPC, no LMDB, no pysyncobj, no clock, no randomness: every coordinator replica runs it on
the same inputs and must get the same flow (DESIGN.md section 4, properties P1-P7).

Semantics
---------
* A node is *eligible* iff its ``NodeStatus`` is alive and not drained. Nodes missing from
  ``status`` count as alive and not drained.
* Viability (P2, P4): an item is *available* iff some viable node produces it; a node is
  *viable* iff it is eligible and every item it requires is available. This is the least
  fixpoint, computed by propagation from the source nodes (nodes requiring nothing) towards
  the final products: the same result as a memoised search from the final products back to
  the sources, without recursion depth limits. The item graph is acyclic (catalogs with item
  cycles are refused by ``model.check_catalog_with``); on a cyclic input the propagation still
  terminates and simply leaves the cycle's items unavailable. ``Plan.members`` is the set of
  all viable nodes (maximal, P4).
* Edges (P1): for every viable consumer C and every item X it requires there is exactly one
  primary edge (rank 0) from a viable supplier of X, plus backup edges of rank 1..k,
  ``k = min(BACKUPS, suppliers of X - 1)``, to other viable suppliers of X. ``Edge.qty`` is
  C's required quantity of X. ``Plan.edges`` is sorted. The flow is acyclic (P3) because
  edges follow the acyclic item graph.
* Load: a supplier's load for X is the number of consumers it is primary for; its *ratio* is
  ``load / capacity``. Ratios are compared as floats: loads and capacities are at most 10**6,
  so two different fractions differ by a relative 10**-12, far above float rounding, and
  equal fractions round to the same float: comparisons are exact.
* Stability (P5), per item X, against ``previous``:
  1. A consumer keeps its previous primary while that supplier is still a viable supplier
     of X. (Malformed input with several rank-0 edges: the first viable one, sorted, wins.)
  2. Every other consumer (new, or its primary is gone), in consumer-id order, gets the
     supplier with the least ``(load + 1) / capacity``; on a tie its previous backup of the
     lowest rank, else the smallest id. This keeps a balanced assignment balanced.
  3. Balance (P6): while ``max load/cap > min (load+1)/cap`` move one consumer from the most
     over-loaded supplier (highest ``load/cap``, smallest id on ties) to the most under-loaded
     one (lowest ``(load+1)/cap``, smallest id on ties); the consumer moved is the one with
     the largest id. Every step strictly lowers the sorted ratio vector, so it terminates.
     After a change that adds capacity (a supplier joins, rejoins, is undrained or grows)
     this moves consumers only into the new capacity, and only as many as balance needs.
     After a change that removes a consumer, at most one consumer of each of its items moves.
  4. Backups: a consumer keeps its previous backups (rank order) that are still viable
     suppliers of X and are not its primary; empty slots are filled, in consumer-id order,
     with the supplier of least ``(backup load / cap, load / cap, id)`` where backup load
     counts the consumers holding it as a backup: backups spread over the suppliers.
* Determinism (P7): every loop runs over sorted ids or is order-independent; nothing
  depends on dict insertion order or hash seeds. Re-planning a plan with itself as
  ``previous`` returns it unchanged (fixpoint).
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fos_raft.model import Edge, NodeSpec, NodeStatus, Plan

BACKUPS = 2
"""Backup suppliers per (consumer, item) besides the primary, when there are enough."""

ALIVE = NodeStatus()


@dataclass(frozen=True, slots=True)
class Links:
    """One consumer's suppliers of one item: the primary and its backups in rank order."""

    primary: str
    backups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PreviousLinks:
    """What ``previous`` said for one (consumer, item): rank-0 suppliers, then backups."""

    primaries: tuple[str, ...]
    backups: tuple[str, ...]


def eligible(status: Mapping[str, NodeStatus], node_id: str) -> bool:
    return status.get(node_id, ALIVE).eligible


def viable_nodes(catalog: Mapping[str, NodeSpec], status: Mapping[str, NodeStatus]) -> set[str]:
    """The least fixpoint of "eligible and every required item has a viable supplier"."""
    waiting_on: dict[str, list[str]] = {}  # item -> eligible nodes requiring it
    missing: dict[str, int] = {}
    ready: list[str] = []
    for node_id, spec in catalog.items():
        if not eligible(status, node_id):
            continue
        needed = spec.required_items
        missing[node_id] = len(needed)
        if not needed:
            ready.append(node_id)
        for item in needed:
            waiting_on.setdefault(item, []).append(node_id)
    viable: set[str] = set()
    available: set[str] = set()
    while ready:
        node_id = ready.pop()
        viable.add(node_id)
        item = catalog[node_id].produces.item
        if item in available:
            continue
        available.add(item)
        for consumer in waiting_on.get(item, ()):
            missing[consumer] -= 1
            if missing[consumer] == 0:
                ready.append(consumer)
    return viable


def previous_links(previous: Iterable[Edge]) -> dict[str, dict[str, PreviousLinks]]:
    """Group previous edges as item -> consumer -> PreviousLinks (sorted, so order-free)."""
    grouped: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for edge in previous:
        grouped.setdefault((edge.item, edge.consumer), []).append((edge.rank, edge.supplier))
    result: dict[str, dict[str, PreviousLinks]] = {}
    for (item, consumer), ranked in grouped.items():
        ranked.sort()
        primaries = tuple(s for r, s in ranked if r == 0)
        backups: list[str] = []
        for r, s in ranked:
            if r > 0 and s not in backups:
                backups.append(s)
        result.setdefault(item, {})[consumer] = PreviousLinks(primaries, tuple(backups))
    return result


def _valid_top(heap: list[tuple[float, str]], current: Mapping[str, float]) -> tuple[float, str]:
    """Drop stale entries (whose key no longer matches ``current``) and return the top."""
    while True:
        key, supplier = heap[0]
        if key == current[supplier]:
            return key, supplier
        heapq.heappop(heap)


def assign_item(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    consumers: Sequence[str],
    previous: Mapping[str, PreviousLinks],
) -> dict[str, Links]:
    """Links of every consumer of one item (see the module docstring, steps 1-4).

    ``suppliers`` and ``consumers`` are the item's viable suppliers and consumers, sorted and
    non-empty; ``capacity`` maps each supplier to its capacity; ``previous`` maps consumers to
    what the previous flow said for this item.
    """
    supplier_set = set(suppliers)
    load = dict.fromkeys(suppliers, 0)
    served: dict[str, list[str]] = {s: [] for s in suppliers}  # sorted consumer ids
    primary: dict[str, str] = {}
    orphans: list[str] = []
    for consumer in consumers:
        links = previous.get(consumer)
        kept = None
        if links is not None:
            kept = next((s for s in links.primaries if s in supplier_set), None)
        if kept is None:
            orphans.append(consumer)
        else:
            primary[consumer] = kept
            load[kept] += 1
            served[kept].append(consumer)

    if len(suppliers) == 1:
        only = suppliers[0]
        return {c: Links(only) for c in consumers}

    after_add = {s: (load[s] + 1) / capacity[s] for s in suppliers}
    if orphans:
        heap = [(after_add[s], s) for s in suppliers]
        heapq.heapify(heap)
        for consumer in orphans:
            best_key, choice = _valid_top(heap, after_add)
            links = previous.get(consumer)
            if links is not None:
                for backup in links.backups:
                    if backup in supplier_set and after_add[backup] == best_key:
                        choice = backup
                        break
            primary[consumer] = choice
            load[choice] += 1
            insort(served[choice], consumer)
            after_add[choice] = (load[choice] + 1) / capacity[choice]
            heapq.heappush(heap, (after_add[choice], choice))

    # Balance: max-heap on load/cap (negated), min-heap on (load+1)/cap.
    neg_ratio = {s: -load[s] / capacity[s] for s in suppliers}
    over = [(neg_ratio[s], s) for s in suppliers]
    under = [(after_add[s], s) for s in suppliers]
    heapq.heapify(over)
    heapq.heapify(under)
    while True:
        neg_max, source = _valid_top(over, neg_ratio)
        min_after, target = _valid_top(under, after_add)
        if not -neg_max > min_after:
            break
        consumer = served[source].pop()
        insort(served[target], consumer)
        primary[consumer] = target
        for s, delta in ((source, -1), (target, 1)):
            load[s] += delta
            neg_ratio[s] = -load[s] / capacity[s]
            after_add[s] = (load[s] + 1) / capacity[s]
            heapq.heappush(over, (neg_ratio[s], s))
            heapq.heappush(under, (after_add[s], s))

    backups = _backups(suppliers, capacity, consumers, previous, primary, load)
    return {c: Links(primary[c], backups[c]) for c in consumers}


def _backups(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    consumers: Sequence[str],
    previous: Mapping[str, PreviousLinks],
    primary: Mapping[str, str],
    load: Mapping[str, int],
) -> dict[str, tuple[str, ...]]:
    want = min(BACKUPS, len(suppliers) - 1)
    supplier_set = set(suppliers)
    backup_load = dict.fromkeys(suppliers, 0)
    chosen: dict[str, list[str]] = {}
    for consumer in consumers:
        kept: list[str] = []
        links = previous.get(consumer)
        if links is not None:
            for backup in links.backups:
                if len(kept) == want:
                    break
                if backup in supplier_set and backup != primary[consumer] and backup not in kept:
                    kept.append(backup)
                    backup_load[backup] += 1
        chosen[consumer] = kept
    key = {s: (backup_load[s] / capacity[s], load[s] / capacity[s]) for s in suppliers}
    heap = [(key[s], s) for s in suppliers]
    heapq.heapify(heap)
    for consumer in consumers:
        kept = chosen[consumer]
        if len(kept) == want:
            continue
        skipped: list[tuple[tuple[float, float], str]] = []
        while len(kept) < want:
            entry = heapq.heappop(heap)
            entry_key, s = entry
            if entry_key != key[s]:
                continue  # stale
            if s == primary[consumer] or s in kept:
                skipped.append(entry)
                continue
            kept.append(s)
            backup_load[s] += 1
            key[s] = (backup_load[s] / capacity[s], load[s] / capacity[s])
            heapq.heappush(heap, (key[s], s))
        for entry in skipped:
            heapq.heappush(heap, entry)
    return {c: tuple(chosen[c]) for c in consumers}


def item_edges(item: str, qty: Mapping[str, int], links: Mapping[str, Links]) -> list[Edge]:
    """The edges of one item: rank 0 to the primary, rank 1.. to the backups."""
    edges = []
    for consumer, link in links.items():
        q = qty[consumer]
        edges.append(Edge(link.primary, consumer, item, q, 0))
        for rank, backup in enumerate(link.backups, 1):
            edges.append(Edge(backup, consumer, item, q, rank))
    return edges


def edge_key(edge: Edge) -> tuple[str, str, str, int, int]:
    return (edge.supplier, edge.consumer, edge.item, edge.qty, edge.rank)


def plan(
    catalog: Mapping[str, NodeSpec],
    status: Mapping[str, NodeStatus],
    previous: Iterable[Edge] | Plan = (),
) -> Plan:
    """The flow for ``catalog`` and ``status``, as stable as possible against ``previous``.

    The pure reference planner (module docstring); ``Planner`` gives the same result faster.
    ``previous`` is the previous flow's edges (a ``Plan`` is accepted too).
    """
    if isinstance(previous, Plan):
        previous = previous.edges
    viable = viable_nodes(catalog, status)
    suppliers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    qty: dict[str, dict[str, int]] = {}
    for node_id in sorted(viable):
        spec = catalog[node_id]
        suppliers.setdefault(spec.produces.item, []).append(node_id)
        for req in spec.requires:
            consumers.setdefault(req.item, []).append(node_id)
            qty.setdefault(req.item, {})[node_id] = req.qty
    before = previous_links(previous)
    edges: list[Edge] = []
    for item in sorted(consumers):
        capacity = {s: catalog[s].capacity for s in suppliers[item]}
        links = assign_item(suppliers[item], capacity, consumers[item], before.get(item, {}))
        edges.extend(item_edges(item, qty[item], links))
    edges.sort(key=edge_key)
    return Plan(members=frozenset(viable), edges=tuple(edges))
