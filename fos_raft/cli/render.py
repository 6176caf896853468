"""Rendering of catalog, flow and cluster status: table rows, JSON-ready dicts, Graphviz DOT.

Pure except :func:`dot_to_svg`, which runs the ``dot`` binary. fosctl turns the rows into
rich tables and the dicts into JSON; tests check the structures directly. Table rows and
DOT text are display text: every cluster string in them is escaped (`fos_raft.textsafe`),
the dicts keep the values exact (JSON output is ASCII-only).

DOT conventions (also printed as the graph's legend):
- active flow edge, rank 0 (primary supplier): solid black, bold, labelled ``qty x item``;
- active backup edge (rank >= 1): dashed blue, labelled ``backup N``;
- possible link from the catalog (a supplier of X and a node requiring X, not in the flow):
  dotted grey, no label;
- node in-flow: green; standby (alive, outside the flow): white; not-started (its agent never
  registered): grey, dotted; stale (no report for a while): orange; drained: yellow, dashed border;
  down: red octagon with the reason; a node the flow names but the catalog no longer has:
  grey, "not in catalog".
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.convert import edge_from_pb, link_fault_from_pb, link_fault_text, spec_from_pb
from fos_raft.model import (
    Edge,
    LinkFault,
    LinkState,
    NodeSpec,
    NodeStatus,
    earliest_faults,
    node_state,
)
from fos_raft.textsafe import escape


class RenderError(RuntimeError):
    """Rendering could not be done (e.g. Graphviz is not installed)."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """A registered node as ListNodes reports it."""

    spec: NodeSpec
    alive: bool = True
    drained: bool = False
    in_flow: bool = False
    down_reason: str = ""
    spec_version: int = 0
    changed_version: int = 0
    started: bool = True
    reported_state: str = ""  # the replica's word (it alone knows "stale")
    contact_age_s: float = -1.0
    links_down: tuple[LinkFault, ...] = ()  # links at this node an end reports down

    @property
    def state(self) -> str:
        """One word of `fos_raft.model.NodeState`: the replica's, else derived here."""
        if self.reported_state:
            return self.reported_state
        status = NodeStatus(self.alive, self.drained, self.down_reason, self.started)
        return node_state(status, self.in_flow).value


@dataclass(frozen=True, slots=True)
class FlowView:
    version: int
    edges: tuple[Edge, ...] = ()
    members: tuple[str, ...] = ()


def nodes_from_pb(reply: pb.ListNodesReply) -> list[NodeView]:
    return sorted(
        (
            NodeView(
                spec=spec_from_pb(info.spec),
                alive=info.alive,
                drained=info.drained,
                in_flow=info.in_flow,
                down_reason=info.down_reason,
                spec_version=int(info.spec_version),
                changed_version=int(info.changed_version),
                # a replica from before ``started`` existed sends neither field
                started=info.started or not info.state,
                reported_state=info.state,
                contact_age_s=float(info.contact_age_s) if info.state else -1.0,
                links_down=tuple(sorted(link_fault_from_pb(f) for f in info.links_down)),
            )
            for info in reply.nodes
        ),
        key=lambda n: n.spec.node_id,
    )


def flow_from_pb(flow: pb.Flow) -> FlowView:
    return FlowView(
        version=int(flow.version),
        edges=tuple(sorted(edge_from_pb(e) for e in flow.edges)),
        members=tuple(sorted(flow.members)),
    )


# ---------------------------------------------------------------- JSON-ready dicts


def spec_dict(spec: NodeSpec) -> dict:
    return {
        "node_id": spec.node_id,
        "address": spec.address,
        "produces": {"item": spec.produces.item, "qty": spec.produces.qty},
        "requires": [{"item": r.item, "qty": r.qty} for r in spec.requires],
        "capacity": spec.capacity,
    }


def edge_dict(edge: Edge) -> dict:
    return {
        "supplier": edge.supplier,
        "consumer": edge.consumer,
        "item": edge.item,
        "qty": edge.qty,
        "rank": edge.rank,
    }


def nodes_json(version: int, nodes: Sequence[NodeView]) -> dict:
    return {
        "flow_version": version,
        "nodes": [
            {
                **spec_dict(n.spec),
                "state": n.state,
                "alive": n.alive,
                "drained": n.drained,
                "in_flow": n.in_flow,
                "down_reason": n.down_reason,
                "started": n.started,
                "contact_age_s": n.contact_age_s,
                "spec_version": n.spec_version,
                "changed_version": n.changed_version,
                "links_down": [link_dict(f) for f in n.links_down],
            }
            for n in nodes
        ],
        "links_down": [link_dict(f) for f in links_down(nodes)],
    }


def links_down(nodes: Sequence[NodeView]) -> list[LinkFault]:
    """Every link reported down at any of ``nodes`` (each once)."""
    return earliest(f for n in nodes for f in n.links_down)


earliest = earliest_faults


