"""Read consistency of the read RPCs (GetFlow, ListNodes, ClusterStatus; issue 15).

SERIALIZABLE (the default when a request leaves the field unset, as agents do): this
replica's applied state at once; it may lag a write that already completed elsewhere.
LINEARIZABLE: first `Replica.confirm_read` (a ReadIndex heartbeat round of the leader,
fos_raft.replica.read_rounds, or failing that a shared no-op barrier through the leader,
fos_raft.replica.read_index), then the applied state, which then reflects every write
acknowledged before the read arrived.
"""

from __future__ import annotations

from fos_pb import coordinator_pb2 as pb
from fos_raft.replica.core import Replica
from fos_raft.state.core import CoordinatorState


def is_linearizable(consistency: int) -> bool:
    return consistency == pb.LINEARIZABLE


async def read_state(replica: Replica, consistency: int, timeout: float) -> CoordinatorState:
    """The state to answer from; raises `Unavailable` when a linearizable read cannot be
    confirmed in ``timeout``."""
    if is_linearizable(consistency):
        return await replica.confirm_read(timeout)
    return replica.state
