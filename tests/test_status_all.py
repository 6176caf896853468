"""Clients prefer replicas that answer, with real replica processes: a killed replica is
reported as refused and a silent one as timed out after the time it took, and neither
takes half of a call's deadline from the replicas that answer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from coord_util import running_cluster

from fos_raft.api.client import CoordinatorClient, CoordinatorUnavailable
from fos_raft.cli.launcher import LocalCluster

FOSCTL = Path(sys.executable).with_name("fosctl")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(3, tmp_path_factory.mktemp("status-all")) as c:
        yield c


@pytest.fixture
def silent() -> Iterator[str]:
    """An address that accepts TCP connections (the kernel's backlog) and never answers:
    a replica behind a black-holing link, or a hung host."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _status_all(addresses: list[str], timeout: float = 5) -> tuple[list[dict], float]:
    started = time.monotonic()
    done = subprocess.run([str(FOSCTL), "--timeout", f"{timeout:g}", "--coordinators",
                           ",".join(addresses), "status", "--all", "--json"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FOS_COORDINATORS": ""})
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["replicas"], elapsed


def test_status_all_says_refused_and_timed_out_as_it_was(cluster: LocalCluster,
                                                         silent: str) -> None:
    cluster.kill(2)
    try:
        dead = cluster.grpc_addresses[2]
        rows, _ = _status_all([*cluster.grpc_addresses, silent], timeout=5)
        by_address = {r["grpc_address"]: r for r in rows}
        assert "error" not in by_address[cluster.grpc_addresses[0]]
        refused = by_address[dead]["error"]
        assert "refused" in refused and "within 5 s" not in refused, refused
        quiet = by_address[silent]["error"]
        assert "timed out after" in quiet and "within 5 s" not in quiet, quiet
        table = subprocess.run([str(FOSCTL), "--timeout", "5", "--coordinators",
                                ",".join([*cluster.grpc_addresses, silent]), "status",
                                "--all"], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "FOS_COORDINATORS": ""})
        assert table.returncode == 0, table.stderr
        line = next(ln for ln in table.stdout.splitlines() if dead in ln)
        assert "refused" in line, table.stdout
    finally:
        cluster.restart(2)


def test_a_silent_replica_does_not_take_half_the_deadline(cluster: LocalCluster,
                                                          silent: str) -> None:
    async def first_answer() -> float:
        # the silent replica is listed first, as if it were the last known one
        async with CoordinatorClient([silent, *cluster.grpc_addresses], timeout=6) as client:
            started = time.monotonic()
            await client.cluster_status()
            took = time.monotonic() - started
            # the replica that answered is asked first from now on
            assert client.preferred != silent
            started = time.monotonic()
            await client.list_nodes()
            assert time.monotonic() - started < 1.0
            return took

    took = asyncio.run(first_answer())
    assert took < 2.4, f"{took:.2f} s: the silent replica held the call"  # half is 3 s

    async def all_silent() -> str:
        async with CoordinatorClient([silent], timeout=2) as client:
            with pytest.raises(CoordinatorUnavailable) as caught:
                await client.list_nodes()
            return str(caught.value)

    message = asyncio.run(all_silent())
    assert "timed out after" in message and "within 2 s" not in message, message


def test_a_hung_replica_with_a_live_connection_is_left_after_a_second(
        cluster: LocalCluster) -> None:
    """A replica that stops answering on an established connection (a hung process, a host
    gone without a reset) is asked in parallel with the next one after the connect budget,
    not after half the deadline."""
    async def scenario() -> tuple[float, str]:
        async with CoordinatorClient(cluster.grpc_addresses, timeout=6) as probe:
            leader = (await probe.cluster_status()).leader
        i = next(i for i, a in enumerate(cluster.raft_addresses) if a != leader)
        hung = cluster.grpc_addresses[i]
        others = [a for a in cluster.grpc_addresses if a != hung]
        async with CoordinatorClient([hung, *others], timeout=6) as client:
            await client.list_nodes()  # connected to it, and it is preferred
            assert client.preferred == hung
            proc = cluster.procs[i]
            assert proc is not None
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                await client.list_nodes()
                took = time.monotonic() - started
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            return took, client.preferred

    took, preferred = asyncio.run(scenario())
    assert took < 2.4, f"{took:.2f} s: the hung replica held the call (half is 3 s)"
    assert preferred in cluster.grpc_addresses