def link_dict(fault: LinkFault) -> dict:
    return {"supplier": fault.supplier, "consumer": fault.consumer,
            "state": LinkState.DOWN.value, "since_unix": fault.since_unix,
            "text": link_text(fault)}


link_text = link_fault_text


def flow_json(flow: FlowView) -> dict:
    return {
        "version": flow.version,
        "members": list(flow.members),
        "edges": [edge_dict(e) for e in flow.edges],
    }


def neighbourhood_json(nb: pb.Neighbourhood) -> dict:
    return {
        "version": int(nb.version),
        "node_id": nb.node_id,
        "known": nb.known,
        "in_flow": nb.in_flow,
        "alive": nb.alive,
        "drained": nb.drained,
        "spec": spec_dict(spec_from_pb(nb.spec)) if nb.HasField("spec") else None,
        "edges": [edge_dict(e) for e in sorted(edge_from_pb(e) for e in nb.edges)],
        "neighbours": [
            {"node_id": n.node_id, "address": n.address, "alive": n.alive}
            for n in sorted(nb.neighbours, key=lambda n: n.node_id)
        ],
    }


def replica_dict(replica: pb.ReplicaStatus) -> dict:
    return {
        "raft_address": replica.raft_address,
        "grpc_address": replica.grpc_address,
        "is_self": replica.is_self,
        "is_leader": replica.is_leader,
        "connected": replica.connected,
    }


def status_json(status: pb.ClusterStatusReply) -> dict:
    scalar_fields = (
        "replica_id", "raft_address", "grpc_address", "leader", "leader_grpc", "term",
        "commit_index", "applied_index", "flow_version", "nodes_total", "nodes_alive",
        "nodes_in_flow", "nodes_drained", "edges", "refuted_suspicions",
        "confirmed_suspicions", "state_digest", "has_quorum",
    )
    out: dict = {name: getattr(status, name) for name in scalar_fields}
    out["replicas"] = [replica_dict(r) for r in status.replicas]
    return out


# ---------------------------------------------------------------- table rows

NODE_HEADERS = ("node", "address", "produces", "requires", "cap", "state", "spec v", "reason")
FLOW_HEADERS = ("item", "supplier", "consumer", "qty", "rank")
REPLICA_HEADERS = ("raft address", "grpc address", "role", "connected")


def _reqs(reqs: Iterable) -> str:
    return ", ".join(str(r) for r in reqs) or "-"


def _cells(*values: str) -> tuple[str, ...]:
    return tuple(escape(v) for v in values)


def node_rows(nodes: Sequence[NodeView]) -> list[tuple[str, ...]]:
    return [
        _cells(
            n.spec.node_id, n.spec.address, str(n.spec.produces), _reqs(n.spec.requires),
            str(n.spec.capacity), n.state, str(n.spec_version), _reason(n),
        )
        for n in nodes
    ]


def _reason(n: NodeView) -> str:
    """Why the node is in its state, when the word alone does not say it."""
    if n.state == "not-started":
        return "its agent has not registered yet"
    if n.state == "stale":
        return f"no report from its agent for {n.contact_age_s:.0f} s"
    if n.down_reason or not n.links_down:
        return n.down_reason
    return "; ".join(link_text(f) for f in n.links_down)


def _rank(rank: int) -> str:
    return "primary" if rank == 0 else f"backup {rank}"


def flow_rows(edges: Iterable[Edge]) -> list[tuple[str, ...]]:
    ordered = sorted(edges, key=lambda e: (e.item, e.consumer, e.rank, e.supplier))
    return [_cells(e.item, e.supplier, e.consumer, str(e.qty), _rank(e.rank)) for e in ordered]


def replica_rows(replicas: Iterable[pb.ReplicaStatus]) -> list[tuple[str, ...]]:
    rows = []
    for r in replicas:
        role = "leader" if r.is_leader else "follower"
        if r.is_self:
            role += " (answered)"
        rows.append(_cells(r.raft_address, r.grpc_address or "?", role,
                           "yes" if r.connected else "no"))
    return rows


# ---------------------------------------------------------------- Graphviz DOT

LEGEND = (
    "solid: primary supplier | dashed blue: backup | dotted grey: possible (catalog) | "
    "green: in-flow | white: standby | grey dotted: not-started | orange: stale | "
    "yellow: drained | red: down"
)


def possible_links(specs: Iterable[NodeSpec]) -> list[tuple[str, str, str]]:
    """Every (supplier, consumer, item) the catalog allows: a producer of X to a node
    requiring X. The flow's edges are a subset of these."""
    spec_list = list(specs)
    producers: dict[str, list[str]] = {}
    for spec in spec_list:
        producers.setdefault(spec.produces.item, []).append(spec.node_id)
    links = {
        (supplier, spec.node_id, req.item)
        for spec in spec_list
        for req in spec.requires
        for supplier in producers.get(req.item, ())
        if supplier != spec.node_id
    }
    return sorted(links)


def _dot_text(text: str) -> str:
    # Escaped first: a control character in a label would reach the SVG and the terminal.
    return escape(text).replace("\\", "\\\\").replace('"', '\\"')


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + _dot_text(text) + '"'


