"""Which neighbourhoods one flow version changed, computed once per version for WatchFlow.

A node's neighbourhood (``views.neighbourhood_of``) is its own entry (spec, liveness, drain
flag), whether it is in the flow, its edges, and each edge's other end's address and
liveness. So between two states it can differ only for

* a node whose entry changed, and every node with an edge to it (before or after);
* both ends of every edge that appeared or disappeared;
* a node that joined or left the flow's members.

`FlowIndex` keeps the edges of the last state it saw grouped by node and, given the next
state, returns that set of node ids. It never scans the flow when the planner said what it
changed (``CoordinatorState.edge_delta``: the edges the incremental re-plan removed and
added): the cost is then that of the change. Otherwise (a full plan, a snapshot loaded,
versions skipped) edges are matched by object identity (a re-plan keeps the edge objects
of what it did not touch; set operations on ids run in C), the rest by value. Node
entries: the state names the node its last command changed
(``CoordinatorState.changed_node``); when versions were skipped, entries are matched by
identity, then by value. The result may name a node whose reply turns out equal (the
caller compares replies); it never misses one that changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from fos_raft.model import Edge
from fos_raft.state.core import CoordinatorState


class FlowIndex:
    def __init__(self, state: CoordinatorState) -> None:
        self.state = state
        # node -> its edges; tuples, not sets: a 10k-node index is held per replica
        self.by_node: dict[str, tuple[Edge, ...]] = {}
        self._reindex(state)
        self.fallbacks = 0  # versions diffed without the planner's delta (tests, logs)

    def _reindex(self, state: CoordinatorState) -> None:
        grouped: dict[str, list[Edge]] = {}
        for edge in state.flow.edges:
            grouped.setdefault(edge.supplier, []).append(edge)
            if edge.consumer != edge.supplier:
                grouped.setdefault(edge.consumer, []).append(edge)
        self.by_node = {node: tuple(edges) for node, edges in grouped.items()}

    def edges_of(self, node_id: str) -> set[Edge]:
        return set(self.by_node.get(node_id, ()))

    def _neighbours(self, node_id: str) -> set[str]:
        return {e.consumer if e.supplier == node_id else e.supplier
                for e in self.by_node.get(node_id, ())}

    def advance(self, new: CoordinatorState) -> set[str]:
        """Move to ``new``; the node ids whose neighbourhood may differ from the last state."""
        old, self.state = self.state, new
        if new is old:
            return set()
        affected: set[str] = set()
        changed = _changed_entries(old, new)
        for node_id in changed:
            affected |= self._neighbours(node_id)
        if new.flow.edges is not old.flow.edges:
            delta = new.edge_delta if new.version == old.version + 1 else None
            if delta is not None:
                self._apply(*delta, affected)
            else:
                self.fallbacks += 1
                self._diff(old, new, affected)
        if new.flow.members is not old.flow.members:
            affected |= old.flow.members ^ new.flow.members
        for node_id in changed:
            affected |= self._neighbours(node_id)
        return affected | changed

    def _apply(self, gone: Iterable[Edge], came: Iterable[Edge], affected: set[str]) -> None:
        removed: dict[str, set[Edge]] = {}
        added: dict[str, list[Edge]] = {}
        for edge in gone:
            for end in {edge.supplier, edge.consumer}:
                removed.setdefault(end, set()).add(edge)
        for edge in came:
            for end in {edge.supplier, edge.consumer}:
                added.setdefault(end, []).append(edge)
        by_node = self.by_node
        for end in removed.keys() | added.keys():
            drop = removed.get(end, ())
            edges = (*(e for e in by_node.get(end, ()) if e not in drop), *added.get(end, ()))
            if edges:
                by_node[end] = edges
            else:
                by_node.pop(end, None)
            affected.add(end)

    def _diff(self, old: CoordinatorState, new: CoordinatorState, affected: set[str]) -> None:
        """Without the planner's word: match edges by identity, the rest by value."""
        old_ids = dict(zip(map(id, old.flow.edges), old.flow.edges, strict=True))
        new_ids = dict(zip(map(id, new.flow.edges), new.flow.edges, strict=True))
        gone_ids = old_ids.keys() - new_ids.keys()
        if len(gone_ids) > len(new_ids) // 2:
            # another lineage of edge objects (a snapshot loaded): compare everything once
            before = self.by_node
            self._reindex(new)
            for node_id in before.keys() | self.by_node.keys():
                if set(before.get(node_id, ())) != set(self.by_node.get(node_id, ())):
                    affected.add(node_id)
            return
        gone = {old_ids[i] for i in gone_ids}
        came = {new_ids[i] for i in new_ids.keys() - old_ids.keys()}
        self._apply(gone - came, came - gone, affected)


def _changed_entries(old: CoordinatorState, new: CoordinatorState) -> set[str]:
    if new.nodes is old.nodes:
        return set()
    hint = new.changed_node
    if hint is not None and new.version == old.version + 1:
        return {hint}
    old_nodes, new_nodes = old.nodes, new.nodes
    changed = {n for n, entry in new_nodes.items()
               if (was := old_nodes.get(n)) is not entry and was != entry}
    return changed | (old_nodes.keys() - new_nodes.keys())
