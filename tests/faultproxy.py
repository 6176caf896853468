"""A fault-injecting TCP proxy for Raft traffic between real replicas (issue 15).

Replica i binds its Raft socket at a private address (``--raft-bind``) while every peer
dials its public name ``raft_addresses[i]``, where this proxy listens and forwards. The
proxy learns which replica opened a connection from pysyncobj's first frame (a length, then
zlib(pickle(sender's address))): it only looks for the known addresses in the decompressed
bytes and never unpickles. So it knows, for every byte, the direction ``src -> dst``.

Faults, changed at any time from the test's thread:

* ``block(src, dst)``: bytes from src to dst are held (not read, so TCP back-pressure
  stalls the sender, as a black-holed link does); ``partition``/``isolate``/``heal``
  build two-way cuts from it. One-way cuts are one ``block`` call.
* ``delay``: every chunk waits this long before it is forwarded (order kept).
* ``drop``: each chunk resets its connection with this probability (a lossy link;
  streams are never corrupted: pysyncobj reconnects).

It runs its own asyncio loop in a daemon thread; `stop` closes every socket it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fos_raft.cli.launcher import LocalCluster, free_port

CHUNK = 65536


class FaultProxy:
    """Forward ``public -> private`` for each replica; names are the public addresses."""

    def __init__(self, routes: dict[str, str], seed: int = 0) -> None:
        self.routes = dict(routes)
        self.blocked: set[tuple[str, str]] = set()
        self.delay = 0.0
        self.drop = 0.0
        self.forwarded = 0  # chunks passed on (tests check traffic flowed)
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="faultproxy")
        self._servers: list[asyncio.base_events.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._unblocked = asyncio.Event()  # set whenever the fault set changes
        self._dones: set[asyncio.Event] = set()  # one per live connection

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        self._thread.start()
        self._call(self._start_servers()).result(timeout=10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._close()).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def block(self, src: str, dst: str) -> None:
        self._change(lambda: self.blocked.add((src, dst)))

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every link between the two sides, both ways."""
        pairs = [(a, b) for a in side_a for b in side_b]
        self._change(lambda: self.blocked.update({*pairs, *((b, a) for a, b in pairs)}))

    def isolate(self, name: str) -> None:
        self.partition([name], [n for n in self.routes if n != name])

    def heal(self) -> None:
        self._change(self.blocked.clear)

    def set_faults(self, *, delay: float | None = None, drop: float | None = None) -> None:
        def change() -> None:
            if delay is not None:
                self.delay = delay
            if drop is not None:
                self.drop = drop
        self._change(change)

    def _change(self, mutate: Any) -> None:
        def apply() -> None:
            mutate()
            event, self._unblocked = self._unblocked, asyncio.Event()
            event.set()  # wake every held pump to look again
        self._loop.call_soon_threadsafe(apply)

    def _call(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    # ------------------------------------------------------------ the loop's side

    async def _start_servers(self) -> None:
        for public in self.routes:
            host, port = public.rsplit(":", 1)
            server = await asyncio.start_server(
                lambda r, w, dst=public: self._serve(r, w, dst), host, int(port),
                reuse_address=True)
            self._servers.append(server)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for done in list(self._dones):
            done.set()  # held pumps end
        for writer in list(self._writers):
            writer.close()
        for server in self._servers:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     dst: str) -> None:
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        done = asyncio.Event()
        try:
            head = await reader.readexactly(4)
            (length,) = struct.unpack("i", head)
            first = await reader.readexactly(length) if 0 < length < 1 << 20 else b""
            src = self._sender(first)
            host, port = self.routes[dst].rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self._writers.add(up_writer)
            self._dones.add(done)  # either direction ended: the other stops holding too
            if not await self._hold(src, dst, done):
                return
            up_writer.write(head + first)
            await asyncio.gather(self._pump(reader, up_writer, src, dst, done),
                                 self._pump(up_reader, writer, dst, src, done))
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._dones.discard(done)
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    def _sender(self, frame: bytes) -> str:
        try:
            raw = zlib.decompress(frame)
        except zlib.error:
            return ""  # encrypted or not pysyncobj: no direction-specific faults
        return next((name for name in self.routes if name.encode() in raw), "")

    async def _hold(self, src: str, dst: str, done: asyncio.Event) -> bool:
        """Wait while ``src -> dst`` is blocked; False if the connection ended meanwhile."""
        while (src, dst) in self.blocked and not done.is_set():
            waiters = [asyncio.ensure_future(self._unblocked.wait()),
                       asyncio.ensure_future(done.wait())]
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
        return not done.is_set()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    src: str, dst: str, done: asyncio.Event) -> None:
        try:
            while await self._hold(src, dst, done):  # held: not read, so the sender stalls
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.drop and self._random.random() < self.drop:
                    break  # a reset: both sockets close below
                if self.delay:
                    await asyncio.sleep(self.delay)
                if not await self._hold(src, dst, done):  # cut while in flight: held too
                    break
                writer.write(data)
                await writer.drain()
                self.forwarded += 1
        finally:
            done.set()
            writer.close()


