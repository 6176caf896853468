"""An agent's view of the flow: its neighbourhood as plain data (pure, no gRPC calls).

Built from a coordinator ``Neighbourhood`` message (WatchFlow / GetFlow) and saved in the
data dir, so an agent restarted while the coordinator cluster is down trades on the last
flow it saw (docs/architecture.md, "What it is").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError

from fos_agent.rules.fetch import Supplier
from fos_pb import coordinator_pb2 as cpb
from fos_raft.api.convert import spec_from_pb
from fos_raft.model import NodeSpec

FLOW_FILE = "flow.pb"


@dataclass(frozen=True, slots=True)
class FlowView:
    node_id: str
    version: int = 0
    known: bool = False
    in_flow: bool = False
    alive: bool = False
    drained: bool = False
    spec: NodeSpec | None = None
    suppliers: dict[str, tuple[Supplier, ...]] = field(default_factory=dict)  # item -> ranked
    consumers: frozenset[str] = frozenset()
    addresses: dict[str, str] = field(default_factory=dict)  # neighbour -> host:port
    alive_of: dict[str, bool] = field(default_factory=dict)  # neighbour -> alive

    @property
    def neighbours(self) -> frozenset[str]:
        return frozenset(self.addresses)

    def ranked_suppliers(self, item: str) -> tuple[Supplier, ...]:
        return self.suppliers.get(item, ())


def view_from_pb(node_id: str, hood: cpb.Neighbourhood) -> FlowView:
    alive_of = {n.node_id: bool(n.alive) for n in hood.neighbours}
    addresses = {n.node_id: n.address for n in hood.neighbours if n.address}
    by_item: dict[str, list[Supplier]] = {}
    consumers: set[str] = set()
    for edge in hood.edges:
        if edge.consumer == node_id:
            by_item.setdefault(edge.item, []).append(
                Supplier(edge.supplier, int(edge.rank), alive_of.get(edge.supplier, True)))
        if edge.supplier == node_id:
            consumers.add(edge.consumer)
    suppliers = {item: tuple(sorted(s, key=lambda x: (x.rank, x.node_id)))
                 for item, s in by_item.items()}
    spec = spec_from_pb(hood.spec) if hood.HasField("spec") and hood.spec.node_id else None
    return FlowView(node_id=node_id, version=int(hood.version), known=bool(hood.known),
                    in_flow=bool(hood.in_flow), alive=bool(hood.alive),
                    drained=bool(hood.drained), spec=spec, suppliers=suppliers,
                    consumers=frozenset(consumers), addresses=addresses, alive_of=alive_of)


def save_flow(data_dir: Path, hood: cpb.Neighbourhood) -> None:
    """Atomically replace the saved neighbourhood (write, fsync-free rename: losing the
    newest one only costs a slightly older start-up flow)."""
    path = Path(data_dir) / FLOW_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(hood.SerializeToString())
    os.replace(tmp, path)


def load_flow(data_dir: Path) -> cpb.Neighbourhood | None:
    path = Path(data_dir) / FLOW_FILE
    try:
        return cpb.Neighbourhood.FromString(path.read_bytes())
    except (OSError, DecodeError):
        return None
