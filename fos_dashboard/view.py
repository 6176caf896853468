"""What the dashboard shows, computed from plain records: graph layout, node states in
words, and the events between two snapshots (deaths, rejoins, drains, reroutes, leader
changes).

Pure: no gRPC, no clock, no I/O. The collector turns coordinator replies into these records
and passes timestamps in; the browser only draws what :func:`graph_json` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fos_raft.model import ItemReq, NodeSpec, NodeStatus, node_state

# Geometry of the SVG graph (user units; the browser scales the viewBox to fit).
COLUMN_WIDTH = 220
ROW_HEIGHT = 46
NODE_WIDTH = 160
NODE_HEIGHT = 32
MARGIN = 20
GROUP_GAP = 14  # extra space between item groups inside one column


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A registered node as ListNodes reports it."""

    node_id: str
    address: str
    produces: str
    produces_qty: int
    requires: tuple[tuple[str, int], ...] = ()
    capacity: int = 1
    alive: bool = True
    drained: bool = False
    in_flow: bool = False
    down_reason: str = ""
    started: bool = True
    state: str = ""  # the coordinator's word (it alone knows "stale"); "" derive it
    links_down: tuple[str, ...] = ()  # "link down A -> B since T" for links at this node


@dataclass(frozen=True, slots=True)
class EdgeRow:
    supplier: str
    consumer: str
    item: str
    qty: int
    rank: int = 0


@dataclass(frozen=True, slots=True)
class ClusterRow:
    """One ClusterStatus answer, reduced to what the page shows."""

    leader: str = ""
    term: int = 0
    has_quorum: bool = False
    flow_version: int = 0
    commit_index: int = 0
    replicas: tuple[tuple[str, str, bool, bool], ...] = ()  # raft, grpc, leader, connected


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int = 0
    nodes: tuple[NodeRow, ...] = ()
    edges: tuple[EdgeRow, ...] = ()
    cluster: ClusterRow | None = None


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # death, start, rejoin, drain, undrain, join, leave, reroute, leader
    node: str
    text: str


@dataclass(slots=True)
class Layout:
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    width: int = 0
    height: int = 0


# ---------------------------------------------------------------- states in words


def state_of(node: NodeRow) -> str:
    """One word of `fos_raft.model.NodeState` (the coordinator's, else derived)."""
    if node.state:
        return node.state
    status = NodeStatus(node.alive, node.drained, node.down_reason, node.started)
    return node_state(status, node.in_flow).value


def reason_in_words(node: NodeRow, nodes: Sequence[NodeRow]) -> str:
    """Why the node is in its state, for a shift lead rather than a Raft expert, and the
    links at it that are down (a network fault between two live machines)."""
    why = _state_in_words(node, nodes)
    if node.links_down:
        why += "; " + "; ".join(node.links_down) + " (the network between them: check it)"
    return why


def _state_in_words(node: NodeRow, nodes: Sequence[NodeRow]) -> str:
    state = state_of(node)
    if state == "not-started":
        return ("not started: it is in the catalog, but its agent has not registered yet; "
                "nothing is sent to it")
    if state == "stale":
        return ("stale: counted alive, but its agent has not reported for a while; "
                "check the machine")
    if state == "down":
        why = f" ({node.down_reason})" if node.down_reason else ""
        return ("down: the coordinator confirmed it unreachable and rerouted around it"
                f"{why}; it comes back by itself when its agent restarts")
    if state == "drained":
        return "drained for maintenance: it finishes what it owes but gets no new consumers"
    if state == "in-flow":
        return "in the flow: producing and trading with its neighbours"
    live = {n.produces for n in nodes if n.alive and not n.drained and n.in_flow}
    missing = sorted(item for item, _ in node.requires if item not in live)
    if missing:
        return "standby: no live supplier of " + ", ".join(missing)
    return "standby: alive, but nothing in the flow needs it now"


# ---------------------------------------------------------------- layout


