"""Bounded gRPC resources per client on fos-coordinator (docs/operations.md, "Limits"):
real replica processes, real gRPC over loopback.

The flooding client reaches the leader through a forwarder whose outgoing connections come
from 127.0.0.2, so the replica sees it as a peer address of its own; `fosctl health` runs
from 127.0.0.1. Every address in 127.0.0.0/8 is on the loopback interface on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.launcher import LocalCluster
from fos_raft.runtime.limits import GrpcLimits, peer_host
from tests.coord_util import wait_until

FLOOD_SOURCE = "127.0.0.2"
PER_PEER = 40
FLOOD_STREAMS = 300  # over 10 connections


class SourceForwarder:
    """Listen on 127.0.0.1:0 and forward every connection to ``target`` from ``source``."""

    def __init__(self, target: str, source: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.source = source
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.address = ""

    def start(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self.address

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                *self.target, local_addr=(self.source, 0))
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for writer in list(self.writers):
                writer.close()
            pumps = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(3, tmp_path_factory.mktemp("limits"), grpc_max_rpcs_per_peer=PER_PEER,
                      grpc_handshake_timeout=1.0) as c:
        c.wait_for_leader(30)
        yield c


def _can_bind_source() -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((FLOOD_SOURCE, 0))
        except OSError:
            return False
    return True


async def _flood(address: str, streams: int, hold: asyncio.Event,
                 codes: list[grpc.StatusCode]) -> None:
    """Open ``streams`` WatchFlow streams over 10 separate connections; record each one's
    outcome (OK once its first reply came) and keep the accepted ones open until ``hold``."""
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(10)]

    async def one(i: int) -> None:
        call = pb_grpc.CoordinatorStub(channels[i % 10]).WatchFlow(
            pb.WatchFlowRequest(), timeout=120)
        try:
            await call.read()
            codes.append(grpc.StatusCode.OK)
            await hold.wait()
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
        finally:
            call.cancel()

    try:
        await asyncio.gather(*(one(i) for i in range(streams)))
    finally:
        for channel in channels:
            await channel.close()


@pytest.mark.skipif(not _can_bind_source(), reason=f"cannot bind {FLOOD_SOURCE}")
def test_a_flooding_client_is_refused_while_others_are_served(
        cluster: LocalCluster, tmp_path: Path) -> None:
    leader = cluster.wait_for_leader(30)
    before = cluster.status(leader, timeout=10)
    forwarder = SourceForwarder(cluster.grpc_addresses[leader], FLOOD_SOURCE)
    codes: list[grpc.StatusCode] = []
    loop = asyncio.new_event_loop()
    hold = asyncio.Event()
    flood = threading.Thread(
        target=lambda: loop.run_until_complete(
            _flood(forwarder.start(), FLOOD_STREAMS, hold, codes)), daemon=True)
    try:
        flood.start()
        wait_until(lambda: len(codes) == FLOOD_STREAMS, 90, "every flood stream answered")
        accepted = codes.count(grpc.StatusCode.OK)
        exhausted = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert accepted == PER_PEER, codes
        assert exhausted == FLOOD_STREAMS - PER_PEER
        # the accepted streams are still open: another client address is served meanwhile
        done = subprocess.run(
            [sys.executable, "-m", "fos_raft.cli.fosctl", "--coordinators",
             ",".join(cluster.grpc_addresses), "--timeout", "10", "health"],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        after = cluster.status(leader, timeout=10)
        assert after.leader == before.leader and after.term == before.term
        assert all(cluster.is_running(i) for i in range(cluster.n))
    finally:
        loop.call_soon_threadsafe(hold.set)
        flood.join(30)
        forwarder.stop()
    # the slots are given back when the streams end: the same address is served again
    again = SourceForwarder(cluster.grpc_addresses[leader], FLOOD_SOURCE)
    try:
        with grpc.insecure_channel(again.start()) as channel:
            reply = pb_grpc.CoordinatorStub(channel).ClusterStatus(
                pb.ClusterStatusRequest(), timeout=10)
        assert reply.leader == before.leader
    finally:
        again.stop()


def test_a_connection_that_never_handshakes_is_closed(cluster: LocalCluster) -> None:
    host, _, port = cluster.grpc_addresses[0].rpartition(":")
    socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(50)]
    try:
        started = time.monotonic()
        for sock in socks:  # sends nothing: the server must give up at its handshake deadline
            sock.settimeout(max(0.1, started + 15 - time.monotonic()))
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        assert time.monotonic() - started < 15
    finally:
        for sock in socks:
            sock.close()
    assert cluster.status(0, timeout=10).leader


def test_limits_are_grpc_core_options() -> None:
    options = dict(GrpcLimits(max_streams_per_connection=7, max_connections=9).server_options())
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.max_allowed_incoming_connections"] == 9
    assert options["grpc.server_handshake_timeout_ms"] == 5000
    assert options["grpc.max_receive_message_length"] == 4 * 1024 * 1024
    assert "grpc.max_connection_idle_ms" not in dict(
        GrpcLimits(max_connection_idle=0).server_options())


@pytest.mark.parametrize(("peer", "host"), [
    ("ipv4:10.0.0.7:5123", "10.0.0.7"), ("ipv6:[::1]:5123", "::1"),
    ("ipv6:%5B::1%5D:5123", "::1"), ("unix:/tmp/s", "unix:/tmp/s")])
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_connections_over_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    # grpc core's grpc.max_allowed_incoming_connections: a total, not per address
    with LocalCluster(1, tmp_path, grpc_max_connections=5,
                      grpc_handshake_timeout=30) as one:
        host, _, port = one.grpc_addresses[0].rpartition(":")
        socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(10)]
        try:
            def closed(sock: socket.socket) -> bool:
                sock.settimeout(0.5)
                try:
                    return sock.recv(4096) == b""
                except TimeoutError:
                    return False
                except ConnectionResetError:
                    return True

            # the first five get the server's HTTP/2 preface; the other five are closed
            shut = wait_until(lambda: [closed(s) for s in socks].count(True) >= 5, 15,
                              "connections over the cap closed")
            assert shut
            assert [closed(s) for s in socks[:5]] == [False] * 5
        finally:
            for sock in socks:
                sock.close()
