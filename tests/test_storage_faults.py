"""Damaged or lost storage is refused at start in one line, as real processes: the
corruption matrix (flip bytes, truncate to half, truncate to 0, zero the first pages) over
a replica's journal (``raft.lmdb/data.mdb``) and snapshot (``raft.dump``); plus a journal
lost beside its snapshot, and a term/vote record lost or changed (fos_raft.replica.storage_check).

One real replica makes the state once (a snapshot and a journal tail); every case copies
it, damages the copy and starts ``fos-coordinator`` on it: exit non-zero within seconds,
the file named, the replace-a-replica procedure pointed to, no traceback, no SIGBUS. The
undamaged copy starts and serves.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable, wait_until

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.journal import read_journal
from fos_raft.replica.storage_check import KEY_TERM, KEY_VOTE

MARKER = b"mxtail-node-7"  # registered after the snapshot: its entry is in the journal tail


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalCluster, Path]:
    base = tmp_path_factory.mktemp("storage-faults")
    cluster = LocalCluster(1, base, log_compaction_entries=20)
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        register_all(cluster, 0, WINDOW_FACTORY[:4])
        for k in range(30):
            call = cluster.stub(0).Drain if k % 2 == 0 else cluster.stub(0).Undrain
            retry_unavailable(lambda call=call: call(pb.NodeRequest(node_id="saw-1"),
                                                     timeout=5))
        wait_until(lambda: (cluster.data_dir(0) / "raft.dump").exists(), what="a snapshot")
        tail = pb.NodeSpec(node_id=MARKER.decode(), address="127.0.0.1:7299",
                           produces=pb.ItemReq(item="nails", qty=5))
        register_all(cluster, 0, [tail])
    finally:
        cluster.stop()
    entries, term, _ = read_journal(str(cluster.data_dir(0) / "raft.lmdb"))
    assert term >= 1 and any(MARKER in bytes(e[0]) for e in entries)
    return cluster, cluster.data_dir(0)


def _flip_marker(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(MARKER)
    assert at >= 0
    while at >= 0:  # every copy: the live page and stale ones alike
        data[at:at + len(MARKER)] = bytes(b ^ 0xFF for b in data[at:at + len(MARKER)])
        at = data.find(MARKER, at + 1)
    path.write_bytes(bytes(data))


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 500] = bytes(b ^ 0xFF for b in data[mid:mid + 500])
    path.write_bytes(bytes(data))


def _half(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _zero_head(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(bytes(min(2 * 4096, path.stat().st_size)))


def _meta_put(key: bytes, value: bytes | None) -> Callable[[Path], None]:
    def damage(journal_dir: Path) -> None:
        env = lmdb.open(str(journal_dir), max_dbs=2)
        try:
            with env.begin(write=True) as txn:
                meta = env.open_db(b"meta", txn=txn)
                if value is None:
                    txn.delete(key, db=meta)
                else:
                    txn.put(key, value, db=meta)
        finally:
            env.close()
    return damage


JOURNAL = "raft.lmdb/data.mdb"
DUMP = "raft.dump"
CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "journal-flip": (JOURNAL, _flip_marker),
    "journal-half": (JOURNAL, _half),
    "journal-empty": (JOURNAL, _empty),
    "journal-zero-meta": (JOURNAL, _zero_head),
    "journal-gone": (JOURNAL, lambda p: shutil.rmtree(p.parent)),
    "term-lost": (JOURNAL, lambda p: _meta_put(KEY_TERM, None)(p.parent)),
    "vote-changed": (JOURNAL, lambda p: _meta_put(KEY_VOTE, b"r9")(p.parent)),
    "snapshot-flip": (DUMP, _flip_middle),
    "snapshot-half": (DUMP, _half),
    "snapshot-empty": (DUMP, _empty),
    "snapshot-zero-head": (DUMP, _zero_head),
}


def _command(cluster: LocalCluster, data_dir: Path) -> list[str]:
    cmd = cluster.command(0)
    cmd[cmd.index("--data-dir") + 1] = str(data_dir)
    return cmd


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_replica_refuses_to_start_in_one_line(
        made: tuple[LocalCluster, Path], tmp_path: Path, case: str) -> None:
    cluster, pristine = made
    copy = tmp_path / "r0"
    shutil.copytree(pristine, copy, ignore=shutil.ignore_patterns("*.lock", "lock.mdb"))
    name, damage = CASES[case]
    damage(copy / name)
    started = time.monotonic()
    done = subprocess.run(_command(cluster, copy), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 70, (done.returncode, done.stderr[-2000:])  # fail-stop's
    assert time.monotonic() - started < 20
    lines = [line for line in done.stderr.splitlines() if line.startswith("fos-coordinator:")]
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert name.split("/")[-1] in lines[0] and "Replacing a replica" in lines[0], lines[0]


def test_the_undamaged_copy_starts(made: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, pristine = made
    copy = tmp_path / "r0"
    shutil.copytree(pristine, copy, ignore=shutil.ignore_patterns("*.lock", "lock.mdb"))
    (copy / "grpc.addr").unlink(missing_ok=True)
    proc = subprocess.Popen(_command(cluster, copy), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: (copy / "grpc.addr").exists() or proc.poll() is not None,
                   timeout=30, what="the replica to serve")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
