"""The Raft port refuses what is not a member's Raft traffic (fos_raft.replica.wire).

A real 3-replica cluster (LocalCluster defaults: plaintext Raft) and raw sockets that speak
pysyncobj's framing (struct 'i' length + zlib(pickle)): a pickle that would run a command,
a utility ``remove``, an oversize length prefix. Each is dropped, counted in
``fos_raft_rejected_frames_total`` (scraped from the replica's metrics endpoint), and the
cluster keeps its leader. The restricted unpickler is also tested on its own.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coord_util import wait_until
from prometheus_client.parser import text_string_to_metric_families

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.model import ErrorCode, ItemReq, NodeSpec, Plan
from fos_raft.replica import wire
from fos_raft.state.commands import Outcome, Register
from fos_raft.state.core import CoordinatorState


def _frame(message: Any) -> bytes:
    data = zlib.compress(pickle.dumps(message, 2), 3)
    return struct.pack("i", len(data)) + data


class _Touch:
    """Unpickling this runs ``touch PATH``: what an attacker's frame would carry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


# ---------------------------------------------------------------------------- unit


def test_restricted_unpickler_round_trips_messages_and_refuses_other_globals() -> None:
    from pysyncobj.node import TCPNode

    spec = NodeSpec("saw-1", "127.0.0.1:1", ItemReq("wood", 3), (ItemReq("log", 1),), 2)
    allowed = [
        {"type": "append_entries", "term": 3, "commit_index": 2, "prevLogIdx": 1,
         "prevLogTerm": 1, "entries": [(b"\x01" + pickle.dumps(["add", "a:1"], 2), 2, 3)]},
        {"type": "next_node_idx", "next_node_idx": 4, "reset": False, "success": True},
        {"type": "append_entries", "serialized": (b"chunk", True, False), "term": 1,
         "commit_index": 0},
        ("execute", ("request-id", Register(spec)), {}),
        Outcome(4, True, ErrorCode.NOT_FOUND, "gone"),
        ["add", "127.0.0.1:9", TCPNode("127.0.0.1:9")],
        {TCPNode("127.0.0.1:9")}, frozenset({"x"}), Plan(), b"", "127.0.0.1:9",
    ]
    for message in allowed:
        assert wire.restricted_loads(pickle.dumps(message, 2)) == message
    state = wire.restricted_loads(pickle.dumps(CoordinatorState(version=7), 2))
    assert isinstance(state, CoordinatorState) and state.version == 7
    with pytest.raises(wire.DisallowedType, match=r"(posix|os)\.system"):
        wire.restricted_loads(pickle.dumps(_Touch(Path("/nonexistent/never")), 2))
    with pytest.raises(wire.DisallowedType):
        wire.restricted_loads(pickle.dumps(io.BytesIO(b""), 2))
    # protocol 2 bytes go through _codecs.encode: only latin1 text is accepted there
    evil = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(wire.DisallowedType):
        wire.restricted_loads(evil)


def test_install_makes_pysyncobj_decode_entries_and_snapshots_restricted() -> None:
    import pysyncobj.serializer
    import pysyncobj.syncobj

    wire.install()
    wire.install()  # idempotent
    for module in (pysyncobj.syncobj, pysyncobj.serializer):
        with pytest.raises(wire.DisallowedType):
            module.pickle.loads(pickle.dumps(_Touch(Path("/nonexistent/never")), 2))
        assert module.pickle.loads(module.pickle.dumps({"a": [1, b"x"]})) == {"a": [1, b"x"]}


def test_frames_are_authenticated_before_anything_decodes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pysyncobj.encryptor import getEncryptor
    from pysyncobj.poller import createPoller

    conn = wire.WireConnection.adopt(wire.TcpConnection(createPoller("auto")), None, 1 << 20)
    conn.encryptor = getEncryptor("right")
    forged = getEncryptor("wrong").encrypt(zlib.compress(pickle.dumps(_Touch(Path("/x")), 2)))
    decoded: list[bytes] = []
    monkeypatch.setattr(wire, "restricted_loads", lambda data: decoded.append(data))
    with pytest.raises(wire.FrameRejected) as info:
        conn._decode(forged)
    assert info.value.reason == "bad_auth" and not decoded
    good = conn.encryptor.encrypt(zlib.compress(pickle.dumps("127.0.0.1:1", 2)))
    conn._decode(good)
    assert len(decoded) == 1  # the authentic frame does reach the (restricted) decoder
    bomb = zlib.compress(b"\0" * (2 << 20))  # inflates past the connection's bound
    conn.encryptor = None
    with pytest.raises(wire.FrameRejected) as info:
        conn._decode(bomb)
    assert info.value.reason == "oversize"


# ---------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(3, tmp_path_factory.mktemp("wire"))
    metrics = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    for i in range(3):
        c.replica_flags[i] = ["--metrics", metrics[i]]
    c.metrics_addresses = metrics  # type: ignore[attr-defined]
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.stop()


def _rejected(cluster: LocalCluster, i: int) -> dict[str, float]:
    url = f"http://{cluster.metrics_addresses[i]}/metrics"  # type: ignore[attr-defined]
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fos_raft_rejected_frames":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["reason"]] = sample.value
    return out


def _raft_socket(cluster: LocalCluster, i: int) -> socket.socket:
    host, port = cluster.raft_addresses[i].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the replica closed the connection (EOF or reset) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def _leader_and_term(cluster: LocalCluster) -> tuple[int, int]:
    leader = cluster.wait_for_leader(timeout=20)
    return leader, cluster.status(leader).term