def _label(*lines: str) -> str:
    """A DOT label of several lines (each escaped, joined with DOT's \\n)."""
    return '"' + "\\n".join(_dot_text(ln) for ln in lines) + '"'


_NODE_STYLE = {
    "in-flow": 'style="rounded,filled" fillcolor="#b7e4b0" color="#2b7a2b"',
    "standby": 'style="rounded,filled" fillcolor="white" color="#555555"',
    "not-started": 'style="rounded,filled,dotted" fillcolor="#eeeeee" color="#555555"',
    "stale": 'style="rounded,filled,dashed" fillcolor="#ffd9a8" color="#b06000"',
    "drained": 'style="rounded,filled,dashed" fillcolor="#fff3a0" color="#a08000"',
    "down": 'shape=octagon style="filled" fillcolor="#f4a6a6" color="#b00000"',
    "unknown": 'style="rounded,filled,dotted" fillcolor="#dddddd" color="#888888"',
}


def _dot_state(view: NodeView, members: set[str]) -> str:
    """Down and drained come from the catalog; in-flow from the flow being drawn, so a
    past version (``--at-version``) shows its own members."""
    if view.state in ("down", "drained", "not-started", "stale"):
        return view.state
    return "in-flow" if view.spec.node_id in members else "standby"


def flow_dot(flow: FlowView, nodes: Sequence[NodeView]) -> str:
    """The flow over the catalog as a Graphviz digraph (see the module doc for styles).
    Node liveness and drain flags are the catalog's (current); edges and membership are
    the flow's."""
    by_id = {n.spec.node_id: n for n in nodes}
    members = set(flow.members)
    out = [
        "digraph flow {",
        "  rankdir=LR;",
        f"  label={_label(f'flow version {flow.version}', LEGEND)};",
        '  labelloc=b; fontsize=10; fontname="Helvetica";',
        '  node [shape=box fontname="Helvetica" fontsize=11];',
        '  edge [fontname="Helvetica" fontsize=9];',
    ]
    # One cluster per produced item keeps alternative suppliers side by side.
    by_item: dict[str, list[NodeView]] = {}
    for view in nodes:
        by_item.setdefault(view.spec.produces.item, []).append(view)
    for item in sorted(by_item):
        out.append(f"  subgraph {_q('cluster_' + item)} {{")
        out.append(f'    label={_q(item)}; style="rounded"; color="#cccccc";')
        for view in sorted(by_item[item], key=lambda v: v.spec.node_id):
            state = _dot_state(view, members)
            made = view.spec.produces
            lines = [view.spec.node_id, f"makes {made.qty} x {made.item}"]
            if state == "down":
                lines.append(f"DOWN{': ' + view.down_reason if view.down_reason else ''}")
            elif state in ("drained", "standby", "not-started", "stale"):
                lines.append(state)
            out.append(
                f"    {_q(view.spec.node_id)} [label={_label(*lines)} {_NODE_STYLE[state]}];"
            )
        out.append("  }")
    named = {e.supplier for e in flow.edges} | {e.consumer for e in flow.edges}
    for ghost in sorted((named | set(flow.members)) - set(by_id)):
        out.append(
            f"  {_q(ghost)} [label={_label(ghost, 'not in catalog')} {_NODE_STYLE['unknown']}];"
        )

    active = {(e.supplier, e.consumer, e.item) for e in flow.edges}
    for supplier, consumer, item in possible_links(v.spec for v in nodes):
        if (supplier, consumer, item) not in active:
            out.append(
                f"  {_q(supplier)} -> {_q(consumer)} "
                '[style=dotted color="#aaaaaa" arrowhead=empty constraint=true];'
            )
    for edge in sorted(flow.edges, key=lambda e: (e.rank, e.item, e.supplier, e.consumer)):
        if edge.rank == 0:
            attrs = f'label={_q(f"{edge.qty}x {edge.item}")} style=bold color="black"'
        else:
            attrs = (
                f'label={_q(f"backup {edge.rank}: {edge.qty}x {edge.item}")} '
                'style=dashed color="#1f5fbf" fontcolor="#1f5fbf"'
            )
        out.append(f"  {_q(edge.supplier)} -> {_q(edge.consumer)} [{attrs}];")
    out.append("}")
    return "\n".join(out) + "\n"


def dot_to_svg(dot_source: str, dot_binary: str = "dot", timeout: float = 30.0) -> str:
    """Render DOT to SVG with Graphviz; RenderError when it is missing or fails."""
    path = shutil.which(dot_binary)
    if path is None:
        raise RenderError(
            f"Graphviz '{dot_binary}' is not installed (not on PATH); install graphviz "
            "or use --format dot and render it elsewhere"
        )
    try:
        done = subprocess.run(
            [path, "-Tsvg"], input=dot_source, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"running {path} failed: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RenderError(f"{path} failed: {reason[0]}")
    return done.stdout
