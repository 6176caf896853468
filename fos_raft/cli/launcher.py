"""Start a local coordinator cluster of real ``fos-coordinator`` processes on loopback.

Used by tests, benchmarks, the other helpers' tests and the experiment harness::

    with LocalCluster(3, tmp_path) as cluster:
        leader = cluster.wait_for_leader()
        stub = cluster.stub(leader)
        cluster.kill(leader)          # SIGKILL by PID
        cluster.restart(leader)

Every replica gets fixed free ports (Raft and gRPC) chosen at construction, so addresses stay
valid across restarts; data dirs are ``base_dir/rI``; stdout/stderr go to
``base_dir/rI.out`` / ``base_dir/rI.err`` (appended across restarts). Processes are only ever
signalled by their own PID.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.security.tls import TlsConfig, sync_channel

HOST = "127.0.0.1"


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago, chosen *below* the kernel's ephemeral range.

    Ports from bind(0) come from the ephemeral range, which the kernel also hands out as the
    local port of outgoing connections: on a busy machine one of those can take the port
    between our probe and the replica's bind. Below the range only another listener can.
    A port is never handed out twice by one process: a cluster picks all its ports before
    any replica binds, so the probe alone would not stop two picks from coinciding.
    """
    floor = _ephemeral_floor()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(15000, max(15001, floor))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _timing_flags(overrides: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, value in sorted(overrides.items()):
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


class LocalCluster:
    """N replicas as separate processes; ``timing_overrides`` become CLI flags
    (``raft_min_timeout=0.3`` -> ``--raft-min-timeout 0.3``; also probe_* and others).
    ``tls``: every replica serves with this certificate (it must carry the coordinator
    name) and the launcher's own channels use it too; ``replica_flags[i]`` are appended to
    replica i's command line only (later flags win)."""

    def __init__(self, n: int, base_dir: Path, *, tls: TlsConfig | None = None,
                 **timing_overrides: Any) -> None:
        self.n = n
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.extra_flags = _timing_flags(timing_overrides)
        if tls is not None:
            self.extra_flags += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
                                 "--tls-ca", str(tls.ca),
                                 "--tls-coordinator-name", tls.coordinator_name]
        self.replica_flags: dict[int, list[str]] = {}
        # Set (before start) to bind replica i's Raft at raft_bind_addresses[i] while peers
        # still dial raft_addresses[i]: a fault-injecting proxy forwards (tests/faultproxy.py).
        self.raft_bind_addresses: list[str] | None = None
        self.raft_addresses = [f"{HOST}:{free_port()}" for _ in range(n)]
        self.grpc_addresses: list[str] = [f"{HOST}:{free_port()}" for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self._channels: dict[int, grpc.Channel] = {}

    # ------------------------------------------------------------------ processes

    def data_dir(self, i: int) -> Path:
        return self.base_dir / f"r{i}"

    def command(self, i: int, join: bool = False) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "fos_raft.cli.coordinator",
            "--id",
            f"r{i}",
            "--raft",
            self.raft_addresses[i],
            "--peers",
            ",".join(self.raft_addresses),
            "--grpc",
            self.grpc_addresses[i],
            "--data-dir",
            str(self.data_dir(i)),
            *self.extra_flags,
            *self.replica_flags.get(i, []),
        ]
        if self.raft_bind_addresses is not None:
            cmd += ["--raft-bind", self.raft_bind_addresses[i]]
        return [*cmd, "--join"] if join else cmd

    def start(self) -> None:
        """Start every replica that is not running; returns once each serves gRPC."""
        for i in range(self.n):
            if not self.is_running(i):
                self._spawn(i)
        for i in range(self.n):
            self._wait_serving(i)

    def _spawn(self, i: int, join: bool = False) -> None:
        addr_file = self.data_dir(i) / "grpc.addr"
        if addr_file.exists():
            addr_file.unlink()
        out = open(self.base_dir / f"r{i}.out", "ab")  # noqa: SIM115 - owned by the child
        err = open(self.base_dir / f"r{i}.err", "ab")  # noqa: SIM115
        try:
            # own session: a terminal's Ctrl-C reaches only the caller, which stops the
            # replicas in order (fos-sim's first Ctrl-C must leave the cluster running)
            self.procs[i] = subprocess.Popen(
                self.command(i, join), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()
            err.close()

    def _wait_serving(self, i: int, timeout: float = 30.0) -> None:
        addr_file = self.data_dir(i) / "grpc.addr"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"replica r{i} exited: {self.stderr_tail(i)}")
            if addr_file.exists():
                return
            time.sleep(0.02)
        raise TimeoutError(f"replica r{i} did not start within {timeout}s")

    def add_replica(self) -> int:
        """Start one more replica with ``--join`` (it asks the members to add it); returns its
        index. Existing replicas keep their command line: membership lives in the log."""
        self.raft_addresses.append(f"{HOST}:{free_port()}")
        self.grpc_addresses.append(f"{HOST}:{free_port()}")
        self.procs.append(None)
        self.n += 1
        index = self.n - 1
        self._spawn(index, join=True)
        self._wait_serving(index)
        return index

    def is_running(self, i: int) -> bool:
        proc = self.procs[i]
        return proc is not None and proc.poll() is None

    def pid(self, i: int) -> int | None:
        proc = self.procs[i]
        return proc.pid if proc is not None else None

    def kill(self, i: int) -> None:
        """SIGKILL replica i (by its PID) and reap it."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self._drop_channel(i)

    def terminate(self, i: int, timeout: float = 15.0) -> int | None:
        """SIGTERM replica i and wait (SIGKILL after ``timeout``); returns its exit code."""
        proc = self.procs[i]
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._drop_channel(i)
        return proc.returncode

    def restart(self, i: int, join: bool = False) -> None:
        """(Re)start replica i with the same addresses and data dir."""
        if self.is_running(i):
            self.terminate(i)
        self._spawn(i, join)
        self._wait_serving(i)

    def stop(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL), by PID; idempotent."""
        procs = [(i, p) for i, p in enumerate(self.procs) if p is not None and p.poll() is None]
        for _, proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        for _, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for i in list(self._channels):
            self._drop_channel(i)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stderr_tail(self, i: int, lines: int = 20) -> str:
        path = self.base_dir / f"r{i}.err"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ gRPC

    def channel(self, i: int) -> grpc.Channel:
        if i not in self._channels:
            self._channels[i] = sync_channel(self.grpc_addresses[i], self.tls)
        return self._channels[i]

    def _drop_channel(self, i: int) -> None:
        channel = self._channels.pop(i, None)
        if channel is not None:
            channel.close()

    def stub(self, i: int) -> pb_grpc.CoordinatorStub:
        return pb_grpc.CoordinatorStub(self.channel(i))

    def status(self, i: int, timeout: float = 2.0) -> pb.ClusterStatusReply:
        return self.stub(i).ClusterStatus(pb.ClusterStatusRequest(), timeout=timeout)

    def running(self) -> list[int]:
        return [i for i in range(self.n) if self.is_running(i)]

    def leader_index(self) -> int | None:
        """Index of the replica a majority of the running ones name as leader, or None."""
        votes: dict[str, int] = {}
        for i in self.running():
            try:
                leader = self.status(i, timeout=1.0).leader
            except grpc.RpcError:
                continue
            if leader:
                votes[leader] = votes.get(leader, 0) + 1
        for leader, count in votes.items():
            if count > self.n // 2 and leader in self.raft_addresses:
                index = self.raft_addresses.index(leader)
                return index if self.is_running(index) else None
        return None

    def wait_for_leader(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            index = self.leader_index()
            if index is not None:
                return index
            time.sleep(0.05)
        raise TimeoutError(f"no leader within {timeout}s")

    def wait_ready(self, timeout: float = 20.0) -> int:
        """Wait for a leader and for every running replica's gRPC address to be known to the
        cluster (ClusterStatus.replicas / leader_grpc filled); returns the leader index."""
        deadline = time.monotonic() + timeout
        leader = self.wait_for_leader(timeout)
        wanted = {self.raft_addresses[i]: self.grpc_addresses[i] for i in self.running()}
        while time.monotonic() < deadline:
            try:
                known = {r.raft_address: r.grpc_address for r in self.status(leader).replicas}
            except grpc.RpcError:
                known = {}
            if all(known.get(k) == v for k, v in wanted.items()):
                return self.wait_for_leader(max(0.1, deadline - time.monotonic()))
            time.sleep(0.05)
        raise TimeoutError(f"replica addresses not announced within {timeout}s")

    def digests(self, indices: Sequence[int] | None = None) -> dict[int, tuple[int, str]]:
        """{index: (flow version, state digest)} of the given (default: running) replicas."""
        out = {}
        for i in self.running() if indices is None else indices:
            reply = self.status(i)
            out[i] = (reply.flow_version, reply.state_digest)
        return out

    def wait_converged(self, indices: Sequence[int] | None = None, timeout: float = 15.0) -> str:
        """Wait until the replicas report one digest (and one applied index); return it."""
        deadline = time.monotonic() + timeout
        last: dict[int, tuple[int, str]] = {}
        while time.monotonic() < deadline:
            try:
                last = self.digests(indices)
            except grpc.RpcError:
                time.sleep(0.05)
                continue
            if len(set(last.values())) == 1:
                return next(iter(last.values()))[1]
            time.sleep(0.05)
        detail = []
        for i in last:
            try:
                st = self.status(i)
                detail.append(
                    f"r{i}: version {st.flow_version} applied {st.applied_index} "
                    f"commit {st.commit_index} term {st.term} leader {st.leader} "
                    f"digest {st.state_digest[:12]}"
                )
            except grpc.RpcError as exc:
                detail.append(f"r{i}: {exc.code()}")
        raise TimeoutError(f"replicas did not converge within {timeout}s: {'; '.join(detail)}")
