"""Helper process for tests/test_journal_compaction_crash.py: a single-replica coordinator
(the real `Replica`: pysyncobj, LMDB journal, snapshots) that crashes in the middle of a log
compaction, then resumes.

Usage: python tests/raft_compaction_crash.py DATA_DIR RAFT_ADDR crash|resume

``crash``: registers a node and toggles it (drain/undrain) without end; the journal SIGKILLs
the process when a compaction is about to drop entries while entries *after* the new
snapshot are already committed: the snapshot file is on disk, the journal still holds
everything. ``resume``: starts on the same data dir, waits until the whole journal is applied
(or 20 s pass) and prints one JSON line {applied, version, digest}.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from fos_raft.model import ItemReq, NodeSpec
from fos_raft.replica import journal as journal_mod
from fos_raft.replica.core import RaftTiming, Replica
from fos_raft.state.commands import Drain, Register, Undrain

COMPACTION = 20


class CrashingJournal(journal_mod.LmdbJournal):
    """Dies (SIGKILL, no cleanup) at the start of a compaction that leaves a committed tail."""

    def deleteEntriesTo(self, entryTo: int) -> None:
        snapshot_index = self._entries[entryTo + 1][1] if entryTo + 1 < len(self) else 0
        if self.getRaftCommitIndex() > snapshot_index > 0:
            os.kill(os.getpid(), signal.SIGKILL)
        super().deleteEntriesTo(entryTo)


async def crash(replica: Replica) -> None:
    await replica.submit(Register(NodeSpec("saw-1", "127.0.0.1:1", ItemReq("wood", 1))), 10.0)
    k = 0
    while True:  # until the journal kills the process
        command = Drain("saw-1") if k % 2 == 0 else Undrain("saw-1")
        await replica.submit(command, 10.0)
        k += 1


async def resume(replica: Replica) -> None:
    assert replica.journal is not None and replica._obj is not None
    journal_end = replica.journal[-1][1]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while replica._obj.raftLastApplied < journal_end and loop.time() < deadline:
        await replica.wait_changed(0.1)
    state = replica.state
    print(json.dumps({
        "applied": replica._obj.raftLastApplied,
        "version": state.version,
        "digest": state.digest,
    }), flush=True)


async def main(data_dir: Path, raft_address: str, mode: str) -> None:
    if mode == "crash":
        journal_mod.LmdbJournal = CrashingJournal  # type: ignore[misc]  # Replica looks it up
    timing = RaftTiming(log_compaction_entries=COMPACTION)
    replica = Replica(raft_address=raft_address, peers=[], data_dir=data_dir, timing=timing)
    await replica.start()
    try:
        await (crash(replica) if mode == "crash" else resume(replica))
    finally:
        await replica.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
