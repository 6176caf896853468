"""What the state keeps per registered node, and the read-only view of the state that
validation needs (so `validate` does not import `core`, which imports it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fos_raft.model import NodeSpec, NodeStatus


@dataclass(frozen=True, slots=True)
class NodeEntry:
    spec: NodeSpec
    status: NodeStatus
    spec_version: int  # flow version at which the spec last changed: the CAS token
    changed_version: int  # flow version of the last command that touched this node


class StateView(Protocol):
    """The part of `fos_raft.state.core.CoordinatorState` that validation reads."""

    @property
    def nodes(self) -> Mapping[str, NodeEntry]: ...

    @property
    def catalog(self) -> Mapping[str, NodeSpec]: ...
