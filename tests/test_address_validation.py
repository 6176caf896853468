"""Addresses are HOST:PORT with a hostname, IPv4 or bracketed IPv6 host (fos_raft.model
.check_address), everywhere the replicated state takes one; and a record that holds a bad
one anyway (an old journal, a snapshot) reaches fosctl and the dashboard escaped.

Pure tests of the grammar and the state machine, then real replica processes: a Register
carrying terminal escapes is refused, and a cluster restored from a snapshot holding such
a record shows it through a real `fosctl nodes` and a real fos-dashboard."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import grpc
import pytest
from coord_util import retry_unavailable, wait_until
from hypothesis import given
from hypothesis import strategies as st
from ops_util import fosctl, http_get

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.catalog_file import CatalogFileError, parse_catalog
from fos_raft.cli.launcher import LocalCluster
from fos_raft.model import ErrorCode, ItemReq, ModelError, NodeSpec, NodeStatus, check_address
from fos_raft.state.commands import AnnounceReplica, ForgetReplica, MarkUp, Register, UpdateSpec
from fos_raft.state.core import CoordinatorState, NodeEntry, apply
from fos_raft.state.snapshot import encode
from fos_raft.textsafe import escape, is_clean

EVIL = "\x1b]0;owned\x07\x1b[2J"

label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True)
hostnames = st.lists(label, min_size=1, max_size=4).map(".".join).filter(
    lambda h: len(h) <= 253 and not h.replace(".", "").isdigit())
ports = st.integers(1, 65535)


@given(hostnames, ports)
def test_hostnames_are_accepted(host: str, port: int) -> None:
    check_address("address", f"{host}:{port}")


@given(st.ip_addresses(v=4), ports)
def test_ipv4_addresses_are_accepted(ip: object, port: int) -> None:
    check_address("address", f"{ip}:{port}")


@given(st.ip_addresses(v=6), ports)
def test_bracketed_ipv6_addresses_are_accepted(ip: object, port: int) -> None:
    check_address("address", f"[{ip}]:{port}")


BAD = [
    "", ":7000", "host", "host:", "host:-1", "host:+1", "host:65536", "host:0", "host:7 ",
    "host:\u0661", "a b:7000", "host\n:7000", "host:7000\n", "<script>:7000",
    f"{EVIL}:7000", f"h{EVIL}:7000", "-a:1", "a-:1", "a..b:1", "a_b:1", "a.:1",
    "x" * 64 + ":1", ".".join(["a" * 63] * 4) + ":1", "1.2.3:1", "256.0.0.1:1",
    "01.2.3.4:1", "::1:7000", "[::1]", "[zz]:1", "[::1:7000", "[fe80::1%eth0]:1",
    "h\u202e:1", "h\x9b:1", "ex\u00e4mple:1",
]


@pytest.mark.parametrize("address", BAD)
def test_malformed_addresses_are_refused_with_a_reason(address: str) -> None:
    with pytest.raises(ModelError) as info:
        check_address("gRPC address", address)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert "is not host:port: " in info.value.message
    assert is_clean(info.value.message)  # repr: the message itself carries no escape


@given(hostnames, ports, st.sampled_from(list(" \n\t\x1b\x07\x00\x7f\x9b\u202e<>\"';/%")))
def test_any_unsafe_character_in_the_host_is_refused(host: str, port: int, bad: str) -> None:
    cut = len(host) // 2
    with pytest.raises(ModelError):
        check_address("address", f"{host[:cut]}{bad}{host[cut:]}:{port}")


def test_port_zero_is_for_binding_only() -> None:
    check_address("--grpc", "127.0.0.1:0", allow_port_zero=True)
    with pytest.raises(ModelError, match="port 0 cannot be dialled"):
        check_address("address", "127.0.0.1:0")


# ---------------------------------------------------------------- the state machine

GOOD = NodeSpec("stage-1", "127.0.0.1:7201", ItemReq("wood", 1))


def test_apply_refuses_bad_addresses_deterministically() -> None:
    """An old client that skips every check still cannot get one into the state."""
    state, _ = apply(CoordinatorState(), "r1", Register(GOOD))
    digest = state.digest
    bad = f"{EVIL}:7000"
    for command in (Register(NodeSpec("stage-2", bad, ItemReq("wood", 1))),
                    UpdateSpec(NodeSpec("stage-1", bad, ItemReq("wood", 1))),
                    MarkUp("stage-1", bad), AnnounceReplica("127.0.0.1:7001", bad),
                    AnnounceReplica(bad, "127.0.0.1:7000"), ForgetReplica(bad)):
        after, outcome = apply(state, "", command)
        assert outcome.error is ErrorCode.INVALID_ARGUMENT, command
        assert "is not host:port" in outcome.message
        assert after is state and after.digest == digest


def test_a_catalog_file_with_a_bad_address_is_refused() -> None:
    text = '[[node]]\nid = "a"\naddress = "a\\u001b[2J:1"\nproduces = { item = "w", qty = 1 }\n'
    with pytest.raises(CatalogFileError, match="not host:port"):
        parse_catalog(text, "f.toml")


# ---------------------------------------------------------------- real replicas


def test_register_with_terminal_escapes_is_refused_and_nothing_is_registered(
        tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path / "c") as cluster:
        cluster.wait_ready()
        spec = pb.NodeSpec(node_id="evil", address=f"{EVIL}:7000",
                           produces=pb.ItemReq(item="wood", qty=1))
        with pytest.raises(grpc.RpcError) as info:
            retry_unavailable(lambda: cluster.stub(1).Register(
                pb.RegisterRequest(spec=spec), timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not host:port" in (info.value.details() or "")
        reply = retry_unavailable(lambda: cluster.stub(0).ListNodes(
            pb.ListNodesRequest(), timeout=5))
        assert list(reply.nodes) == [] and reply.flow_version == 0


def old_bad_snapshot(path: Path) -> None:
    """A state holding what validation now refuses, built directly (as an old journal or
    a hand-edited backup would hold it)."""
    spec = NodeSpec("stage-1", f"{EVIL}<script>alert(1)</script>:7000", ItemReq("wood", 1))
    entry = NodeEntry(spec, NodeStatus(alive=False, down_reason="\u202edrowssap " + EVIL),
                      1, 1)
    path.write_bytes(encode(CoordinatorState(version=1, nodes={"stage-1": entry})))


def on_a_terminal(cmd: list[str], timeout: float = 60.0) -> bytes:
    """Run ``cmd`` with stdout on a pseudo-terminal (fosctl draws rich tables there)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    proc = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        os.close(master)
    return b"".join(chunks)


