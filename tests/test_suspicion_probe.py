"""The coordinator's suspicion probe tells dead from slow: a refused port is dead at once, a
suspect that answers late is probed for ``patience`` seconds before it is called dead (a
starved machine must not turn live agents into false deaths)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fos_raft.api.suspicion import ProbeSettings, probe_health
from fos_raft.cli.launcher import free_port
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

FAST = ProbeSettings(timeout=0.1, tries=3, interval=0.02, patience=1.0)


class LateHealth(health_pb2_grpc.HealthServicer):
    """Answers SERVING, but only after ``slow_until`` (monotonic) has passed."""

    def __init__(self, slow_until: float) -> None:
        self.slow_until = slow_until
        self.checks = 0

    async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        self.checks += 1
        if time.monotonic() < self.slow_until:
            await asyncio.sleep(1.0)  # longer than the probe's deadline
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def serve(servicer: LateHealth) -> tuple[grpc.aio.Server, str]:
    keep_grpc_aio_running()  # see fos_raft.runtime.grpc_runtime
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_a_refused_port_is_dead_at_once():
    started = time.monotonic()
    assert not await probe_health(f"127.0.0.1:{free_port()}", FAST)
    assert time.monotonic() - started < FAST.patience  # did not wait for the patience


async def test_a_late_answer_within_patience_refutes():
    servicer = LateHealth(slow_until=time.monotonic() + 0.6)  # several tries time out first
    server, address = await serve(servicer)
    try:
        assert await probe_health(address, FAST)
        assert servicer.checks > FAST.tries
    finally:
        await server.stop(None)


async def test_no_answer_for_the_whole_patience_is_dead():
    server, address = await serve(LateHealth(slow_until=time.monotonic() + 60))
    try:
        started = time.monotonic()
        assert not await probe_health(address, FAST)
        assert time.monotonic() - started >= FAST.patience
    finally:
        await server.stop(None)
