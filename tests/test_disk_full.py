"""A disk that fills up under real replicas (issue 15): every replica's data dir is a small
tmpfs (needs root and mount: skipped otherwise; unmounted even on failure). Once the disks
are full a replica cannot journal an entry: it stops loudly (fail-stop, exit 70, "cannot
write the Raft journal ... disk full or failing" on stderr) instead of acknowledging
anything it could not make durable. Nothing acknowledged is lost, and with space back the
restarted replicas recover.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable, wait_until

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster

DISK = "16m"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write zeros into ``path/filler`` until the filesystem is full."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:  # unbuffered: close has nothing to flush
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as out:  # the last bytes
        while True:
            out.write(b"\0")
    return filler


def update(cluster: LocalCluster, i: int, capacity: int, timeout: float) -> int:
    spec = pb.NodeSpec()
    spec.CopyFrom(WINDOW_FACTORY[0])
    spec.capacity = capacity
    return cluster.stub(i).UpdateSpec(pb.UpdateSpecRequest(spec=spec), timeout=timeout
                                      ).flow_version


def test_full_disks_refuse_loudly_and_recover(tmp_path: Path) -> None:
    cluster = LocalCluster(3, tmp_path / "c")
    with contextlib.ExitStack() as mounts:
        for i in range(3):
            mounts.enter_context(tmpfs(cluster.data_dir(i), DISK))
        try:
            cluster.start()
            cluster.wait_ready(timeout=30)
            register_all(cluster, 0, WINDOW_FACTORY[:2])
            cluster.wait_converged()
            acked: list[tuple[int, int]] = []  # (version, capacity) of acknowledged writes
            acked.append((retry_unavailable(lambda: update(cluster, 0, 2, 5.0)), 2))
            fillers = [fill(cluster.data_dir(i)) for i in range(3)]
            attempted = []
            for k in range(100):  # LMDB reuses freed pages for a while; then it needs more
                if len(cluster.running()) < 2:
                    break  # no majority left: nothing more can be acknowledged
                capacity = 10 + k
                attempted.append(capacity)
                target = cluster.running()[0]
                try:
                    acked.append((update(cluster, target, capacity, 1.5), capacity))
                except grpc.RpcError as exc:
                    assert exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.DEADLINE_EXCEEDED), exc
            # A majority is gone: no more acknowledgements, and each death was loud.
            wait_until(lambda: len(cluster.running()) <= 1, timeout=30,
                       what="replicas with full disks to stop")
            dead = [i for i in range(3) if not cluster.is_running(i)]
            for i in dead:
                proc = cluster.procs[i]
                assert proc is not None and proc.wait(timeout=10) != 0
                err = (tmp_path / "c" / f"r{i}.err").read_text(errors="replace")
                assert "cannot write the Raft journal" in err or "cannot sync the Raft" in err, \
                    err[-2000:]
            with pytest.raises(grpc.RpcError):
                update(cluster, cluster.running()[0] if cluster.running() else 0, 999, 1.5)
            # Space comes back: restart, recover, nothing acknowledged lost.
            for filler in fillers:
                os.unlink(filler)
            for i in dead:
                cluster.restart(i)
            cluster.wait_ready(timeout=30)
            cluster.wait_converged(timeout=30)
            last_version, last_capacity = acked[-1]
            tail = attempted[attempted.index(last_capacity) + 1:] if last_capacity in attempted \
                else attempted
            for i in range(3):
                reply = cluster.stub(i).ListNodes(
                    pb.ListNodesRequest(consistency=pb.LINEARIZABLE), timeout=10)
                assert reply.flow_version >= last_version
                saw = next(n for n in reply.nodes if n.spec.node_id == "saw-1")
                assert saw.spec.capacity in {last_capacity, *tail, 999}
            assert retry_unavailable(lambda: update(cluster, 1, 5000, 5.0)) > last_version
        finally:
            cluster.stop()
