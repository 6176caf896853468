"""Commands of the replicated coordinator state and their deterministic outcome.

Plain frozen dataclasses: pysyncobj pickles them into the Raft log, so their module path and
field names are part of the journal format (add fields with defaults; never rename).
"""

from __future__ import annotations

from dataclasses import dataclass

from fos_raft.model import ErrorCode, ModelError, NodeSpec, compat_getstate, compat_setstate


@dataclass(frozen=True, slots=True)
class Register:
    """Add a node. ``started``: the node's own agent sent it (then it is alive at once);
    False for an operator's catalog (``fosctl apply``): the node is not-started until its
    agent registers or rejoins. The default is the meaning of journals written before."""

    spec: NodeSpec
    started: bool = True

    __getstate__ = compat_getstate
    __setstate__ = compat_setstate


@dataclass(frozen=True, slots=True)
class UpdateSpec:
    spec: NodeSpec
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class MarkDown:
    node_id: str
    reason: str = ""
    suspicion: bool = False  # True when a probed ReportSuspect confirmed it (counted)


@dataclass(frozen=True, slots=True)
class MarkUp:
    node_id: str
    address: str = ""  # empty keeps the registered address


@dataclass(frozen=True, slots=True)
class Drain:
    node_id: str


@dataclass(frozen=True, slots=True)
class Undrain:
    node_id: str


@dataclass(frozen=True, slots=True)
class Decommission:
    node_id: str


@dataclass(frozen=True, slots=True)
class AnnounceReplica:
    """Internal: a replica publishes its gRPC address so others can name the leader's."""

    raft_address: str
    grpc_address: str


@dataclass(frozen=True, slots=True)
class ForgetReplica:
    """Internal: drop a removed replica's gRPC address."""

    raft_address: str


@dataclass(frozen=True, slots=True)
class NoteRefuted:
    """Internal: a probe refuted a suspicion (counted on every replica, flow unchanged)."""

    suspect: str


@dataclass(frozen=True, slots=True)
class SeedState:
    """Restore: a new, empty cluster takes the state of a snapshot file (the JSON text of
    fos_raft.state.snapshot). Refused once the cluster has any state of its own."""

    snapshot: str


Command = (
    Register
    | UpdateSpec
    | MarkDown
    | MarkUp
    | Drain
    | Undrain
    | Decommission
    | AnnounceReplica
    | ForgetReplica
    | NoteRefuted
    | SeedState
)
FLOW_COMMANDS = (Register, UpdateSpec, MarkDown, MarkUp, Drain, Undrain, Decommission)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The deterministic result of one command: the flow version after it, whether it changed
    anything, and the refusal (code + message) when it was refused."""

    version: int
    changed: bool = False
    error: ErrorCode | None = None
    message: str = ""

    def raise_for_error(self) -> Outcome:
        if self.error is not None:
            raise ModelError(self.error, self.message)
        return self
