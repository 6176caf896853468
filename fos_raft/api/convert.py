"""Conversions between the pure model records and fos_pb messages (the gRPC edge)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from fos_pb import coordinator_pb2 as pb
from fos_raft.model import Edge, ItemReq, LinkFault, LinkState, NodeSpec


def link_fault_from_pb(msg: pb.LinkDown) -> LinkFault:
    return LinkFault(msg.supplier, msg.consumer, float(msg.since_unix))


def link_fault_to_pb(fault: LinkFault) -> pb.LinkDown:
    return pb.LinkDown(supplier=fault.supplier, consumer=fault.consumer,
                       since_unix=fault.since_unix)


def link_fault_text(fault: LinkFault) -> str:
    """"link down SUPPLIER -> CONSUMER since T" (T in UTC, to the second): the words fosctl
    and the floor display show."""
    since = datetime.fromtimestamp(fault.since_unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"link {LinkState.DOWN.value} {fault.supplier} -> {fault.consumer} since {since}"


def item_req_to_pb(req: ItemReq) -> pb.ItemReq:
    return pb.ItemReq(item=req.item, qty=req.qty)


def item_req_from_pb(msg: pb.ItemReq) -> ItemReq:
    return ItemReq(item=msg.item, qty=int(msg.qty))


def spec_to_pb(spec: NodeSpec) -> pb.NodeSpec:
    return pb.NodeSpec(
        node_id=spec.node_id,
        address=spec.address,
        produces=item_req_to_pb(spec.produces),
        requires=[item_req_to_pb(r) for r in spec.requires],
        capacity=spec.capacity,
    )


def spec_from_pb(msg: pb.NodeSpec) -> NodeSpec:
    """Build a NodeSpec; validation is the caller's (the state machine's) job."""
    return NodeSpec(
        node_id=msg.node_id,
        address=msg.address,
        produces=item_req_from_pb(msg.produces),
        requires=tuple(item_req_from_pb(r) for r in msg.requires),
        capacity=int(msg.capacity) or 1,
    )


def edge_to_pb(edge: Edge) -> pb.Edge:
    return pb.Edge(
        supplier=edge.supplier,
        consumer=edge.consumer,
        item=edge.item,
        qty=edge.qty,
        rank=edge.rank,
    )


def edge_from_pb(msg: pb.Edge) -> Edge:
    return Edge(
        supplier=msg.supplier,
        consumer=msg.consumer,
        item=msg.item,
        qty=int(msg.qty),
        rank=int(msg.rank),
    )


def edges_to_pb(edges: Iterable[Edge]) -> list[pb.Edge]:
    return [edge_to_pb(e) for e in edges]