def assert_no_raw_control(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, repr(text)


def test_an_old_bad_record_is_shown_escaped_by_fosctl_and_the_dashboard(
        tmp_path: Path) -> None:
    backup = tmp_path / "old.fos"
    old_bad_snapshot(backup)
    cluster = LocalCluster(3, tmp_path / "restored")
    cluster.replica_flags[0] = ["--restore", str(backup)]
    dashboard = None
    with cluster:
        cluster.wait_ready()
        wait_until(lambda: retry_unavailable(lambda: cluster.stub(1).ListNodes(
            pb.ListNodesRequest(), timeout=5)).nodes, 30, "the restored node")
        shown = escape(f"{EVIL}<script>alert(1)</script>:7000")

        plain = fosctl(cluster, "nodes")
        assert plain.returncode == 0, plain.stderr
        assert_no_raw_control(plain.stdout)
        assert shown in plain.stdout and escape("\u202edrowssap") in plain.stdout

        addresses = ",".join(cluster.grpc_addresses)
        tty = on_a_terminal([sys.executable, "-m", "fos_raft.cli.fosctl", "--coordinators",
                             addresses, "--timeout", "5", "nodes"]).decode()
        # rich draws with its own styling escapes; none of the record's own may remain
        assert "owned" in tty and "]0;owned" in tty
        assert "\x1b]0;" not in tty and "\x07" not in tty and "\x1b[2J" not in tty
        assert "\u202e" not in tty

        toml = fosctl(cluster, "nodes", "--toml")
        assert toml.returncode == 0, toml.stderr
        assert_no_raw_control(toml.stdout)
        # still TOML, the same values (a catalog file would refuse the address, rightly)
        assert tomllib.loads(toml.stdout)["node"][0]["address"].startswith(EVIL)

        as_json = fosctl(cluster, "--json", "nodes")
        assert as_json.returncode == 0 and as_json.stdout.isascii()
        assert json.loads(as_json.stdout)["nodes"][0]["address"].startswith(EVIL)

        dot = fosctl(cluster, "flow", "--format", "dot")
        assert dot.returncode == 0, dot.stderr
        assert_no_raw_control(dot.stdout)

        ready = tmp_path / "dashboard.url"
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "fos_dashboard.cli", "--coordinators", addresses,
             "--listen", "127.0.0.1:0", "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            url = wait_until(lambda: ready.exists() and ready.read_text().strip(), 30,
                             "the dashboard's URL")

            def served() -> str:
                status, body = http_get(url.rstrip("/") + "/api/state")
                return body if status == 200 and "stage-1" in body else ""

            body = wait_until(served, 30, "the restored node on the dashboard")
            assert body.isascii() and is_clean(body)
            assert "<script" not in body.lower()
            node = json.loads(body)["nodes"][0]
            assert node["address"] == shown  # decoded: escaped text, <script> for esc()
        finally:
            dashboard.terminate()
            try:
                dashboard.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dashboard.kill()
                dashboard.wait()
            if dashboard.stderr:
                dashboard.stderr.close()
