"""An agent's damaged WAL, as real ``fos-agent`` processes: the corruption matrix (flip
bytes, truncate to half, truncate to 0, zero the meta pages) refused at start in one line
(exit 1, the file named, what to do; no traceback, no SIGBUS: checked before it is mapped,
fos_agent.storage.wal_check), and a WAL that fails mid-run and cannot be reopened stops
the agent (exit 1) instead of leaving it NOT_SERVING for ever.

The WAL is made by the real write path (fos_agent.testing.wal_chain); a 1-replica
coordinator serves the agents that get as far as registering.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_util import wait_until
from coord_util import running_cluster

from fos_agent.storage.wal import wal_path
from fos_agent.testing.wal_chain import WalChain
from fos_raft.cli.launcher import LocalCluster, free_port

BIN = Path(sys.executable).parent
ITEM = b"i0"  # n0's product in every record of its WAL


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(1, tmp_path_factory.mktemp("wal-faults-coord")) as c:
        yield c


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """n0's data dir after five batches went down a 2-stage chain (records live, none
    compacted: n1 holds its inputs QUEUED... consumed, n0's outbound DELIVERED)."""
    root = tmp_path_factory.mktemp("wal-faults-made")
    chain = WalChain(root, 2)
    try:
        for _ in range(5):
            chain.final_product()
    finally:
        chain.close()
    return chain.data_dir("n0")


def _agent(cluster: LocalCluster, data_dir: Path, *extra: str) -> list[str]:
    return [str(BIN / "fos-agent"), "--node-id", "n0", "--produces", "i0:1",
            "--listen", f"127.0.0.1:{free_port()}", "--coordinators",
            ",".join(cluster.grpc_addresses), "--data-dir", str(data_dir), *extra]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b'"' + ITEM + b'"')
    assert at >= 0
    while at >= 0:  # every copy of the item name, live pages and stale ones
        data[at + 1:at + 1 + len(ITEM)] = bytes(b ^ 0xFF for b in ITEM)
        at = data.find(b'"' + ITEM + b'"', at + 1)
    path.write_bytes(bytes(data))


def _half(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _zero_meta(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(bytes(2 * 4096))


CASES: dict[str, Callable[[Path], None]] = {
    "flip": _flip, "half": _half, "empty": lambda p: p.write_bytes(b""),
    "zero-meta": _zero_meta,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_wal_is_refused_in_one_line(cluster: LocalCluster, pristine: Path,
                                              tmp_path: Path, case: str) -> None:
    copy = tmp_path / "n0"
    shutil.copytree(pristine, copy, ignore=shutil.ignore_patterns("lock.mdb", "agent.lock"))
    CASES[case](wal_path(copy) / "data.mdb")
    started = time.monotonic()
    done = subprocess.run(_agent(cluster, copy), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert time.monotonic() - started < 20
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("fos-agent:")]
    assert len(lines) == 1 and "wal" in lines[0] and "restore the data dir" in lines[0], \
        done.stderr[-2000:]


def test_the_undamaged_copy_starts(cluster: LocalCluster, pristine: Path,
                                   tmp_path: Path) -> None:
    copy = tmp_path / "n0"
    shutil.copytree(pristine, copy, ignore=shutil.ignore_patterns("lock.mdb", "agent.lock"))
    ready = tmp_path / "ready"
    proc = subprocess.Popen(_agent(cluster, copy, "--ready-file", str(ready)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, 30, "the agent ready")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_a_wal_that_fails_mid_run_stops_the_agent(cluster: LocalCluster,
                                                  tmp_path: Path) -> None:
    """The agent's commits start failing (its file may not grow: RLIMIT_FSIZE, as a full
    disk would) and its WAL was replaced under it by a file that is not one: the engine's
    recovery cannot reopen it, so the process exits 1 saying why."""
    data_dir = tmp_path / "n0"
    ready = tmp_path / "ready"
    limit = 1 << 20

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen(_agent(cluster, data_dir, "--ready-file", str(ready),
                                   "--cycle-s", "0", "--output-cap", "1000000"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=small_files)
    # drained as it comes (a full pipe would block the agent's logging; a file would be
    # held to the same size limit as the WAL)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(
        raw.decode(errors="replace") for raw in proc.stderr), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, 30, "the agent ready")
        assert proc.poll() is None, "".join(lines)[-3000:]
        wal = wal_path(data_dir) / "data.mdb"
        os.rename(wal, wal.with_name("old.mdb"))  # the open environment keeps its inode
        wal.write_bytes(bytes(8192))
        os.unlink(wal.with_name("old.mdb"))
        try:
            wait_until(lambda: proc.poll() is not None, 60, "the agent to stop")
        except AssertionError:
            raise AssertionError("".join(lines)[-3000:]) from None
        reader.join(timeout=10)
        err = "".join(lines)
        assert proc.returncode == 1, (proc.returncode, err[-2000:])
        stopped = [line for line in err.splitlines() if line.startswith("fos-agent: n0 stopped")]
        assert len(stopped) == 1 and "data.mdb" in stopped[0], err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