def layers(nodes: Sequence[NodeRow]) -> dict[str, int]:
    """Column of each node: 0 for raw-material sources, else one more than the deepest
    producer of anything it requires (catalog links, so dead nodes keep their place).
    A cycle in the catalog is cut where it closes."""
    producers: dict[str, list[NodeRow]] = {}
    for n in nodes:
        producers.setdefault(n.produces, []).append(n)
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(node: NodeRow) -> int:
        if node.node_id in depth:
            return depth[node.node_id]
        if node.node_id in visiting:
            return -1  # a catalog cycle: the back link does not push the column
        visiting.add(node.node_id)
        deepest = -1
        for item, _ in node.requires:
            for p in producers.get(item, ()):
                deepest = max(deepest, visit(p))
        visiting.discard(node.node_id)
        depth[node.node_id] = deepest + 1
        return deepest + 1

    # Recursive: the depth is the chain's length in stages, far below the recursion limit.
    for n in sorted(nodes, key=lambda n: n.node_id):
        visit(n)
    return depth


def columns(nodes: Sequence[NodeRow]) -> dict[str, int]:
    """:func:`layers`, then every node that feeds others moved right to just before its
    nearest consumer: a source of the last stage sits next to it instead of in column 0,
    so its edges do not cross the stages in between."""
    column = layers(nodes)
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for item, _ in n.requires:
            consumers.setdefault(item, []).append(n.node_id)
    for n in sorted(nodes, key=lambda n: (-column[n.node_id], n.node_id)):
        later = [column[c] for c in consumers.get(n.produces, ()) if column[c] > column[n.node_id]]
        if later:
            column[n.node_id] = min(later) - 1
    return column


def layout(nodes: Sequence[NodeRow]) -> Layout:
    """Columns by stage, nodes grouped by the item they produce, each column centred."""
    column_of = columns(nodes)
    by_column: dict[int, list[NodeRow]] = {}
    for n in nodes:
        by_column.setdefault(column_of[n.node_id], []).append(n)
    out = Layout()
    heights: dict[int, int] = {}
    for col, members in sorted(by_column.items()):
        y = 0
        previous_item = None
        for n in sorted(members, key=lambda n: (n.produces, n.node_id)):
            if previous_item is not None and n.produces != previous_item:
                y += GROUP_GAP
            previous_item = n.produces
            out.positions[n.node_id] = (MARGIN + col * COLUMN_WIDTH, y)
            y += ROW_HEIGHT
        heights[col] = y - (ROW_HEIGHT - NODE_HEIGHT)
    tallest = max(heights.values(), default=0)
    for node_id, (x, y) in out.positions.items():
        shift = (tallest - heights[column_of[node_id]]) // 2
        out.positions[node_id] = (x, MARGIN + y + shift)
    out.height = tallest + 2 * MARGIN
    out.width = MARGIN * 2 + NODE_WIDTH + COLUMN_WIDTH * max(by_column, default=0)
    return out


def graph_json(snapshot: Snapshot) -> dict[str, Any]:
    """Everything the browser draws: boxes with their state, edges with their rank."""
    placed = layout(snapshot.nodes)
    known = {n.node_id for n in snapshot.nodes}
    nodes = [
        {"id": n.node_id, "x": placed.positions[n.node_id][0],
         "y": placed.positions[n.node_id][1], "state": state_of(n), "item": n.produces,
         "reason": reason_in_words(n, snapshot.nodes)}
        for n in snapshot.nodes
    ]
    edges = [
        {"supplier": e.supplier, "consumer": e.consumer, "item": e.item, "qty": e.qty,
         "rank": e.rank}
        for e in snapshot.edges if e.supplier in known and e.consumer in known
    ]
    return {"version": snapshot.version, "width": placed.width, "height": placed.height,
            "node_width": NODE_WIDTH, "node_height": NODE_HEIGHT, "nodes": nodes,
            "edges": edges}


def specs_of(snapshot: Snapshot) -> list[NodeSpec]:
    """The catalog as specs (for the production figures: which items are final)."""
    return [NodeSpec(n.node_id, n.address, ItemReq(n.produces, n.produces_qty),
                     tuple(ItemReq(i, q) for i, q in n.requires), n.capacity)
            for n in snapshot.nodes]


