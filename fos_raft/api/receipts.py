"""When did each node last receive each of its inputs? Asked of the agents themselves.

The coordinator is never on the data path, so it cannot see batches move. For the line's
"stalled" alert, a replica serving ``--metrics`` polls every alive node's ``Stats`` RPC
(its recent receipts ring) every few seconds and keeps, per (node, item), the time of
the newest receipt, converted to this host's clock with the agent's own ``unix_time`` (no
clock-skew between hosts). An input never received since the watcher first reached the
node counts from that moment (a line that never starts is stalled too). The cost is one
small RPC per consumer node per interval, off every hot path; a node that does not answer
keeps its last value (``fos_node_up`` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import grpc

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.replica.core import Replica
from fos_raft.runtime.logging import get_logger
from fos_raft.security.tls import TlsConfig, aio_channel

log = get_logger("fos_raft.api.receipts")


class ReceiptWatcher:
    def __init__(self, replica: Replica, tls: TlsConfig | None, interval: float = 5.0,
                 timeout: float = 2.0) -> None:
        self.replica = replica
        self.tls = tls
        self.interval = interval
        self.timeout = timeout
        self._last: dict[tuple[str, str], float] = {}  # (node, item) -> unix time here
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}  # node -> (addr, ch)
        self._task: asyncio.Task[Any] | None = None

    def receipts(self) -> dict[tuple[str, str], float]:
        """(node, item) -> unix time of the last receipt; safe from other threads."""
        return dict(self._last)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        nodes = {node_id: (entry.spec.address, [r.item for r in entry.spec.requires])
                 for node_id, entry in self.replica.state.nodes.items()
                 if entry.status.alive and entry.spec.requires}
        registered = self.replica.state.nodes
        for key in [k for k in self._last if k[0] not in registered]:
            del self._last[key]  # decommissioned: drop its series
        await asyncio.gather(*(self._poll(n, a, items) for n, (a, items) in nodes.items()))

    async def _poll(self, node_id: str, address: str, items: list[str]) -> None:
        known = self._channels.get(node_id)
        if known is None or known[0] != address:
            if known is not None:
                await known[1].close()
            known = (address, aio_channel(address, self.tls, server_name=node_id))
            self._channels[node_id] = known
        try:
            reply = await agent_pb2_grpc.AgentStub(known[1]).Stats(
                agent_pb2.StatsRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            log.debug("stats poll failed", node=node_id, code=exc.code().name)
            return
        now = time.time()
        offset = now - reply.unix_time  # their clock -> ours
        for item in items:
            self._last.setdefault((node_id, item), now)  # watched from now on
        for receipt in reply.recent_receipts:
            at = receipt.unix_ms / 1000 + offset
            key = (node_id, receipt.item)
            if at > self._last.get(key, 0.0):
                self._last[key] = at
