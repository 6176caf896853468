"""Forensics for coordinator cluster tests: when replicas do not converge, say why.

`converge_or_explain` waits like `LocalCluster.wait_converged`; on timeout it records what
each live replica reports (applied/commit index, term, leader, flow version, digest), then
SIGKILLs the replicas (so the files stop changing), reads each data dir (journal range and
commit index, the snapshot's index, version and digest), collects the Raft warnings from
each replica's log, copies the whole cluster directory to a place pytest does not rotate
away (``$FOS_KEEP_DIR``, default /tmp/fos-kept) and fails with all of it in the message.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path

import grpc
import pysyncobj.pickle as raft_pickle

from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.journal import LmdbJournal

KEEP_DIR = Path(os.environ.get("FOS_KEEP_DIR", "/tmp/fos-kept"))
_RAFT_WARNINGS = ("truncating", "failed", "exceeds", "critical", "error")


def live_report(cluster: LocalCluster, i: int) -> str:
    if not cluster.is_running(i):
        return f"r{i}: not running"
    try:
        st = cluster.status(i)
    except grpc.RpcError as exc:
        return f"r{i}: status failed {exc.code()}"
    return (
        f"r{i}: applied {st.applied_index} commit {st.commit_index} term {st.term} "
        f"leader {st.leader or '-'} flow version {st.flow_version} "
        f"digest {st.state_digest[:12]} raft {st.raft_address}"
    )


def disk_report(data_dir: Path) -> str:
    """Journal range, term and commit index, and the snapshot's index/version/digest."""
    parts = []
    lmdb_dir = data_dir / "raft.lmdb"
    if lmdb_dir.exists():
        journal = LmdbJournal(str(lmdb_dir))
        try:
            entries = journal._entries
            span = f"{entries[0][1]}..{entries[-1][1]}" if entries else "empty"
            parts.append(
                f"journal {span} ({len(entries)} entries) term {journal.getCurrentTerm()} "
                f"commit {journal.getRaftCommitIndex()}"
            )
        finally:
            journal._closed = True
            journal._env.close()
    dump = data_dir / "raft.dump"
    if dump.exists():
        try:
            with gzip.open(dump) as f:
                data, last_entry, _, _ = raft_pickle.load(f)
            state = data[1]["state"]
            parts.append(
                f"snapshot index {last_entry[1]} term {last_entry[2]} "
                f"flow version {state.version} digest {state.digest[:12]}"
            )
        except Exception as exc:  # forensics must not hide the original failure
            parts.append(f"snapshot unreadable: {type(exc).__name__}: {exc}")
    return "; ".join(parts) or "no raft files"


def raft_warnings(cluster: LocalCluster, i: int, limit: int = 8) -> list[str]:
    path = cluster.base_dir / f"r{i}.err"
    if not path.exists():
        return []
    lines = [
        line[:300]
        for line in path.read_text(errors="replace").splitlines()
        if any(word in line for word in _RAFT_WARNINGS)
    ]
    return lines[-limit:]


def keep(cluster: LocalCluster, label: str) -> Path:
    target = KEEP_DIR / f"{label}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(cluster.base_dir, target, dirs_exist_ok=True)
    return target


def explain(cluster: LocalCluster, label: str) -> str:
    """Everything above as one message; kills every replica of ``cluster`` (by PID)."""
    live = [live_report(cluster, i) for i in range(cluster.n)]
    for i in range(cluster.n):
        cluster.kill(i)
    lines = ["live:", *live, "on disk after SIGKILL:"]
    for i in range(cluster.n):
        lines.append(f"r{i}: {disk_report(cluster.data_dir(i))}")
        lines += [f"  r{i} log: {w}" for w in raft_warnings(cluster, i)]
    lines.append(f"cluster directory kept at {keep(cluster, label)}")
    return "\n".join(lines)


def converge_or_explain(cluster: LocalCluster, timeout: float, label: str) -> str:
    """`LocalCluster.wait_converged` (the common digest); on timeout an AssertionError that
    carries `explain` (the replicas are killed then: the test is over anyway)."""
    try:
        return cluster.wait_converged(timeout=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{explain(cluster, label)}") from exc
