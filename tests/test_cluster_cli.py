"""`fos-coordinator` as a process: ready line, grpc.addr, port 0, metrics, SIGTERM, restart,
data-dir lock. A single-replica cluster (it is its own majority)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from coord_util import register_all, spec, wait_until

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import free_port


def _start(data_dir: Path, raft: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fos_raft.cli.coordinator",
            "--id",
            "solo",
            "--raft",
            raft,
            "--grpc",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)


class _Solo:
    """Minimal stand-in for LocalCluster's stub()/status(), for coord_util helpers."""

    def __init__(self, address: str) -> None:
        import grpc

        from fos_pb import coordinator_pb2_grpc as pb_grpc

        self.channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.CoordinatorStub(self.channel)

    def stub(self, _i: int):
        return self._stub


def test_ready_line_metrics_sigterm_restart_and_lock(tmp_path: Path):
    data_dir = tmp_path / "solo"
    raft = f"127.0.0.1:{free_port()}"
    proc = _start(data_dir, raft)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and ready["pid"] == proc.pid and ready["raft"] == raft
        host, _, port = ready["grpc"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0  # --grpc HOST:0 picked a port
        assert (data_dir / "grpc.addr").read_text().strip() == ready["grpc"]

        solo = _Solo(ready["grpc"])
        wait_until(
            lambda: solo.stub(0).ClusterStatus(pb.ClusterStatusRequest(), timeout=2).leader,
            what="the single replica to lead",
        )
        version = register_all(solo, 0, [spec("saw-1", 7201, ("wood", 3))])
        metrics = urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=5).read()
        text = metrics.decode()
        assert f'fos_coordinator_flow_version{{replica="solo"}} {float(version)}' in text
        assert 'fos_coordinator_is_leader{replica="solo"} 1.0' in text
        assert 'fos_journal_unsynced_sends_total{replica="solo"} 0.0' in text
        fsyncs = next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("fos_journal_fsyncs_total")
        )
        assert fsyncs >= 1

        # A second process on the same data dir is refused, with a one-line reason.
        second = _start(data_dir, f"127.0.0.1:{free_port()}")
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2 and "in use" in err
        solo.channel.close()

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # clean stop
    finally:
        _stop(proc)

    proc = _start(data_dir, raft)
    try:
        ready = json.loads(proc.stdout.readline())
        solo = _Solo(ready["grpc"])
        nodes = wait_until(
            lambda: solo.stub(0).ListNodes(pb.ListNodesRequest(), timeout=2).nodes,
            what="the catalog to be restored",
        )
        assert [n.spec.node_id for n in nodes] == ["saw-1"]
        status = solo.stub(0).ClusterStatus(pb.ClusterStatusRequest(), timeout=2)
        assert status.flow_version == version
        solo.channel.close()
    finally:
        _stop(proc)


@pytest.mark.parametrize("bad", [["--raft", "nohost"], ["--grpc", "x:y"]])
def test_bad_flags_exit_non_zero(tmp_path: Path, bad: list[str]):
    args = ["--id", "x", "--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:0"]
    args += ["--data-dir", str(tmp_path)]
    args[args.index(bad[0]) + 1] = bad[1]
    result = subprocess.run(
        [sys.executable, "-m", "fos_raft.cli.coordinator", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "HOST:PORT" in result.stderr


def test_free_port_never_hands_out_a_port_twice():
    # a cluster picks all its ports before any replica binds; 2,000 picks from the ~17,000
    # ports below the ephemeral range would coincide almost surely without the bookkeeping
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
