"""The deterministic flow planner: catalog + liveness + previous flow -> next flow (pure).

No gRPC, no LMDB, no pysyncobj, no clock, no randomness: every coordinator replica runs it on
the same inputs and must get the same flow (properties P1-P7, docs/architecture.md).

Interfaces
----------
``plan(catalog, status, previous=()) -> Plan``
    The pure function. ``previous`` is the previous flow's edges (or a ``Plan``).
``Planner().full(catalog, status, previous=()) -> Plan``
    The same result; the planner keeps indexes of it for the next call.
``Planner().after_change(catalog, status, previous, changed) -> Plan``
    The same result as ``plan(catalog, status, previous)``, computed incrementally: only the
    items around node ``changed`` are re-planned. Precondition: ``previous`` is the ``Plan``
    this planner returned last, and ``catalog``/``status`` differ from the inputs of that call
    at most in the entries of ``changed`` (added, removed or replaced spec; any status
    change). When ``previous`` is another object (a replica restored from a snapshot, a
    fresh ``Planner``) it falls back to ``full``. A ``Planner`` holds caches only: replicas
    need not snapshot it.

Inputs are validated specs (``NodeSpec.validate``: no duplicate required items, capacity
1..10**6) of a catalog with an acyclic item graph (``model.check_catalog_with``).

Semantics
---------
* A node is *eligible* iff its ``NodeStatus`` is alive and not drained. Nodes missing from
  ``status`` count as alive and not drained.
* Viability (P2, P4): an item is *available* iff some viable node produces it; a node is
  *viable* iff it is eligible and every item it requires is available. This is the least
  fixpoint, computed by propagation from the source nodes (nodes requiring nothing) towards
  the final products: a memoised search without recursion depth limits. On a
  cyclic input it still terminates. ``Plan.members`` is the set of all viable nodes (P4).
* Edges (P1): for every viable consumer C and every item X it requires there is exactly one
  primary edge (rank 0) from a viable supplier of X, plus backup edges of rank 1..k,
  ``k = min(BACKUPS, suppliers of X - 1)``, to other viable suppliers of X. ``Edge.qty`` is
  C's required quantity of X. ``Plan.edges`` is sorted. The flow is acyclic (P3) because
  edges follow the acyclic item graph.
* Load: a supplier's load for X is the number of consumers it is primary for; its ratio is
  ``load / capacity``. Ratios are compared as floats: loads and capacities are at most 10**6,
  so two different fractions differ by a relative 10**-12, far above float rounding, and
  equal fractions round to the same float: the comparisons are exact.
* Per item X, against ``previous`` (``fos_raft.planner.assign.assign_item``):
  1. Stability (P5): a consumer keeps its previous primary while that supplier is still a
     viable supplier of X. (Malformed ``previous`` with several rank-0 edges for one
     consumer and item: the smallest supplier id is the primary, the others count as its
     first backups.)
  2. Every other consumer (new, or its primary is gone), in consumer-id order, gets the
     supplier with the least ``(load + 1) / capacity``; on a tie its own previous backup of
     the lowest rank (promotion), else the smallest id. This keeps a balanced item balanced.
  3. Balance (P6): while ``max load/cap > min (load+1)/cap`` move one consumer from the most
     over-loaded supplier (highest ``load/cap``, smallest id on ties) to the most
     under-loaded one (lowest ``(load+1)/cap``, smallest id on ties); the consumer moved is
     the one with the largest id. Each step strictly lowers the sorted vector of ratios, so
     it terminates. From a balanced flow, a change that adds capacity (a supplier joins,
     rejoins, is undrained, becomes viable or grows) moves consumers only into the new
     capacity and only as many as balance needs; a consumer leaving moves at most one other
     consumer of each item it required; a supplier leaving moves only its own consumers.
  4. Backups: a consumer keeps its previous backups (rank order) that are still viable
     suppliers of X and are not its primary; empty slots are then filled, in consumer-id
     order, with the supplier of least ``(backup load / cap, load / cap, id)``, where backup
     load counts the consumers holding it as a backup: backups spread over the suppliers.
* Determinism (P7): every loop runs over sorted ids or is order-independent; nothing depends
  on dict insertion order or hash seeds. Re-planning a plan with itself as ``previous``
  returns it unchanged (fixpoint).

Reading ``previous`` back and building edge records is ``fos_raft.planner.edges``; the
per-item assignment (steps 1-4 above) is ``fos_raft.planner.assign``.
"""

from __future__ import annotations

import gc
from bisect import bisect_left, bisect_right, insort
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain

from fos_raft.model import Edge, NodeSpec, NodeStatus, Plan
from fos_raft.planner.assign import BACKUPS, Links, assign_item
from fos_raft.planner.edges import link_edges, previous_links
from fos_raft.planner.reroute import DownPairs, route_around

