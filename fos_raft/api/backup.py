"""Backup and restore at the replica: the Snapshot RPC's reply and the restore seeding.

A snapshot is the state one replica has applied: one immutable `CoordinatorState`, so it
is consistent by construction (never half a command). Any replica answers, with or
without a quorum: that is what rescues a lone survivor's state. A restore submits one
replicated `SeedState` command, so every replica of the new cluster takes the same state.
"""

from __future__ import annotations

import asyncio

from fos_pb import coordinator_pb2 as pb
from fos_raft.model import ErrorCode, ModelError
from fos_raft.replica.core import Replica, Unavailable
from fos_raft.runtime.logging import get_logger
from fos_raft.state.commands import SeedState
from fos_raft.state.snapshot import encode

log = get_logger("fos_raft.api.backup")


def snapshot_reply(replica: Replica, replica_id: str) -> pb.SnapshotReply:
    state = replica.state
    applied = replica.raft_status()["last_applied"]
    meta = {"replica_id": replica_id, "raft_address": replica.raft_address,
            "applied_index": applied, "from_leader": replica.is_leader}
    return pb.SnapshotReply(
        snapshot=encode(state, meta), flow_version=state.version, digest=state.digest,
        replica_id=replica_id, from_leader=replica.is_leader, has_quorum=replica.has_quorum,
        applied_index=applied)


async def seed_from_snapshot(replica: Replica, snapshot: bytes, retry_s: float = 0.5) -> bool:
    """Submit the snapshot as this (new) cluster's state once it has a leader; True when
    seeded, False when the cluster already had state (nothing is overwritten)."""
    command = SeedState(snapshot.decode())
    while True:
        if replica.state.nodes:
            log.warning("not restoring: the cluster already has state",
                        flow_version=replica.state.version)
            return False
        try:
            outcome = await replica.submit(command, timeout=10.0)
        except Unavailable as exc:
            log.info("restore waits for a leader", error=str(exc))
            await asyncio.sleep(retry_s)
            continue
        except ModelError as exc:
            if exc.code is ErrorCode.FAILED_PRECONDITION:
                log.warning("not restoring", reason=exc.message)
                return False
            raise
        log.info("restored from snapshot", flow_version=outcome.version,
                 digest=replica.state.digest[:16])
        return True
