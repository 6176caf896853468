"""A crash between the two halves of a log compaction loses no committed entry.

pysyncobj (0.3.17) compacts in two ticks: it writes the snapshot (raft.dump), and one tick
later drops the journal entries the snapshot covers. A SIGKILL in between leaves a journal
that starts before the snapshot. On restart pysyncobj keeps the journal only if it starts
with exactly the snapshot's last two entries, and otherwise clears it, throwing away the
committed entries after the snapshot (a single replica forgets acknowledged writes; in a
cluster a committed entry can drop below a majority). `LmdbJournal` finishes the
interrupted compaction when it opens, so the tail survives.

The crash is real: tests/raft_compaction_crash.py runs a single-replica coordinator whose
journal SIGKILLs its own process at the start of such a compaction.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pysyncobj.pickle as raft_pickle

from fos_raft.cli.launcher import free_port
from fos_raft.replica.journal import LmdbJournal
from fos_raft.state.core import CoordinatorState, apply

HELPER = Path(__file__).with_name("raft_compaction_crash.py")
REGULAR = 0  # pysyncobj's _COMMAND_TYPE.REGULAR: an @replicated call


def _run(data_dir: Path, raft: str, mode: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HELPER), str(data_dir), raft, mode],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def _read_disk(data_dir: Path) -> tuple[list[Any], int, int, CoordinatorState]:
    """(journal entries, journal commit index, snapshot index, snapshot state) as on disk."""
    journal = LmdbJournal(str(data_dir / "raft.lmdb"))  # no dump file: read it as it is
    try:
        entries, commit = list(journal._entries), journal.getRaftCommitIndex()
    finally:
        journal._closed = True
        journal._env.close()
    with gzip.open(data_dir / "raft.dump") as f:
        data, last_entry, _, _ = raft_pickle.load(f)
    return entries, commit, last_entry[1], data[1]["state"]


def _replay(state: CoordinatorState, entries: list[Any], after: int) -> CoordinatorState:
    """The state once every command after index ``after`` is applied (apply is pure)."""
    for command, idx, _ in entries:
        if idx > after and command[0] == REGULAR:
            _, (request_id, coordinator_command) = raft_pickle.loads(command[1:])
            state, _ = apply(state, request_id, coordinator_command)
    return state


def test_crash_between_snapshot_and_compaction_keeps_the_committed_tail(tmp_path: Path):
    data_dir = tmp_path / "r0"
    raft = f"127.0.0.1:{free_port()}"
    crashed = _run(data_dir, raft, "crash", timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]

    entries, commit, snapshot_index, snapshot_state = _read_disk(data_dir)
    # The crash state this test is about: the snapshot is written, the journal uncompacted,
    # and committed entries follow the snapshot.
    assert entries[0][1] < snapshot_index - 1
    assert commit > snapshot_index
    # A single replica commits its whole journal once it leads again: all of it must apply.
    expected = _replay(snapshot_state, entries, snapshot_index)
    assert expected.version > snapshot_state.version

    resumed = _run(data_dir, raft, "resume", timeout=60)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["applied"] >= entries[-1][1]
    assert (report["version"], report["digest"]) == (expected.version, expected.digest)