__all__ = ["BACKUPS", "Links", "Planner", "assign_item", "plan", "previous_links"]

_ALIVE = NodeStatus()


def _supplier(edge: Edge) -> str:
    return edge.supplier


def plan(
    catalog: Mapping[str, NodeSpec],
    status: Mapping[str, NodeStatus],
    previous: Iterable[Edge] | Plan = (),
    down_links: DownPairs = (),
) -> Plan:
    """The flow for ``catalog`` and ``status``, as stable as possible against ``previous``.

    ``down_links``: (supplier, consumer) pairs to avoid where another supplier exists
    (``fos_raft.planner.reroute``).
    """
    return Planner().full(catalog, status, previous, down_links)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while planning.

    A 10k-node plan allocates ~100k small acyclic objects, which triggers generational
    collections that walk every live object: ~30% of the planning time. Nothing the planner
    allocates is cyclic, so deferring collection frees nothing late.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _toggle(nodes: set[str], node_id: str) -> None:
    """Record a viability flip; a second flip of the same node cancels the first."""
    if node_id in nodes:
        nodes.remove(node_id)
    else:
        nodes.add(node_id)


class Planner:
    """``plan`` with indexes kept between calls, so one change re-plans only what it touches.

    Deterministic and pure: it holds caches only (see the module docstring for the contract).
    """

    def __init__(self) -> None:
        self._last: Plan | None = None
        self._spec: dict[str, NodeSpec] = {}
        self._eligible: dict[str, bool] = {}
        self._producers: dict[str, set[str]] = {}  # item -> catalog nodes producing it
        self._requirers: dict[str, set[str]] = {}  # item -> catalog nodes requiring it
        self._missing: dict[str, int] = {}  # node -> required items with no viable supplier
        self._viable_count: dict[str, int] = {}  # item -> viable producers
        self._viable: set[str] = set()
        self._links: dict[str, dict[str, Links]] = {}  # item -> consumer -> Links
        self._edges_of: dict[str, tuple[Edge, ...]] = {}  # supplier -> its edges, sorted
        self._order: list[str] = []  # sorted keys of _edges_of
        # edges the last after_change removed and added (by value); None after a full plan.
        # A cache for readers (WatchFlow), never part of the result.
        self.last_delta: tuple[frozenset[Edge], frozenset[Edge]] | None = None
        self._gone: set[Edge] = set()
        self._came: set[Edge] = set()
        self._dirty: set[str] = set()  # suppliers whose edge group changed (after_change)
        self._down: frozenset[tuple[str, str]] = frozenset()  # pairs the last full plan avoided

    # ---- full plan ----------------------------------------------------------------------

    def full(
        self,
        catalog: Mapping[str, NodeSpec],
        status: Mapping[str, NodeStatus],
        previous: Iterable[Edge] | Plan = (),
        down_links: DownPairs = (),
    ) -> Plan:
        """The flow for ``catalog`` and ``status`` against ``previous``; refreshes the caches."""
        self.last_delta = None
        self._down = frozenset(down_links)
        with _gc_paused(), self._forget_on_error():
            return self._full(catalog, status, previous)

    def _full(
        self,
        catalog: Mapping[str, NodeSpec],
        status: Mapping[str, NodeStatus],
        previous: Iterable[Edge] | Plan,
    ) -> Plan:
        if self._last is not None and previous is self._last:
            before = self._links
        else:
            before = previous_links(previous.edges if isinstance(previous, Plan) else previous)
        self._index(catalog, status)
        self._compute_viability()
        suppliers: defaultdict[str, list[str]] = defaultdict(list)
        consumers: defaultdict[str, list[str]] = defaultdict(list)
        qty: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for node_id in sorted(self._viable):
            spec = self._spec[node_id]
            suppliers[spec.produces.item].append(node_id)
            for req in spec.requires:
                consumers[req.item].append(node_id)
                qty[req.item][node_id] = req.qty
        self._links = {}
        self._edges_of = {}
        no_links: dict[str, Links] = {}
        for item, item_consumers in consumers.items():
            item_suppliers = suppliers[item]
            capacity = {s: self._spec[s].capacity for s in item_suppliers}
            previous_of_item = before.get(item, no_links)
            links = assign_item(item_suppliers, capacity, item_consumers, previous_of_item)
            links = route_around(item_suppliers, links, self._down)
            self._links[item] = links
            self._edges_of.update(self._item_edges(item, links, qty[item]))
        self._order = sorted(self._edges_of)
        return self._emit(members_changed=True)

    def _index(self, catalog: Mapping[str, NodeSpec], status: Mapping[str, NodeStatus]) -> None:
        self._spec = dict(catalog)
        self._eligible = {n: status.get(n, _ALIVE).eligible for n in catalog}
        self._producers = {}
        self._requirers = {}
        for node_id, spec in catalog.items():
            self._producers.setdefault(spec.produces.item, set()).add(node_id)
            for req in spec.requires:
                self._requirers.setdefault(req.item, set()).add(node_id)

    def _compute_viability(self) -> None:
        """Least fixpoint by propagation from the sources (see the module docstring)."""
        missing = {n: len(spec.requires) for n, spec in self._spec.items()}
        ready = [n for n, count in missing.items() if count == 0 and self._eligible[n]]
        viable: set[str] = set()
        available: set[str] = set()
        while ready:
            node_id = ready.pop()
            viable.add(node_id)
            item = self._spec[node_id].produces.item
            if item in available:
                continue
            available.add(item)
            for consumer in self._requirers.get(item, ()):
                missing[consumer] -= 1
                if missing[consumer] == 0 and self._eligible[consumer]:
                    ready.append(consumer)
        viable_count: dict[str, int] = {}
        for node_id in viable:
            item = self._spec[node_id].produces.item
            viable_count[item] = viable_count.get(item, 0) + 1
        self._missing = missing
        self._viable = viable
        self._viable_count = viable_count

    # ---- incremental plan ---------------------------------------------------------------

    def after_change(
        self,
        catalog: Mapping[str, NodeSpec],
        status: Mapping[str, NodeStatus],
        previous: Plan,
        changed: str,
    ) -> Plan:
        """``plan(catalog, status, previous)`` re-planning only around node ``changed``."""
        if self._last is None or previous is not self._last or self._down:
            # While a link is down, every plan is a full one: the caches of untouched items
            # hold routed links, which the incremental path would not re-route.
            return self.full(catalog, status, previous, self._down)
        with _gc_paused(), self._forget_on_error():
            return self._after_change(catalog, status, previous, changed)

    @contextmanager
    def _forget_on_error(self) -> Iterator[None]:
        """If planning fails half-way, the caches are inconsistent: never trust them again
        (the next ``after_change`` sees an unknown ``previous`` and plans in full)."""
        try:
            yield
        except BaseException:
            self._last = None
            self.last_delta = None
            raise

    def _after_change(
        self,
        catalog: Mapping[str, NodeSpec],
        status: Mapping[str, NodeStatus],
        previous: Plan,
        changed: str,
    ) -> Plan:
        old_spec = self._spec.get(changed)
        new_spec = catalog.get(changed)
        old_eligible = self._eligible.get(changed, False)
        new_eligible = new_spec is not None and status.get(changed, _ALIVE).eligible
        expected_size = len(self._spec) + (new_spec is not None) - (old_spec is not None)
        if len(catalog) != expected_size:  # the caller broke the contract: be correct anyway
            self.last_delta = None
            return self._full(catalog, status, previous)
        if old_spec == new_spec and old_eligible == new_eligible:
            self.last_delta = (frozenset(), frozenset())
            return previous
        self._gone, self._came, self._dirty = set(), set(), set()
        flipped: set[str] = set()
        touched: set[str] = set()
        if old_spec is not None:
            touched.add(old_spec.produces.item)
            touched.update(r.item for r in old_spec.requires)
            self._remove_node(changed, old_spec, flipped)
        if new_spec is not None:
            touched.add(new_spec.produces.item)
            touched.update(r.item for r in new_spec.requires)
            self._add_node(changed, new_spec, new_eligible, flipped)
        for node_id in flipped:
            spec = self._spec.get(node_id)  # None only for a removed `changed`: done above
            if spec is not None:
                touched.add(spec.produces.item)
                touched.update(r.item for r in spec.requires)
        for item in sorted(touched):
            self._replan_item(item)
        gone, came = self._gone, self._came
        self.last_delta = (frozenset(gone - came), frozenset(came - gone))
        return self._emit(members_changed=bool(flipped), dirty=self._dirty)

    def _remove_node(self, node_id: str, spec: NodeSpec, flipped: set[str]) -> None:
        if node_id in self._viable:
            self._viable.discard(node_id)
            flipped.add(node_id)
            self._lose_supplier(spec.produces.item, flipped)
        self._producers[spec.produces.item].discard(node_id)
        for req in spec.requires:
            self._requirers[req.item].discard(node_id)
        del self._spec[node_id]
        del self._eligible[node_id]
        del self._missing[node_id]

    def _add_node(self, node_id: str, spec: NodeSpec, is_eligible: bool, flipped: set[str]) -> None:
        self._spec[node_id] = spec
        self._eligible[node_id] = is_eligible
        self._producers.setdefault(spec.produces.item, set()).add(node_id)
        for req in spec.requires:
            self._requirers.setdefault(req.item, set()).add(node_id)
        missing = sum(1 for r in spec.requires if not self._viable_count.get(r.item, 0))
        self._missing[node_id] = missing
        if is_eligible and missing == 0:
            self._viable.add(node_id)
            _toggle(flipped, node_id)  # removed and re-added: its viability did not flip
            self._gain_supplier(spec.produces.item, flipped)

    def _lose_supplier(self, item: str, flipped: set[str]) -> None:
        """One viable producer of ``item`` left; cascade if it was the last one."""
        pending = [item]
        while pending:
            lost = pending.pop()
            self._viable_count[lost] -= 1
            if self._viable_count[lost]:
                continue
            for consumer in self._requirers.get(lost, ()):
                self._missing[consumer] += 1
                if consumer in self._viable:
                    self._viable.discard(consumer)
                    _toggle(flipped, consumer)
                    pending.append(self._spec[consumer].produces.item)

    def _gain_supplier(self, item: str, flipped: set[str]) -> None:
        """One more viable producer of ``item``; cascade if it is the first one."""
        pending = [item]
        while pending:
            gained = pending.pop()
            self._viable_count[gained] = self._viable_count.get(gained, 0) + 1
            if self._viable_count[gained] > 1:
                continue
            for consumer in self._requirers.get(gained, ()):
                self._missing[consumer] -= 1
                if self._missing[consumer] == 0 and self._eligible[consumer]:
                    self._viable.add(consumer)
                    _toggle(flipped, consumer)
                    pending.append(self._spec[consumer].produces.item)

    def _replan_item(self, item: str) -> None:
        viable = self._viable
        old_links = self._links.pop(item, {})
        item_consumers = sorted(n for n in self._requirers.get(item, ()) if n in viable)
        new_edges: dict[str, tuple[Edge, ...]] = {}
        if item_consumers:
            item_suppliers = sorted(n for n in self._producers.get(item, ()) if n in viable)
            capacity = {s: self._spec[s].capacity for s in item_suppliers}
            links = assign_item(item_suppliers, capacity, item_consumers, old_links)
            self._links[item] = links
            new_edges = self._item_edges(item, links, self._required_qty(item_consumers, item))
        old_suppliers = {x for link in old_links.values() for x in (link.primary, *link.backups)}
        for supplier in old_suppliers:
            self._gone.update(e for e in self._edges_of.get(supplier, ()) if e.item == item)
        for edges in new_edges.values():
            self._came.update(edges)
        for supplier in old_suppliers - new_edges.keys():
            # A node whose product changed may already hold edges of its new item.
            if self._edges_of[supplier][0].item == item:
                del self._edges_of[supplier]
                del self._order[bisect_left(self._order, supplier)]
                self._dirty.add(supplier)
        for supplier, edges in new_edges.items():
            if supplier not in self._edges_of:
                insort(self._order, supplier)
            self._edges_of[supplier] = edges
            self._dirty.add(supplier)

    # ---- output -------------------------------------------------------------------------

    @staticmethod
    def _item_edges(
        item: str, links: Mapping[str, Links], qty: Mapping[str, int]
    ) -> dict[str, tuple[Edge, ...]]:
        """Edges of one item grouped by supplier, each group sorted (consumers come sorted)."""
        grouped: defaultdict[str, list[Edge]] = defaultdict(list)
        link = link_edges
        for consumer, (primary, backups) in links.items():
            link(consumer, item, qty[consumer], (primary, *backups), grouped)
        return {s: tuple(edges) for s, edges in grouped.items()}

    def _required_qty(self, consumers: Iterable[str], item: str) -> dict[str, int]:
        """How much of ``item`` each of ``consumers`` takes per cycle."""
        qty = {}
        for consumer in consumers:
            for req in self._spec[consumer].requires:
                if req.item == item:
                    qty[consumer] = req.qty
                    break
        return qty

    def _emit(self, members_changed: bool, dirty: set[str] | None = None) -> Plan:
        """The Plan of the current caches. ``dirty``: after an incremental re-plan, the
        suppliers whose edge group was replaced, added or removed since the last Plan: the
        last Plan's edges are then patched instead of rejoined from every supplier (the
        same tuple: a supplier's group is contiguous in the sorted edges, found by bisection)."""
        if members_changed or self._last is None:
            members = frozenset(self._viable)
        else:
            members = self._last.members
        edges_of = self._edges_of
        if dirty is None or self._last is None:
            edges = tuple(chain.from_iterable([edges_of[s] for s in self._order]))
        else:
            old = self._last.edges
            pieces: list[tuple[Edge, ...]] = []
            pos = 0
            for supplier in sorted(dirty):
                start = bisect_left(old, supplier, lo=pos, key=_supplier)
                end = bisect_right(old, supplier, lo=start, key=_supplier)
                pieces.append(old[pos:start])
                pieces.append(edges_of.get(supplier, ()))
                pos = end
            pieces.append(old[pos:])
            edges = tuple(chain.from_iterable(pieces))
        self._last = Plan(members=members, edges=edges)
        return self._last
