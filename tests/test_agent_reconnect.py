"""PeerClient.reconnect: a peer that restarted on the same address is reached at once by a
fresh channel, not after the dead connection's reconnect backoff (up to a second), which
is what a consumer switching to a recently restarted backup supplier depends on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc.aio
import pytest

from fos_agent.core.metrics import Metrics
from fos_agent.net.client import PeerClient, PeerUnreachable
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.cli.launcher import free_port
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running


class PingOnly(agent_pb2_grpc.AgentServicer):
    async def Ping(self, request: Any, context: Any) -> agent_pb2.PingReply:
        return agent_pb2.PingReply(node_id="peer", flow_version=7)


async def serve(address: str) -> grpc.aio.Server:
    keep_grpc_aio_running()  # see fos_raft.runtime.grpc_runtime
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServicer_to_server(PingOnly(), server)
    server.add_insecure_port(address)
    await server.start()
    return server


async def test_a_restarted_peer_is_reached_at_once_after_reconnect():
    address = f"127.0.0.1:{free_port()}"

    async def resolve(node: str) -> str:
        return address

    client = PeerClient("me", resolve, Metrics("me"), rpc_timeout=1.0)
    server = await serve(address)
    try:
        assert await client.ping("peer", 1) == 7
        await server.stop(None)
        deadline = time.monotonic() + 1.5  # failed calls grow the channel's backoff
        while time.monotonic() < deadline:
            with pytest.raises(PeerUnreachable):
                await client.ping("peer", 1)
            await asyncio.sleep(0.1)
        server = await serve(address)
        client.reconnect(address)
        assert await client.ping("peer", 1) == 7  # first try, no waiting out a backoff
    finally:
        await client.close()
        await server.stop(None)
