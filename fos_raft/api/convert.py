"""Conversions between the pure model records and fos_pb messages (the gRPC edge)."""

from __future__ import annotations

from collections.abc import Iterable

from fos_pb import coordinator_pb2 as pb
from fos_raft.model import Edge, ItemReq, NodeSpec


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
