"""Fault schedules for the test kit: operations, their weights, running one against a
`Simulation`, and the hypothesis strategies drawing them (public via fos_agent.testing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from fos_agent.testing.sim import Simulation
from fos_agent.testing.topology import SimTopology

OP_KINDS = ("produce", "request", "deliver", "drop", "duplicate", "flush", "arrive", "tick",
            "crash", "move", "push_flow", "decommission", "reclaim", "compact", "scrap",
            "produce_var")
# Relative frequencies: the happy path must be common enough for trades to complete.
_WEIGHTS = {"produce": 5, "request": 5, "deliver": 10, "flush": 8, "arrive": 4, "tick": 2,
            "drop": 1, "duplicate": 1, "crash": 1, "move": 1, "push_flow": 1,
            "decommission": 1, "reclaim": 1, "compact": 2, "scrap": 2, "produce_var": 2}


@dataclass(frozen=True)
class Op:
    """One step of a schedule; ``a`` and ``b`` pick nodes/messages modulo what exists."""

    kind: str
    a: int = 0
    b: int = 0


def run_op(sim: Simulation, op: Op, *, allow_decommission: bool = True) -> None:
    ids = sim.node_ids
    node = ids[op.a % len(ids)]
    # Most steps settle at once (their effects become durable and are sent), so trades
    # complete often; the rest stay pending, so crashes land between durable steps.
    settle = op.b % 3 != 0
    if op.kind == "produce":
        sim.produce(node)
    elif op.kind == "produce_var":  # a variable quantity and attributes, drawn from b
        sim.produce(node, 1 + op.b % 7, (("serial", f"SN-{op.a}-{op.b}"),
                                         ("weight_kg", op.b / 4))[:1 + op.b % 2])
    elif op.kind == "scrap":
        sim.scrap(node, op.b)
    elif op.kind == "request":
        options = sim.suppliers_for(node)
        if options:
            sim.request(node, options[op.b % len(options)])
    elif op.kind == "deliver":
        for i in range(1 + op.b % 4):
            target = sim.deliver(op.a + i)
            if target is not None and settle:
                sim.flush(target, len(sim.nodes[target].pending))
    elif op.kind == "drop":
        sim.network.drop(op.a)
    elif op.kind == "duplicate":
        sim.network.duplicate(op.a)
    elif op.kind == "flush":
        sim.flush(node, 1 + op.b % 4)
    elif op.kind == "arrive":
        sim.arrive(node, op.b)
    elif op.kind == "tick":
        sim.tick(node)
    elif op.kind == "crash":
        sim.crash(node)
    elif op.kind == "move":
        sim.move(node)
    elif op.kind == "push_flow":
        sim.push_flow(node)
    elif op.kind == "decommission":
        # at most one node leaves, and only one that supplies nobody (a pure consumer end)
        first = not any(s.decommissioned for s in sim.nodes.values())
        if allow_decommission and op.b % 4 == 0 and first and not sim.consumers_of(node) \
                and sim.nodes[node].config.requires:
            sim.decommission(node)
    elif op.kind == "reclaim":
        sim.reclaim(node)
    elif op.kind == "compact":  # b % 4 == 0: the node keeps the records in memory
        sim.compact(node, forget=op.b % 4 != 0)
    else:
        raise ValueError(f"unknown op {op.kind!r}")
    if settle and op.kind in ("produce", "produce_var", "scrap", "request", "arrive", "tick"):
        sim.flush(node, len(sim.nodes[node].pending))


def ops(kinds: Sequence[str] = OP_KINDS) -> st.SearchStrategy[Op]:
    """One operation, drawn with weights that keep trades completing between faults."""
    weighted = [k for k in kinds for _ in range(_WEIGHTS.get(k, 1))]
    return st.builds(Op, st.sampled_from(weighted), st.integers(0, 63), st.integers(0, 63))


def fault_schedules(topology: SimTopology | None = None, *, min_size: int = 30,
                    max_size: int = 120, kinds: Sequence[str] = OP_KINDS,
                    ) -> st.SearchStrategy[list[Op]]:
    """Lists of operations: production, requests, arrivals, deliveries in any order, drops,
    duplicates, crash-restarts between any two durable steps, flow moves, one
    decommission. ``topology`` is accepted for symmetry; ops pick nodes modulo its size."""
    return st.lists(ops(kinds), min_size=min_size, max_size=max_size)