def node_table(snapshot: Snapshot, stats: Mapping[str, Mapping[str, Any]],
               cycles: Mapping[str, str] | None = None) -> list[dict]:
    """One row per node: state and reason, flow neighbours, agent figures when known, and
    its cycles in words from the production figures (no bare "skipped")."""
    cycles = cycles or {}
    suppliers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for e in snapshot.edges:
        tag = "" if e.rank == 0 else f" (backup {e.rank})"
        suppliers.setdefault(e.consumer, []).append(f"{e.supplier}{tag}")
        consumers.setdefault(e.supplier, []).append(f"{e.consumer}{tag}")
    return [
        {"id": n.node_id, "address": n.address, "state": state_of(n),
         "reason": reason_in_words(n, snapshot.nodes),
         "produces": f"{n.produces_qty} x {n.produces}",
         "requires": ", ".join(f"{q} x {i}" for i, q in n.requires),
         "suppliers": sorted(suppliers.get(n.node_id, ())),
         "consumers": sorted(consumers.get(n.node_id, ())),
         "stats": dict(stats.get(n.node_id, {})),
         "cycles": cycles.get(n.node_id, "")}
        for n in sorted(snapshot.nodes, key=lambda n: n.node_id)
    ]


def cluster_json(cluster: ClusterRow | None) -> dict[str, Any]:
    if cluster is None:
        return {"reachable": False, "replicas": []}
    return {"reachable": True, "leader": cluster.leader, "term": cluster.term,
            "has_quorum": cluster.has_quorum, "flow_version": cluster.flow_version,
            "commit_index": cluster.commit_index,
            "replicas": [{"raft": r, "grpc": g, "leader": lead, "connected": conn}
                         for r, g, lead, conn in cluster.replicas]}


# ---------------------------------------------------------------- events


def _suppliers_by_input(edges: Iterable[EdgeRow]) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for e in edges:
        if e.rank == 0:
            out.setdefault((e.consumer, e.item), set()).add(e.supplier)
    return {k: frozenset(v) for k, v in out.items()}


def diff(before: Snapshot, after: Snapshot) -> list[Event]:
    """What changed between two snapshots, in words. ``before`` empty (first snapshot)
    gives no events: the page starts from the present, not from a burst of joins."""
    if before.version == 0 and not before.nodes:
        return []
    events: list[Event] = []
    old = {n.node_id: n for n in before.nodes}
    new = {n.node_id: n for n in after.nodes}
    for node_id in sorted(new.keys() - old.keys()):
        events.append(Event("join", node_id, f"{node_id} joined the catalog"))
    for node_id in sorted(old.keys() - new.keys()):
        events.append(Event("leave", node_id, f"{node_id} was decommissioned"))
    for node_id in sorted(new.keys() & old.keys()):
        a, b = old[node_id], new[node_id]
        if a.alive and not b.alive:
            why = f": {b.down_reason}" if b.down_reason else ""
            events.append(Event("death", node_id, f"{node_id} is down{why}"))
        elif not a.alive and b.alive and not a.started:
            events.append(Event("start", node_id, f"{node_id} started: its agent registered"))
        elif not a.alive and b.alive:
            events.append(Event("rejoin", node_id, f"{node_id} rejoined"))
        if not a.drained and b.drained:
            events.append(Event("drain", node_id, f"{node_id} was drained"))
        elif a.drained and not b.drained:
            events.append(Event("undrain", node_id, f"{node_id} was undrained"))
    was, now = _suppliers_by_input(before.edges), _suppliers_by_input(after.edges)
    for consumer, item in sorted(was.keys() & now.keys()):
        if was[consumer, item] != now[consumer, item] and consumer in new:
            events.append(Event(
                "reroute", consumer,
                f"{consumer} now gets {item} from {', '.join(sorted(now[consumer, item]))} "
                f"(was {', '.join(sorted(was[consumer, item]))})"))
    events.extend(leader_change(before.cluster, after.cluster))
    return events


def leader_change(before: ClusterRow | None, after: ClusterRow | None) -> list[Event]:
    if before is None or after is None or before.leader == after.leader:
        return []
    if not after.leader:
        return [Event("leader", "", f"leader {before.leader} lost; election under way")]
    return [Event("leader", "", f"new coordinator leader {after.leader} (term {after.term})")]
