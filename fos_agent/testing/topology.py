"""Model topologies for the test kit: nodes with their configs and the initial flow, two
small ready-made ones, and the type of a stage's cycle code (public via fos_agent.testing)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fos_agent.protocol.machine import NodeConfig
from fos_agent.protocol.records import Batch
from fos_raft.model import ItemReq

StageCode = Callable[[str, Sequence[Batch]], bool]
"""Your cycle: gets the node id and the held input batches, returns False if it failed."""


def always_succeeds(node_id: str, inputs: Sequence[Batch]) -> bool:
    return True


@dataclass(frozen=True)
class SimTopology:
    """Nodes and the initial flow: ``edges`` are (supplier, consumer) pairs."""

    configs: tuple[NodeConfig, ...]
    edges: frozenset[tuple[str, str]]

    def config(self, node_id: str) -> NodeConfig:
        return next(c for c in self.configs if c.node_id == node_id)


def two_by_two(immediate_arrival: bool = False) -> SimTopology:
    """Suppliers S1, S2 of wood; consumers C1, C2 of wood (making frames); S1->C1, S2->C2."""
    wood, frame = ItemReq("wood", 1), ItemReq("frame", 1)
    configs = (
        NodeConfig("S1", wood), NodeConfig("S2", wood),
        NodeConfig("C1", frame, (wood,), immediate_arrival),
        NodeConfig("C2", frame, (wood,), immediate_arrival),
    )
    return SimTopology(configs, frozenset({("S1", "C1"), ("S2", "C2")}))


def chain(immediate_arrival: bool = False) -> SimTopology:
    """wood (W1, W2) -> frame (F1, F2) -> window (X): every node both sides of a trade."""
    wood, frame, window = ItemReq("wood", 2), ItemReq("frame", 1), ItemReq("window", 1)
    configs = (
        NodeConfig("W1", wood), NodeConfig("W2", wood),
        NodeConfig("F1", frame, (wood,), immediate_arrival),
        NodeConfig("F2", frame, (wood,), immediate_arrival),
        NodeConfig("X", window, (frame,), immediate_arrival),
    )
    edges = {("W1", "F1"), ("W2", "F2"), ("F1", "X"), ("F2", "X")}
    return SimTopology(configs, frozenset(edges))
