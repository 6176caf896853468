"""Truthful health: one readiness check drives grpc.health.v1 and the HTTP ``/readyz``.

A process is *alive* while it answers at all (``/healthz``) and *serving* while its own
check says it can do its job (a coordinator replica: a leader and a quorum; an agent: a
writable WAL and a flow). `HealthPublisher` re-runs the check a few times a second and
pushes every change to the gRPC health servicer, so a load balancer, the coordinator's
suspicion probe and ``fosctl health`` all see the same answer. The check itself must be
cheap and must not block: it runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from grpc_health.v1 import health_pb2

from fos_raft.runtime.logging import get_logger

log = get_logger("fos_raft.runtime.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True, slots=True)
class Readiness:
    serving: bool
    reason: str = ""  # why not serving; empty when serving


STARTING = Readiness(False, "starting")


class HealthPublisher:
    """Keeps ``servicer``'s statuses (for every name in ``names``) equal to ``check()``.

    `current` is a plain attribute swap, safe to read from the HTTP server's threads."""

    def __init__(self, servicer: Any, names: Iterable[str], check: Callable[[], Readiness],
                 interval: float = 0.2) -> None:
        self.servicer = servicer
        self.names = tuple(names)
        self.check = check
        self.interval = interval
        self.current = STARTING
        self.changes = 0
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Something the check reads changed: re-check now, not at the next interval."""
        self._poked.set()

    async def publish_once(self) -> Readiness:
        try:
            now = self.check()
        except Exception as exc:  # a check that fails is an answer too: not serving
            now = Readiness(False, f"health check failed: {exc}")
        if now != self.current or self.changes == 0:
            status = SERVING if now.serving else NOT_SERVING
            for name in self.names:
                await self.servicer.set(name, status)
            if self.changes:  # the first answer is not news
                log.info("health changed", serving=now.serving, reason=now.reason)
            self.current = now
            self.changes += 1
        return now

    async def run(self) -> None:
        """Poll forever (cancel to stop), sooner when poked. Polling, not only events: losing
        the quorum publishes nothing the process could wait on; a check costs microseconds."""
        while True:
            self._poked.clear()
            await self.publish_once()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poked.wait()
