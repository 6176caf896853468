"""The canonical plain-data form of the replicated records: sorted lists of plain values,
the input of `CoordinatorState.canonical` and so of the state digest every replica must
compute identically. Pure."""

from __future__ import annotations

from typing import Any

from fos_raft.model import NodeSpec, NodeStatus, Plan
from fos_raft.state.commands import Outcome


def spec_data(spec: NodeSpec) -> list[Any]:
    return [
        spec.node_id,
        spec.address,
        [spec.produces.item, spec.produces.qty],
        [[r.item, r.qty] for r in spec.requires],
        spec.capacity,
    ]


def status_data(status: NodeStatus) -> list[Any]:
    # ``started`` is written only when False: the state of a cluster from before the field
    # existed (every node started) keeps its digest, and its backup files still restore.
    data: list[Any] = [status.alive, status.drained, status.down_reason]
    return data if status.started else [*data, False]


def plan_data(plan: Plan) -> list[Any]:
    return [
        sorted(plan.members),
        [[e.supplier, e.consumer, e.item, e.qty, e.rank] for e in sorted(plan.edges)],
    ]


def outcome_data(outcome: Outcome) -> list[Any]:
    return [
        outcome.version,
        outcome.changed,
        outcome.error.value if outcome.error else None,
        outcome.message,
    ]
