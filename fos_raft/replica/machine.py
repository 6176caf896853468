"""The replicated object of a coordinator replica: the pysyncobj consumer whose
``@replicated`` ``execute`` applies a command to the pure `state` (``read_barrier`` is a
no-op for linearizable reads). It runs on pysyncobj's tick thread; only its ``state``
attribute is snapshotted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pysyncobj import SyncObjConsumer, replicated

from fos_raft.model import Edge, NodeSpec, NodeStatus, Plan
from fos_raft.planner.plan import Planner
from fos_raft.runtime.logging import get_logger
from fos_raft.state.commands import Command, Outcome
from fos_raft.state.core import CoordinatorState, apply

# Same logger name as before the split: log consumers filter on it.
log = get_logger("fos_raft.replica.core")


class StateMachine(SyncObjConsumer):
    """The replicated object. Only ``state`` is snapshotted (set after the base __init__)."""

    def __init__(self, on_applied: Callable[[CoordinatorState], None]) -> None:
        # Set before super().__init__, so not snapshotted: listeners and planner caches.
        self._on_applied = on_applied
        self._planner = Planner()
        # the last plan and the edges it removed/added (Planner.last_delta), for execute
        self._planned: tuple[Plan, tuple[frozenset[Edge], frozenset[Edge]] | None] | None = None
        super().__init__()
        self.state = CoordinatorState()

    @replicated
    def execute(self, request_id: str, command: Command) -> Outcome:
        self._planned = None
        self.state, outcome = apply(self.state, request_id, command, self._plan)
        planned = self._planned
        if planned is not None and planned[0] is self.state.flow and planned[1] is not None:
            self.state.note_edge_delta(*planned[1])  # for WatchFlow (fos_raft.api.hoods)
        self._notify()
        return outcome

    @replicated
    def read_barrier(self) -> None:
        """A no-op entry: committing it confirms a linearizable read (replica.read_index).
        pysyncobj numbers replicated methods by sorted name: this one sorts after
        ``execute``, so journals written before it existed replay unchanged."""

    def _plan(
        self,
        catalog: Mapping[str, NodeSpec],
        status: Mapping[str, NodeStatus],
        previous: Plan,
        changed: str,
    ) -> Plan:
        # Incremental re-plan around the changed node; same result as a full plan (P7).
        try:
            flow = self._planner.after_change(catalog, status, previous, changed)
            self._planned = (flow, self._planner.last_delta)
            return flow
        except Exception:
            # apply refuses the command (deterministically, it hopes): a replica that refuses
            # what others accept diverges, so say so loudly.
            log.exception("planner failed; the command is refused", changed=changed)
            self._planner = Planner()  # caches may be half-updated: start clean
            raise

    def _deserialize(self, data: dict[str, Any]) -> None:
        # A snapshot was loaded (restart or from the leader). Logged with the applied index it
        # replaces: forensics of a divergence must tell a re-install over newer state apart.
        sync_obj = self._syncObj
        applied_before = sync_obj.raftLastApplied if sync_obj is not None else None
        super()._deserialize(data)
        log.info(
            "snapshot loaded",
            flow_version=self.state.version,
            digest=self.state.digest[:12],
            applied_before=applied_before,
        )
        self._notify()

    def _notify(self) -> None:
        try:
            self._on_applied(self.state)
        except Exception:  # never let a listener break apply
            log.exception("on_applied listener failed")
