"""Bind and advertise apart, with real processes: an agent or a replica never announces a
wildcard, nor loopback to a cluster on other hosts; an advertised HOST:PORT is what the
coordinator records (Register) and what it sends clients to (ClusterStatus leader_grpc)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_util import Procs, agent_command, wait_until
from coord_util import running_cluster

from fos_agent import AdvertiseError, Agent, ItemReq
from fos_raft.api.client import CoordinatorClient
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.runtime.advertise import is_loopback

REMOTE = "10.255.0.1:7000"  # never dialled: the checks come before any connection


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _agent(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return _run([*agent_command(), "--node-id", "adv", "--data-dir", str(data),
                 "--produces", "w:1", *args])


def _one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    # the coordinator also logs the refusal (a JSON log line); the message is one line
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("{")]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_agent_refuses_loopback_or_wildcard_to_remote_coordinators(tmp_path: Path) -> None:
    started = time.monotonic()
    _one_line(_agent("--listen", "127.0.0.1:0", "--coordinators", REMOTE, data=tmp_path),
              "--listen '127.0.0.1:0' is loopback", "--advertise")
    _one_line(_agent("--listen", "0.0.0.0:7100", "--advertise", "0.0.0.0:7100",
                     "--coordinators", "127.0.0.1:1", data=tmp_path),
              "--advertise '0.0.0.0:7100' is a wildcard")
    _one_line(_agent("--listen", "0.0.0.0:7100", "--advertise", "127.0.0.1:7100",
                     "--coordinators", f"{REMOTE},coord-b:7000", data=tmp_path),
              "--advertise '127.0.0.1:7100' is loopback")
    if is_loopback(socket.gethostbyname(socket.gethostname())):
        _one_line(_agent("--listen", "0.0.0.0:7100", "--coordinators", REMOTE, data=tmp_path),
                  "binds a wildcard", "set --advertise HOST[:PORT]")
    # refused at once: nothing waited for the unreachable coordinators
    assert time.monotonic() - started < 30
    assert not (tmp_path / "wal").exists()
    with pytest.raises(AdvertiseError, match="loopback") as caught:
        Agent("adv", ItemReq("w", 1), listen="0.0.0.0:0", advertise="127.0.0.1",
              coordinators=[REMOTE], data_dir=tmp_path)
    assert isinstance(caught.value, ValueError)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(1, tmp_path_factory.mktemp("advertise-coord")) as c:
        yield c


def _catalog_address(cluster: LocalCluster, node: str) -> str:
    async def read() -> str:
        async with CoordinatorClient(cluster.grpc_addresses) as client:
            reply = await client.list_nodes()
        return next((n.spec.address for n in reply.nodes if n.spec.node_id == node), "")
    return asyncio.run(read())


def test_agent_registers_the_advertised_host_and_port(cluster: LocalCluster, tmp_path: Path
                                                      ) -> None:
    procs = Procs(tmp_path)
    try:
        bound, mapped = free_port(), free_port()
        coords = ",".join(cluster.grpc_addresses)
        procs.start("nat", [*agent_command(), "--node-id", "adv-nat", "--listen",
                            f"0.0.0.0:{bound}", "--advertise", f"127.0.0.1:{mapped}",
                            "--coordinators", coords, "--data-dir", str(tmp_path / "nat"),
                            "--produces", "advw:1", "--ready-file", str(tmp_path / "nat.ready")])
        # a wildcard listen with loopback coordinators (one machine): loopback, bound port
        procs.start("wild", [*agent_command(), "--node-id", "adv-wild", "--listen",
                             f"0.0.0.0:{free_port()}",
                             "--coordinators", coords, "--data-dir", str(tmp_path / "wild"),
                             "--produces", "advx:1", "--ready-file",
                             str(tmp_path / "wild.ready")])
        for name in ("nat", "wild"):
            wait_until((tmp_path / f"{name}.ready").exists, timeout=60, what=f"{name} ready")
        assert (tmp_path / "nat.ready").read_text().strip() == f"127.0.0.1:{mapped}"
        assert wait_until(lambda: _catalog_address(cluster, "adv-nat"),
                          what="adv-nat registered") == f"127.0.0.1:{mapped}"
        # it serves on the bound port, whatever it announces
        with socket.create_connection(("127.0.0.1", bound), timeout=5):
            pass
        wild = (tmp_path / "wild.ready").read_text().strip()
        assert wild.startswith("127.0.0.1:") and not wild.endswith(":0")
        assert wait_until(lambda: _catalog_address(cluster, "adv-wild"),
                          what="adv-wild registered") == wild
        assert procs.terminate("nat") == 0 and procs.terminate("wild") == 0
    finally:
        procs.stop_all()


def _coordinator(tmp_path: Path, *args: str, raft: str | None = None
                 ) -> list[str]:
    raft = raft or f"127.0.0.1:{free_port()}"
    return [sys.executable, "-m", "fos_raft.cli.coordinator", "--id", "r0", "--raft", raft,
            "--peers", raft, "--data-dir", str(tmp_path / "coord"), *args]


def test_coordinator_refuses_a_wildcard_grpc_without_advertise(tmp_path: Path) -> None:
    _one_line(_run(_coordinator(tmp_path, "--grpc", "0.0.0.0:0"), timeout=30),
              "--grpc '0.0.0.0:0' binds a wildcard", "--advertise-grpc")
    _one_line(_run(_coordinator(tmp_path, "--grpc", "127.0.0.1:0", "--insecure-raft",
                                raft="10.255.0.1:7001"), timeout=30),
              "--grpc '127.0.0.1:0' is loopback", "--advertise-grpc")
    _one_line(_run(_coordinator(tmp_path, "--grpc", "0.0.0.0:0", "--advertise-grpc",
                                "0.0.0.0:7050"), timeout=30), "is a wildcard")


def test_coordinator_announces_the_advertised_grpc_address(tmp_path: Path) -> None:
    bound = free_port()
    advertised = "coord-a.example:7050"  # NAT / DNS name: announced, never dialled here
    procs = Procs(tmp_path)
    try:
        proc = procs.start("coord", _coordinator(tmp_path, "--grpc", f"0.0.0.0:{bound}",
                                                 "--advertise-grpc", advertised))
        log = tmp_path / "coord.log"
        ready = wait_until(lambda: next((json.loads(line) for line in log.read_text()
                                         .splitlines() if '"event": "ready"' in line), None),
                           timeout=60, what="coordinator ready")
        assert proc.poll() is None
        assert ready["grpc"] == advertised
        assert (tmp_path / "coord" / "grpc.addr").read_text().strip() == advertised

        async def status() -> tuple[str, str]:
            async with CoordinatorClient([f"127.0.0.1:{bound}"], timeout=5) as client:
                reply = await client.cluster_status()
            return reply.leader_grpc, reply.grpc_address

        leader_grpc = wait_until(lambda: asyncio.run(status())[0], timeout=60,
                                 what="leader_grpc announced")
        assert leader_grpc == advertised
        assert asyncio.run(status())[1] == advertised
        assert procs.terminate("coord") == 0
    finally:
        procs.stop_all()


def test_coordinator_refuses_a_wildcard_raft_name(tmp_path: Path) -> None:
    port = free_port()
    _one_line(_run([sys.executable, "-m", "fos_raft.cli.coordinator", "--id", "r0", "--raft",
                    f"0.0.0.0:{port}", "--grpc", "127.0.0.1:0", "--insecure-raft",
                    "--data-dir", str(tmp_path / "coord")], timeout=30),
              f"Raft name '0.0.0.0:{port}' is not an address peers can dial",
              "--advertise-raft")


def test_coordinator_binds_raft_on_a_wildcard_and_is_known_by_its_advertised_name(
        tmp_path: Path) -> None:
    port = free_port()
    name = f"127.0.0.1:{port}"
    procs = Procs(tmp_path)
    try:
        proc = procs.start("coord", [
            sys.executable, "-m", "fos_raft.cli.coordinator", "--id", "r0",
            "--raft", f"0.0.0.0:{port}", "--advertise-raft", name, "--peers", name,
            "--insecure-raft", "--grpc", "127.0.0.1:0", "--data-dir", str(tmp_path / "coord")])
        log = tmp_path / "coord.log"
        ready = wait_until(lambda: next((json.loads(line) for line in log.read_text()
                                         .splitlines() if '"event": "ready"' in line), None),
                           timeout=60, what="coordinator ready")
        assert proc.poll() is None

        async def leader() -> str:
            async with CoordinatorClient([ready["grpc"]], timeout=5) as client:
                return (await client.cluster_status()).leader

        # the single member elects itself under its name, bound on the wildcard
        assert wait_until(lambda: asyncio.run(leader()), timeout=60, what="a leader") == name
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the wildcard bind answers on loopback too
        assert procs.terminate("coord") == 0
    finally:
        procs.stop_all()
