"""A simulated agent's failure detector: the link table of fos_agent.rules.suspicion driven
on virtual time, the way fos_agent.runtime.detector drives it with the event loop's clock
(tick when due or woken, pings, suspicion reports retried while the coordinator is
unavailable)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fos_agent.rules.suspicion import Ping, Report, Suspicion, report_retry_after
from fos_agent.testing.factory.clock import Timer
from fos_agent.testing.factory.coordinator import COORDINATOR, UNAVAILABLE
from fos_agent.testing.factory.host import Host


class SimDetector:
    def __init__(self, agent: Host) -> None:
        self.agent = agent
        self.links = Suspicion(agent.node_id, agent.settings.detector)
        self._timer: Timer | None = None

    def contact(self, node: str, ok: bool) -> None:
        if self.links.contact(node, ok, self.agent.clock.now):
            self.arm(0.0)

    def answered(self, node: str, reply: Any) -> None:
        """``then`` of a call to ``node``: contact if it answered."""
        self.contact(node, reply is not None)

    def hold(self, node: str, held: bool) -> None:
        if self.links.hold(node, held, self.agent.clock.now):
            self.arm(0.0)

    def watch(self, alive: set[str]) -> None:
        # sorted: a set's order depends on the process's hash seed, the links' on this
        if self.links.watch(sorted(alive), self.agent.clock.now):
            self.arm(0.0)

    def arm(self, delay: float) -> None:
        """Tick in ``delay`` unless a tick is planned sooner."""
        a = self.agent
        t = self._timer
        if t is not None and not t.cancelled and t.at <= a.clock.now + delay:
            return
        if t is not None:
            t.cancel()
        self._timer = a.timer(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self.agent.clock.now
        self.links.stall(now)  # virtual time is never late, but the contract says so
        for action in self.links.tick(now):
            if isinstance(action, Ping):
                self._ping(action)
            else:
                self._report(action, None)
        self.arm(self.links.next_tick_in(now))

    def _ping(self, ping: Ping) -> None:
        a = self.agent
        a.call(ping.node, "ping", None, a.settings.detector.ping_timeout,
               partial(self._pinged, ping))

    def _pinged(self, ping: Ping, reply: Any) -> None:
        self.contact(ping.node, reply is not None)
        self.links.ping_done(ping)

    def _report(self, report: Report, pause: float | None) -> None:
        a = self.agent
        if not self.links.report_wanted(report):
            self.links.report_done(report, None, a.clock.now)
            return
        a.call(COORDINATOR, "suspect", (a.node_id, report.node, report.reason),
               a.settings.coordinator_timeout, partial(self._reported, report, pause))

    def _reported(self, report: Report, pause: float | None, outcome: Any) -> None:
        a = self.agent
        if outcome is None or outcome == UNAVAILABLE:
            wait = report_retry_after(a.settings.detector, pause)
            a.later(wait, self._report, report, wait)
            return
        a.trace.note(a.node_id, f"reported {report.node}: {outcome}")
        self.links.report_done(report, outcome, a.clock.now)
