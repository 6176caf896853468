"""Planner properties P1-P7 (DESIGN.md section 4) and plain examples."""

from __future__ import annotations

from fos_raft.model import Edge, ItemReq, NodeSpec, NodeStatus
from fos_raft.planner import plan

DEAD = NodeStatus(alive=False, down_reason="probe failed")


def spec(
    node_id: str, produces: str, requires: tuple[str, ...] = (), capacity: int = 1
) -> NodeSpec:
    return NodeSpec(
        node_id=node_id,
        address="127.0.0.1:7000",
        produces=ItemReq(produces, 1),
        requires=tuple(ItemReq(item, 2) for item in requires),
        capacity=capacity,
    )


def window_chain() -> dict[str, NodeSpec]:
    specs = [
        spec("saw-1", "wood"),
        spec("saw-2", "wood"),
        spec("frame-1", "frame", ("wood",)),
        spec("frame-2", "frame", ("wood",)),
        spec("window-1", "window", ("frame",)),
        spec("window-2", "window", ("frame",)),
    ]
    return {s.node_id: s for s in specs}


def primaries(edges: tuple[Edge, ...]) -> dict[tuple[str, str], str]:
    return {(e.consumer, e.item): e.supplier for e in edges if e.rank == 0}


def test_window_chain_spreads_primaries_and_holds_one_backup() -> None:
    flow = plan(window_chain(), {})
    assert flow.members == frozenset(window_chain())
    assert primaries(flow.edges) == {
        ("frame-1", "wood"): "saw-1",
        ("frame-2", "wood"): "saw-2",
        ("window-1", "frame"): "frame-1",
        ("window-2", "frame"): "frame-2",
    }
    backups = {(e.consumer, e.item): e.supplier for e in flow.edges if e.rank == 1}
    assert backups == {
        ("frame-1", "wood"): "saw-2",
        ("frame-2", "wood"): "saw-1",
        ("window-1", "frame"): "frame-2",
        ("window-2", "frame"): "frame-1",
    }
    assert all(e.qty == 2 for e in flow.edges)
    assert list(flow.edges) == sorted(flow.edges)


def test_dead_supplier_moves_its_consumers_and_nothing_else() -> None:
    catalog = window_chain()
    before = plan(catalog, {})
    after = plan(catalog, {"saw-1": DEAD}, before.edges)
    assert "saw-1" not in after.members
    assert primaries(after.edges)[("frame-1", "wood")] == "saw-2"
    assert primaries(after.edges)[("frame-2", "wood")] == "saw-2"
    # frame-1's backup saw-2 is promoted; the frame links do not involve saw-1 and stay.
    assert [e for e in after.edges if e.item == "wood"] == [
        Edge("saw-2", "frame-1", "wood", 2, 0),
        Edge("saw-2", "frame-2", "wood", 2, 0),
    ]
    assert [e for e in after.edges if e.item == "frame"] == [
        e for e in before.edges if e.item == "frame"
    ]


def test_node_whose_only_supplier_is_dead_leaves_with_its_downstream() -> None:
    catalog = window_chain()
    catalog["glass-1"] = spec("glass-1", "glass")
    catalog["glazer-1"] = spec("glazer-1", "glazed", ("glass", "window"))
    catalog["crate-1"] = spec("crate-1", "crate", ("glazed",))
    assert {"glazer-1", "crate-1"} <= plan(catalog, {}).members
    after = plan(catalog, {"glass-1": DEAD})
    assert after.members == frozenset(window_chain())
    gone = {"glass-1", "glazer-1", "crate-1"}
    assert not any(gone & {e.supplier, e.consumer} for e in after.edges)