@contextlib.contextmanager
def proxied_cluster(
    n: int, base_dir: Path, **flags: Any
) -> Iterator[tuple[LocalCluster, FaultProxy]]:
    """A started LocalCluster whose Raft traffic all goes through one FaultProxy; stops
    both (replicas by PID) on the way out, even on failure."""
    cluster = LocalCluster(n, base_dir, **flags)
    cluster.raft_bind_addresses = [f"127.0.0.1:{free_port()}" for _ in range(n)]
    proxy = FaultProxy(dict(zip(cluster.raft_addresses, cluster.raft_bind_addresses,
                                strict=True)))
    try:
        proxy.start()
        cluster.start()
        cluster.wait_ready(timeout=30)
        yield cluster, proxy
    finally:
        try:
            cluster.stop()
        finally:
            proxy.stop()


V4_MAPPED = "0000000000000000FFFF0000"  # ::ffff:0:0/96 as /proc/net/tcp6 prints it


def connection_pid_is(pid: int, peer: tuple[str, int], local: tuple[str, int]) -> bool:
    """Does process ``pid`` own the loopback socket ``peer -> local``? (/proc/net/tcp gives
    the socket's inode; the process's fds name it.) Used to cut one process off."""
    def hex_addr(host: str, port: int) -> str:
        return "".join(f"{int(b):02X}" for b in reversed(host.split("."))) + f":{port:04X}"

    inode = ""
    # IPv4 sockets are in /proc/net/tcp; dual-stack ones (grpc's) in tcp6, v4-mapped.
    for table_path, prefix in (("/proc/net/tcp", ""), ("/proc/net/tcp6", V4_MAPPED)):
        want_local, want_remote = prefix + hex_addr(*peer), prefix + hex_addr(*local)
        with open(table_path) as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[1] == want_local and fields[2] == want_remote:
                    inode = fields[9]
                    break
        if inode:
            break
    if not inode:
        return False
    target = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
    return False


class ProcessCutProxy:
    """A plain TCP forwarder (``front -> back``, e.g. an agent's advertised address to its
    real one) that can cut chosen *processes* off one front: their open connections are
    closed and new ones are accepted but never answered (a black hole), while everybody
    else (the coordinator's probes, other agents) still gets through. Its own loop thread."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = dict(routes)
        self.cut: set[tuple[int, str]] = set()  # (pid, front)
        self.held = 0  # connections black-holed so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="cutproxy")
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: dict[asyncio.StreamWriter, tuple[tuple[str, int], str]] = {}

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def cut_off(self, pid: int, front: str) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(pid, front), self._loop).result(timeout=10)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self.cut.clear)

    async def _start(self) -> None:
        for front in self.routes:
            host, port = front.rsplit(":", 1)
            self._servers.append(await asyncio.start_server(
                lambda r, w, f=front: self._serve(r, w, f), host, int(port)))

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._conns):
            writer.close()

    async def _cut(self, pid: int, front: str) -> None:
        self.cut.add((pid, front))
        for writer, (peer, conn_front) in list(self._conns.items()):
            if conn_front == front and self._is_cut(peer, front):
                writer.close()

    def _is_cut(self, peer: tuple[str, int], front: str) -> bool:
        host, port = front.rsplit(":", 1)
        return any(f == front and connection_pid_is(pid, peer, (host, int(port)))
                   for pid, f in self.cut)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     front: str) -> None:
        peer = writer.get_extra_info("peername")[:2]
        self._conns[writer] = (peer, front)
        up: asyncio.StreamWriter | None = None
        try:
            if self._is_cut(peer, front):
                self.held += 1
                while self.cut and not writer.is_closing():  # black hole until healed
                    await asyncio.sleep(0.1)
                return
            host, port = self.routes[front].rsplit(":", 1)
            up_reader, up = await asyncio.open_connection(host, int(port))
            await asyncio.gather(_copy(reader, up), _copy(up_reader, writer))
        except (OSError, ConnectionError):
            pass
        finally:
            self._conns.pop(writer, None)
            writer.close()
            if up is not None:
                up.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