def test_pickle_payload_frame_runs_nothing_and_is_counted(cluster: LocalCluster,
                                                         tmp_path: Path) -> None:
    leader, term = _leader_and_term(cluster)
    marker = tmp_path / "MARKER"
    target = next(i for i in range(3) if i != leader)
    before = _rejected(cluster, target).get("disallowed_type", 0)
    with _raft_socket(cluster, target) as sock:
        sock.sendall(_frame(_Touch(marker)))
        assert _closed_by_peer(sock, 10), "the replica kept the connection open"
    assert not marker.exists(), "the replica unpickled the payload and ran its command"
    wait_until(lambda: _rejected(cluster, target).get("disallowed_type", 0) > before, 10,
               "the rejected frame to be counted")
    assert _leader_and_term(cluster) == (leader, term)
    assert cluster.wait_converged()


def test_utility_remove_from_the_network_is_refused(cluster: LocalCluster) -> None:
    leader, term = _leader_and_term(cluster)
    target = next(i for i in range(3) if i != leader)
    victim = next(i for i in range(3) if i not in (leader, target))
    members_before = sorted(
        r.raft_address
        for r in cluster.stub(target).ListMembers(pb.ClusterStatusRequest(), timeout=5).replicas
    )
    before = _rejected(cluster, target).get("utility_refused", 0)
    with _raft_socket(cluster, target) as sock:
        sock.sendall(_frame(["remove", cluster.raft_addresses[victim]]))
        # Unguarded, pysyncobj answers once the removal committed ("SUCCESS remove ...").
        assert _closed_by_peer(sock, 10), "the replica answered a utility command"
    wait_until(lambda: _rejected(cluster, target).get("utility_refused", 0) > before, 10,
               "the refused utility command to be counted")
    for i in range(3):
        reply = cluster.stub(i).ListMembers(pb.ClusterStatusRequest(), timeout=5)
        assert sorted(r.raft_address for r in reply.replicas) == members_before
    assert cluster.raft_addresses[victim] in members_before
    assert _leader_and_term(cluster) == (leader, term)


def test_oversize_length_prefix_is_dropped_at_once_and_the_leader_stays(
    cluster: LocalCluster,
) -> None:
    leader, term = _leader_and_term(cluster)
    before = _rejected(cluster, leader).get("oversize", 0)
    junk = os.urandom(1 << 16)
    started = time.monotonic()
    closed = False
    with _raft_socket(cluster, leader) as sock:
        try:
            sock.sendall(struct.pack("i", 2**31 - 1))
            # Unguarded, the replica buffers all of this (copying the buffer on every read)
            # and never closes: keep sending for up to 10 s.
            while time.monotonic() - started < 10:
                sock.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        closed = closed or _closed_by_peer(sock, 2)
    elapsed = time.monotonic() - started
    assert closed and elapsed < 5, f"connection still open after {elapsed:.1f}s of junk"
    wait_until(lambda: _rejected(cluster, leader).get("oversize", 0) > before, 10,
               "the oversize frame to be counted")
    assert _leader_and_term(cluster) == (leader, term)
    t0 = time.monotonic()
    assert cluster.status(leader, timeout=2).leader == cluster.raft_addresses[leader]
    assert time.monotonic() - t0 < 2


def test_readonly_peer_is_refused(cluster: LocalCluster) -> None:
    leader, _ = _leader_and_term(cluster)
    before = _rejected(cluster, leader).get("readonly_refused", 0)
    with _raft_socket(cluster, leader) as sock:
        sock.sendall(_frame("readonly"))
        assert _closed_by_peer(sock, 10)
    wait_until(lambda: _rejected(cluster, leader).get("readonly_refused", 0) > before, 10,
               "the readonly peer to be counted")


# ---------------------------------------------------------------------- with a password


def test_with_a_password_nothing_is_decoded_before_auth_and_join_still_works(
    tmp_path: Path,
) -> None:
    (tmp_path / "raft.pw").write_text("correct horse battery staple\n")
    (tmp_path / "raft.pw").chmod(0o600)
    c = LocalCluster(3, tmp_path / "coord", raft_password_file=tmp_path / "raft.pw")
    metrics = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    for i in range(3):
        c.replica_flags[i] = ["--metrics", metrics[i]]
    c.metrics_addresses = metrics  # type: ignore[attr-defined]
    marker = tmp_path / "MARKER"
    try:
        c.start()
        leader, term = _leader_and_term(c)
        target = next(i for i in range(3) if i != leader)
        before = _rejected(c, target).get("bad_auth", 0)
        for message in (_Touch(marker), ["remove", c.raft_addresses[leader]]):
            with _raft_socket(c, target) as sock:  # unencrypted: not a Fernet token
                sock.sendall(_frame(message))
                assert _closed_by_peer(sock, 10)
        assert not marker.exists()
        wait_until(lambda: _rejected(c, target).get("bad_auth", 0) >= before + 2, 10,
                   "both unauthenticated frames to be counted as bad_auth")
        assert _leader_and_term(c) == (leader, term)
        # --join asks over the authenticated channel: it still adds the replica by itself
        new = c.add_replica()
        raft_new = c.raft_addresses[new]
        wait_until(
            lambda: raft_new in {
                r.raft_address
                for r in c.stub(leader).ListMembers(pb.ClusterStatusRequest(), timeout=5).replicas
            },
            30, "the joining replica to be a member",
        )
        c.wait_converged(timeout=30)
    finally:
        c.stop()
