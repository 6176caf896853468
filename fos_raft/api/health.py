"""What "serving" means for a coordinator replica: it knows a leader and has a quorum.

A replica cut off from the majority still answers RPCs (reads of a stale state, writes
that time out); reporting SERVING then would send load balancers and operators to the one
replica that cannot commit. The check also counts leader changes for the metrics.
"""

from __future__ import annotations

from fos_raft.replica.core import Replica
from fos_raft.runtime.health import STARTING, Readiness


class ReplicaHealth:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.leader = ""
        self.leader_changes = 0  # times a (new) leader became known here
        self.last = STARTING

    def check(self) -> Readiness:
        self.last = self._check()
        return self.last

    def _check(self) -> Readiness:
        replica = self.replica
        leader = replica.leader
        if leader and leader != self.leader:
            self.leader_changes += 1
        self.leader = leader
        if not leader:
            return Readiness(False, "no leader")
        if not replica.has_quorum:
            return Readiness(False, f"no quorum (leader {leader} last seen)")
        return Readiness(True)
