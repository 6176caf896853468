"""Neighbour-only failure detector (docs/agent.md, "Failure detector"): the asyncio driver
of fos_agent.rules.suspicion, which holds the rules (when to ping, when to suspect, the
stall pardon) and their reasons.

This module carries them out with the event loop's clock: it sleeps until the rules'
next tick or until an input says a tick is due sooner, sends the Pings a tick asks for
(each one's outcome comes back through ``contact``, from the PeerClient), and delivers
the suspicion reports to the coordinator in the background, retrying while it is
unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fos_agent.core.metrics import Metrics
from fos_agent.rules.suspicion import (
    DetectorSettings,
    Ping,
    Report,
    Suspicion,
    report_retry_after,
)
from fos_raft.runtime.logging import get_logger

__all__ = ["DetectorSettings", "FailureDetector", "PingFn", "ReportFn"]

PingFn = Callable[[str, float], Awaitable[Any]]
ReportFn = Callable[[str, str], Awaitable[str]]  # (suspect, reason) -> outcome name


class FailureDetector:
    def __init__(self, node_id: str, ping: PingFn, report: ReportFn, metrics: Metrics,
                 settings: DetectorSettings | None = None) -> None:
        self.node_id = node_id
        self.settings = settings or DetectorSettings()
        self.rules = Suspicion(node_id, self.settings)
        self._ping = ping
        self._report = report
        self.metrics = metrics
        self.log = get_logger("fos_agent.runtime.detector").bind(node=node_id)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.outcomes: list[tuple[str, str]] = []  # (suspect, outcome), for tests and logs
        self._closed = False
        self._poke = asyncio.Event()  # something may be due sooner than the sleep planned

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _wake(self, due: bool) -> None:
        if due:
            self._poke.set()

    @property
    def watched(self) -> frozenset[str]:
        return self.rules.watched

    def suspected(self) -> frozenset[str]:
        """Neighbours with failed contact right now (suspected or about to be)."""
        return self.rules.suspected()

    def holding(self) -> frozenset[str]:
        """Nodes with a long-poll open on the link right now (either end)."""
        return self.rules.holding()

    def links_down(self) -> dict[str, float]:
        """Neighbours whose refuted suspicion left our contact failing (a link fault),
        each with when its contact began failing, on the wall clock (Unix seconds)."""
        offset = time.time() - self._now()
        return {node: since + offset for node, since in self.rules.links_down().items()}

    def watch(self, alive_neighbours: set[str] | frozenset[str]) -> None:
        """The flow changed: watch exactly these (alive) neighbours."""
        self._wake(self.rules.watch(alive_neighbours, self._now()))

    def contact(self, node: str, ok: bool) -> None:
        """An RPC with ``node`` succeeded (ok) or got no answer."""
        now = self._now()
        if not ok and node in self.rules.watched:
            self._stall(now)  # the call may have timed out during a stall
        self._wake(self.rules.contact(node, ok, now))

    def proven(self, node: str, incarnation: int) -> None:
        """``node`` answered our Ping at its address as ``incarnation``."""
        self.rules.proven(node, incarnation)

    def believe(self, node: str, incarnation: int) -> bool:
        """May a Ping naming ``node`` as its sender, at ``incarnation``, count as contact?
        (fos_agent.rules.suspicion.Suspicion.believe)"""
        return self.rules.believe(node, incarnation)

    def hold(self, node: str, held: bool) -> None:
        """A long-poll with ``node`` opened (True) or ended (False), in either direction."""
        self._wake(self.rules.hold(node, held, self._now()))

    def forgive(self, now: float) -> None:
        """This process was not running for a while: every neighbour gets a fresh window."""
        self.rules.forgive(now)
        self.metrics.inc("detector_stalls")

    def tick(self) -> None:
        """Start the pings and reports that are due."""
        if self._closed:
            return
        for action in self.rules.tick(self._now()):
            if isinstance(action, Ping):
                self._spawn(self._ping_one(action))
            else:
                self._spawn(self._report_one(action))

    async def run(self) -> None:
        while True:
            self._poke.clear()
            planned = self.rules.next_tick_in(self._now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(planned):
                    await self._poke.wait()
            self._stall(self._now())
            self.tick()

    def _stall(self, now: float) -> None:
        late = self.rules.stall(now)
        if late is not None:
            self.log.info("this agent was stalled; neighbours get a fresh window",
                          late_s=round(late, 2))
            self.metrics.inc("detector_stalls")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ping_one(self, ping: Ping) -> None:
        self.metrics.inc("heartbeats")
        try:
            await self._ping(ping.node, self.settings.ping_timeout)
        except Exception:  # the client already reported the failed contact
            pass
        finally:
            self.rules.ping_done(ping)

    async def _report_one(self, report: Report) -> None:
        outcome: str | None = None
        pause: float | None = None
        try:
            while self.rules.report_wanted(report):
                try:
                    outcome = await self._report(report.node, report.reason)
                except Exception as exc:  # coordinator unreachable: keep the report
                    self.log.info("suspicion not delivered yet", suspect=report.node,
                                  error=str(exc)[:200])
                    pause = report_retry_after(self.settings, pause)
                    await asyncio.sleep(pause)
                    continue
                self.metrics.inc("suspicions_reported")
                self.outcomes.append((report.node, outcome))
                self.log.info("suspicion reported", suspect=report.node, outcome=outcome,
                              reason=report.reason)
                return
        finally:
            self.rules.report_done(report, outcome, self._now())

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
