"""Read views of the replicated state as fos_pb messages (whole flow, neighbourhood, nodes).

Pure conversions from one immutable `CoordinatorState`; the service calls them per request.
"""

from __future__ import annotations

from collections.abc import Iterable

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.convert import edges_to_pb, spec_to_pb
from fos_raft.model import Edge, Plan
from fos_raft.state.core import CoordinatorState


def flow_to_pb(plan: Plan, version: int) -> pb.Flow:
    return pb.Flow(version=version, edges=edges_to_pb(plan.edges), members=sorted(plan.members))


def neighbourhood_to_pb(
    state: CoordinatorState, node_id: str, plan: Plan | None = None, version: int | None = None
) -> pb.Neighbourhood:
    """``node_id``'s edges and how to reach the other ends. ``plan``/``version`` select a
    flow from the history; addresses and liveness are always the current ones."""
    current = plan is None
    plan = state.flow if plan is None else plan
    edges: tuple[Edge, ...]
    if current:
        edges = state.edges_of(node_id)
    else:
        edges = tuple(e for e in plan.edges if node_id in (e.supplier, e.consumer))
    return neighbourhood_of(state, node_id, edges, plan.members,
                            state.version if version is None else version)


def neighbourhood_of(
    state: CoordinatorState, node_id: str, edges: Iterable[Edge], members: frozenset[str],
    version: int,
) -> pb.Neighbourhood:
    """``node_id``'s neighbourhood from its ``edges`` (any order) and the flow's ``members``;
    addresses and liveness from ``state`` (WatchFlow keeps its own per-node edge index)."""
    edges = sorted(edges)
    entry = state.nodes.get(node_id)
    reply = pb.Neighbourhood(
        version=version,
        node_id=node_id,
        known=entry is not None,
        in_flow=node_id in members,
        alive=entry is not None and entry.status.alive,
        drained=entry is not None and entry.status.drained,
        edges=edges_to_pb(edges),
    )
    if entry is not None:
        reply.spec.CopyFrom(spec_to_pb(entry.spec))
    others = sorted({e.consumer if e.supplier == node_id else e.supplier for e in edges})
    for other in others:
        other_entry = state.nodes.get(other)
        reply.neighbours.append(
            pb.Neighbour(
                node_id=other,
                address=other_entry.spec.address if other_entry else "",
                alive=other_entry is not None and other_entry.status.alive,
            )
        )
    return reply


def node_infos(state: CoordinatorState) -> list[pb.NodeInfo]:
    members = state.flow.members
    return [
        pb.NodeInfo(
            spec=spec_to_pb(entry.spec),
            alive=entry.status.alive,
            drained=entry.status.drained,
            in_flow=node_id in members,
            down_reason=entry.status.down_reason,
            spec_version=entry.spec_version,
            changed_version=entry.changed_version,
        )
        for node_id, entry in sorted(state.nodes.items())
    ]


def content_key(reply: pb.GetFlowReply) -> bytes:
    """The reply without its version: WatchFlow pushes only when this changes."""
    copy = pb.GetFlowReply()
    copy.CopyFrom(reply)
    copy.flow.version = 0
    copy.neighbourhood.version = 0
    return copy.SerializeToString(deterministic=True)
