"""A 3-member etcd cluster on loopback and a minimal etcd v3 gRPC client, for bench_peer.

The client sends hand-encoded protobuf bytes through grpc's generic unary calls, so etcd's
.proto files are not needed: only the few fields the benchmark uses (KV.Put key/value,
KV.Range key/range_end/serializable, Maintenance.Status header.member_id/leader).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from fos_raft.cli.launcher import free_port

HOST = "127.0.0.1"


def installed() -> str | None:
    """Path of the etcd binary, or None."""
    return shutil.which("etcd")


# ------------------------------------------------------------------ protobuf by hand


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _bool_field(number: int, value: bool) -> bytes:
    return _varint(number << 3) + _varint(int(value)) if value else b""


def _decode(data: bytes) -> dict[int, list[int | bytes]]:
    """Top-level fields of one message: {number: [varint or bytes, ...]}."""
    out: dict[int, list[int | bytes]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, kind = key >> 3, key & 7
        value: int | bytes
        if kind == 0:
            value = varint()
        elif kind == 2:
            length = varint()
            value, pos = data[pos : pos + length], pos + length
        elif kind == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif kind == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"wire type {kind}")
        out.setdefault(number, []).append(value)
    return out


def put_request(key: str, value: str) -> bytes:
    return _bytes_field(1, key.encode()) + _bytes_field(2, value.encode())


def range_request(prefix: str, serializable: bool) -> bytes:
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    return _bytes_field(1, start) + _bytes_field(2, end) + _bool_field(7, serializable)


class EtcdStub:
    """The three calls of the benchmark on one channel (sync or aio)."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        self.put = channel.unary_unary("/etcdserverpb.KV/Put")
        self.range = channel.unary_unary("/etcdserverpb.KV/Range")
        self.status = channel.unary_unary("/etcdserverpb.Maintenance/Status")


def status_ids(reply: bytes) -> tuple[int, int]:
    """(this member's id, the leader's id) from a StatusResponse."""
    fields = _decode(reply)
    header = _decode(bytes(fields[1][0])) if 1 in fields else {}
    member = int(header.get(2, [0])[0])  # type: ignore[arg-type]
    leader = int(fields.get(4, [0])[0])  # type: ignore[arg-type]
    return member, leader


# ------------------------------------------------------------------ cluster


@dataclass
class EtcdCluster:
    """3 etcd processes; ``tuned``: heartbeat 50 ms / election 250 ms (else etcd defaults)."""

    base_dir: Path
    tuned: bool = True
    n: int = 3
    client_addresses: list[str] = field(default_factory=list)
    peer_addresses: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    _channels: dict[int, grpc.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client_addresses = [f"{HOST}:{free_port()}" for _ in range(self.n)]
        self.peer_addresses = [f"{HOST}:{free_port()}" for _ in range(self.n)]
        self.procs = [None] * self.n

    def _command(self, i: int, state: str) -> list[str]:
        cluster = ",".join(f"e{k}=http://{a}" for k, a in enumerate(self.peer_addresses))
        cmd = [
            str(installed()), "--name", f"e{i}", "--data-dir", str(self.base_dir / f"e{i}"),
            "--listen-client-urls", f"http://{self.client_addresses[i]}",
            "--advertise-client-urls", f"http://{self.client_addresses[i]}",
            "--listen-peer-urls", f"http://{self.peer_addresses[i]}",
            "--initial-advertise-peer-urls", f"http://{self.peer_addresses[i]}",
            "--initial-cluster", cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", "bench", "--log-level", "error",
        ]
        if self.tuned:
            cmd += ["--heartbeat-interval", "50", "--election-timeout", "250"]
        return cmd

    def start(self, i: int | None = None, state: str = "new") -> None:
        for k in range(self.n) if i is None else [i]:
            err = open(self.base_dir / f"e{k}.err", "ab")  # noqa: SIM115 - owned by the child
            try:
                self.procs[k] = subprocess.Popen(
                    self._command(k, state), stdout=subprocess.DEVNULL, stderr=err,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            finally:
                err.close()

    def pid(self, i: int) -> int:
        proc = self.procs[i]
        assert proc is not None
        return proc.pid

    def channel(self, i: int) -> grpc.Channel:
        if i not in self._channels:
            self._channels[i] = grpc.insecure_channel(self.client_addresses[i])
        return self._channels[i]

    def stub(self, i: int) -> EtcdStub:
        return EtcdStub(self.channel(i))

    def leader_index(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids: dict[int, int] = {}
            leaders: set[int] = set()
            for i in range(self.n):
                if self.procs[i] is None or self.procs[i].poll() is not None:  # type: ignore[union-attr]
                    continue
                try:
                    member, leader = status_ids(self.stub(i).status(b"", timeout=1.0))
                except grpc.RpcError:
                    continue
                ids[member] = i
                leaders.add(leader)
            if len(leaders) == 1 and (leader := leaders.pop()) in ids:
                return ids[leader]
            time.sleep(0.05)
        raise TimeoutError("no etcd leader")

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self._drop(i)

    def restart(self, i: int) -> None:
        self.start(i, state="existing")

    def _drop(self, i: int) -> None:
        channel = self._channels.pop(i, None)
        if channel is not None:
            channel.close()

    def stop(self) -> None:
        for i in range(self.n):
            self._drop(i)
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
