"""A clean stop leaves its suppliers nothing in transit: the outbox's close lets a
confirmation that is already on its way arrive, and a request cancelled by a stop gives
back the confirmations it carried. Real gRPC to a stand-in supplier that answers slowly.

Found by a suite loop: a consumer had recorded a batch (QUEUED) and its confirmation was
mid-RPC when the stop closed the outbox, which cancelled it; the supplier's re-offer came
after the consumer had stopped, and the audit found the batch in transit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

from fos_agent.core.engine import Engine, Signal
from fos_agent.core.metrics import Metrics
from fos_agent.net.client import PeerClient
from fos_agent.net.outbox import Outbox
from fos_agent.protocol.machine import NodeConfig
from fos_agent.protocol.messages import DeliveryConfirmed
from fos_agent.runtime.flowview import FlowView
from fos_agent.runtime.inputs import FetchSettings, InputFetcher
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.model import ItemReq
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running


class SlowSupplier(agent_pb2_grpc.AgentServicer):
    """Takes 0.3 s to record a confirmation and remembers the ones it finished; a
    RequestBatch never gets past the network (its piggybacked confirmations never arrive)."""

    def __init__(self) -> None:
        self.confirming = asyncio.Event()
        self.requested = asyncio.Event()
        self.recorded: list[str] = []

    async def DeliveryConfirmed(self, request: Any, context: Any) -> agent_pb2.Ack:
        self.confirming.set()
        await asyncio.sleep(0.3)
        self.recorded.append(request.batch_id)
        return agent_pb2.Ack(flow_version=1)

    async def RequestBatch(self, request: Any, context: Any) -> agent_pb2.RequestBatchReply:
        self.requested.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
async def supplier_client() -> AsyncIterator[tuple[SlowSupplier, PeerClient]]:
    keep_grpc_aio_running()  # see fos_raft.runtime.grpc_runtime
    supplier = SlowSupplier()
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServicer_to_server(supplier, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def resolve(node: str) -> str:
        return f"127.0.0.1:{port}"

    client = PeerClient("c-1", resolve, Metrics("c-1"), rpc_timeout=2.0)
    try:
        yield supplier, client
    finally:
        await client.close()
        await server.stop(None)


async def test_close_lets_a_confirmation_already_on_its_way_arrive(
        supplier_client: tuple[SlowSupplier, PeerClient]):
    supplier, client = supplier_client
    outbox = Outbox(None, client)  # type: ignore[arg-type]  # confirmations need no engine
    outbox.send([DeliveryConfirmed("s-1", "c-1", "s-1:7")])
    await asyncio.wait_for(supplier.confirming.wait(), 5)  # the confirmation is mid-RPC
    await outbox.close(flush=True)
    assert supplier.recorded == ["s-1:7"]


async def test_a_cancelled_request_gives_back_its_confirmations(
        supplier_client: tuple[SlowSupplier, PeerClient], tmp_path: Path):
    supplier, client = supplier_client
    wood = ItemReq("wood", 1)
    engine = Engine(tmp_path / "wal", NodeConfig("c-1", ItemReq("frame", 1), (wood,)),
                    Metrics("c-1"))
    engine.open()
    outbox = Outbox(engine, client)
    fetcher = InputFetcher("wood", engine, client, outbox, lambda: FlowView("c-1"), Signal(),
                           Metrics("c-1"), FetchSettings(), lambda: frozenset())
    try:
        outbox.send([DeliveryConfirmed("s-1", "c-1", "s-1:7")])
        ask = asyncio.ensure_future(fetcher._ask("s-1", 1, 1000, 1))  # takes the confirms
        await asyncio.wait_for(supplier.requested.wait(), 5)
        assert not outbox.take_confirms("s-1")  # they went with the request...
        ask.cancel()  # ...which a stop cancels before the supplier saw them
        await asyncio.gather(ask, return_exceptions=True)
        await outbox.close(flush=True)
        assert supplier.recorded == ["s-1:7"]
    finally:
        await engine.close()
