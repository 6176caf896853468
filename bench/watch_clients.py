"""One process of light WatchFlow clients for ``bench.bench_watchers``.

    python -m bench.watch_clients --addresses A,B,C --nodes FILE --first I --count N

Opens one WatchFlow stream per node id (``FILE``: one id a line; this process takes lines
``I .. I+N-1``) over ``--channels`` connections per replica. Stream ``k`` (global index
``I + k``) goes to replica ``k mod replicas`` (or the one ``--target`` names). An error
whose trailing metadata carries a redirect (``fos-redirect-grpc``) or a leader hint is
followed; any other error reopens the stream on the next replica after a short pause.

Protocol on stdout, one JSON document a line: ``{"ready": ...}`` once every stream has its
first message (or ``--ready-timeout`` passed), then on each ``dump`` line read from stdin
``{"records": [[node, version, t_ns], ...], "cpu": seconds, ...}`` with every message
received since ready. ``t_ns`` is ``time.monotonic_ns()``: one clock for every process
of the machine. ``quit`` on stdin ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.runtime.limits import raise_nofile_limit

REDIRECT_KEYS = ("fos-redirect-grpc", "fos-leader-grpc")
# Replies are small; a plain channel per connection slot, never a shared subchannel.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.keepalive_time_ms", 60_000)]


def _version(reply: pb.GetFlowReply) -> int:
    if reply.HasField("neighbourhood"):
        return int(reply.neighbourhood.version)
    return int(reply.flow.version)


class Clients:
    def __init__(self, addresses: list[str], channels: int) -> None:
        self.addresses = addresses
        self.channels = channels
        self._stubs: dict[tuple[str, int], pb_grpc.CoordinatorStub] = {}
        self._chans: list[grpc.aio.Channel] = []
        self.records: list[tuple[str, int, int]] = []
        self.first: dict[str, int] = {}  # node -> t_ns of its first message
        self.opened_ns = 0
        self.redirects = 0
        self.errors = 0
        self.recording = False

    def stub(self, address: str, slot: int) -> pb_grpc.CoordinatorStub:
        key = (address, slot % self.channels)
        stub = self._stubs.get(key)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, CHANNEL_OPTIONS)
            self._chans.append(channel)
            stub = self._stubs[key] = pb_grpc.CoordinatorStub(channel)
        return stub

    async def watch(self, node: str, index: int, target: str | None) -> None:
        n = len(self.addresses)
        address = target or self.addresses[index % n]
        floor = 0
        while True:
            call = self.stub(address, index // n).WatchFlow(
                pb.WatchFlowRequest(node_id=node, min_version=floor))
            try:
                async for reply in call:
                    now = time.monotonic_ns()
                    version = _version(reply)
                    floor = max(floor, version)
                    if node not in self.first:
                        self.first[node] = now
                    elif self.recording:
                        self.records.append((node, version, now))
            except grpc.aio.AioRpcError as exc:
                self.errors += 1
                hint = next((v for k, v in exc.trailing_metadata() or ()
                             if k in REDIRECT_KEYS and v), None)
                if hint and hint in self.addresses and hint != address:
                    self.redirects += 1
                    address = str(hint)
                    continue
                address = self.addresses[(self.addresses.index(address) + 1) % n]
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for channel in self._chans:
            await channel.close()


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> None:
    raise_nofile_limit()  # thousands of streams over tens of sockets, and a margin
    nodes = Path(args.nodes).read_text().split()[args.first:args.first + args.count]
    clients = Clients(args.addresses.split(","), args.channels)
    clients.opened_ns = time.monotonic_ns()
    tasks = [asyncio.ensure_future(clients.watch(node, args.first + k, args.target))
             for k, node in enumerate(nodes)]
    deadline = time.monotonic() + args.ready_timeout
    while len(clients.first) < len(nodes) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    clients.recording = True
    last_first = max(clients.first.values(), default=clients.opened_ns)
    emit({"ready": len(clients.first), "streams": len(nodes), "opened_ns": clients.opened_ns,
          "last_first_ns": last_first, "redirects": clients.redirects, "cpu": cpu_seconds()})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "dump":
            records, clients.records = clients.records, []
            emit({"records": records, "cpu": cpu_seconds(), "redirects": clients.redirects,
                  "errors": clients.errors, "first": len(clients.first)})
        elif line in ("quit", ""):
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await clients.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", required=True)
    parser.add_argument("--nodes", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--channels", type=int, default=4, help="connections per replica")
    parser.add_argument("--target", default=None, help="every stream to this replica")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
