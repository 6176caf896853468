"""Neighbour-only failure detector (docs/agent.md, "Failure detector").

Each agent watches only its flow neighbours that the flow says are alive. Any successful
RPC with a neighbour, in either direction, is a heartbeat (``contact(node, True)``), and
so is a long-poll held open on the link, at either end (``hold``: a consumer's
RequestBatch waiting at its supplier): a SIGKILLed peer's sockets are closed by its
kernel, so the held call fails at once, and that failure is failed contact. A Ping is
sent only when the link has been idle for ``ping_interval`` with nothing held (or at once,
every tick, while contact is failing); a link that carried no long-poll for 2 x
``ping_interval`` (a backup supplier's, or a consumer's that buys nothing for now: most
links of a chain with several suppliers per item) only every ``quiet_pings_every`` x
``ping_interval``. Issue 14: pings were 9 of the 14
messages per traded batch at 90 agents. The price: a dead quiet neighbour is reported up
to 20 s after its death (nobody waits for it: a consumer turning to a dead backup is
refused at once and tries the next; and a supplier is mostly some consumer's first
supplier too, whose long-poll fails at once), and a peer that hangs without dying
(SIGSTOP) with a long-poll open is noticed when the channel's HTTP/2 keepalive ping goes
unanswered (fos_agent.net.client: a ping every 10 s while a call is open, failed after 2 s),
not at the end of the long-poll's 20 s wait.

A neighbour is suspected when at least ``failures`` consecutive contacts failed and
nothing succeeded for ``suspect_after`` seconds; the suspicion goes to the coordinator
(``ReportSuspect``), which probes the suspect's grpc.health.v1 endpoint before marking it
down, so a false suspicion on a loaded machine costs one probe, not a death. Two failures,
not one: a single slow answer on a loaded machine is common, two in a row much less; a
SIGKILLed peer on loopback refuses at once, so the second failure costs only one tick.

Reports are retried in the background while the coordinator is unreachable and dropped
only if the suspect is heard from again (then it was not dead). After MARKED_DOWN or
ALREADY_DOWN the suspect is left alone until the flow shows it alive again; after REFUTED
it gets a fresh ``suspect_after`` window.

A process that was itself not running (its tick comes ``stall_after`` late: a stalled
loop, a starved or SIGSTOPped process) judges nobody on the silence it saw meanwhile: every
link gets a fresh window and failures of calls in flight during the stall are ignored
(at most once per ``stall_forgive_gap``: a process starved without end still reports).
On a starved machine this is what turns a burst of refuted suspicions into none.

Defaults: ping 2 s (20 s on quiet links), a Ping deadline of 3 s, a tick every 0.5 s
while a link is failing or a ping is in flight, else a sleep until the next ping falls due
(at most 5 s; a failed contact wakes it at once: issue 14), suspect after 1.5 s and 2
failures (measured: 0 false deaths with 90 agents on a loaded
2-core machine, see bench/RESULTS.md, issue 14). A SIGKILLed neighbour with a long-poll
open is reported about 1.5 s after its death, one on an idle link up to a ping interval
later; its consumers do not wait for that (they switch to a backup supplier at the first
refused call, fos_agent.runtime.inputs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fos_agent.core.metrics import Metrics
from fos_agent.rules.suspicion import DetectorSettings
from fos_raft.runtime.logging import get_logger


@dataclass(slots=True)
class _Link:
    last_ok: float  # last successful contact (or when watching began)
    last_activity: float  # last contact attempt either way
    failed: int = 0  # consecutive failed contacts since last_ok
    last_traffic: float = float("-inf")  # a long-poll last held open on this link
    pinging: bool = False
    reporting: bool = False
    reported: bool = False  # coordinator says it is down: wait for the flow
    incarnation: int = 0  # the one the node last proved by answering at its address


PingFn = Callable[[str, float], Awaitable[Any]]
ReportFn = Callable[[str, str], Awaitable[str]]  # (suspect, reason) -> outcome name


class FailureDetector:
    def __init__(self, node_id: str, ping: PingFn, report: ReportFn, metrics: Metrics,
                 settings: DetectorSettings | None = None) -> None:
        self.node_id = node_id
        self.settings = settings or DetectorSettings()
        self._ping = ping
        self._report = report
        self.metrics = metrics
        self.log = get_logger("fos_agent.runtime.detector").bind(node=node_id)
        self._links: dict[str, _Link] = {}
        self._held: dict[str, int] = {}  # node -> long-polls open with it (either end)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.outcomes: list[tuple[str, str]] = []  # (suspect, outcome), for tests and logs
        self._grace_until = 0.0
        self._forgiven_at = float("-inf")
        self._closed = False
        self._poke = asyncio.Event()  # something may be due sooner than the sleep planned
        self._wake_at = 0.0  # loop time of the planned wake-up

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._links)

    def suspected(self) -> frozenset[str]:
        """Neighbours with failed contact right now (suspected or about to be)."""
        return frozenset(n for n, link in self._links.items() if link.failed)

    def watch(self, alive_neighbours: set[str] | frozenset[str]) -> None:
        """The flow changed: watch exactly these (alive) neighbours."""
        now = self._now()
        for node in list(self._links):
            if node not in alive_neighbours:
                del self._links[node]
        for node in alive_neighbours:
            if node == self.node_id:
                continue
            link = self._links.get(node)
            if link is None or link.reported:  # new, or back alive after a mark-down
                self._links[node] = _Link(last_ok=now, last_activity=now)
        self._poke.set()

    def contact(self, node: str, ok: bool) -> None:
        """An RPC with ``node`` succeeded (ok) or got no answer."""
        link = self._links.get(node)
        if link is None:
            return
        now = self._now()
        if not ok:
            self._check_stall(now)
        link.last_activity = now
        if ok:
            link.last_ok = now
            link.failed = 0
        elif now >= self._grace_until:  # not a call that timed out while we were stalled
            link.failed += 1
            if link.failed == 1:  # failing from now: tick (ping, judge) every period; a
                self._poke.set()  # poke per failure made a failing ping its own loop

    def proven(self, node: str, incarnation: int) -> None:
        """``node`` answered our Ping at its address as ``incarnation``."""
        link = self._links.get(node)
        if link is not None:
            link.incarnation = incarnation

    def believe(self, node: str, incarnation: int) -> bool:
        """May a Ping naming ``node`` as its sender, at ``incarnation``, count as contact?
        Only a watched neighbour's, at exactly the incarnation it proved by answering our
        own Ping at its address, and not while our contact with it is failing (our own
        pings, every tick then, decide). Without TLS nothing else ties a Ping to its
        sender: a Ping in a dead supplier's name must neither end a failing window nor
        put off the ping that would find the death. An unproven or restarted neighbour's
        Pings are merely not counted: we ping it ourselves."""
        link = self._links.get(node)
        return (link is not None and not link.failed and link.incarnation != 0
                and incarnation == link.incarnation)

    def hold(self, node: str, held: bool) -> None:
        """A long-poll with ``node`` opened (True) or ended (False), in either direction.
        While one is open the link counts as in contact (no pings); its end reports its
        own outcome through ``contact``."""
        count = self._held.get(node, 0) + (1 if held else -1)
        link = self._links.get(node)
        now = self._now()
        if link is not None:
            link.last_traffic = now
        if count > 0:
            self._held[node] = count
        else:
            self._held.pop(node, None)
            if link is not None and not link.failed:  # open until now: the idle clock
                link.last_activity = link.last_ok = now  # starts at its end
            if now + self.settings.ping_interval < self._wake_at:
                self._poke.set()  # its next ping falls due before the planned wake-up

    def forgive(self, now: float) -> None:
        """This process was not running for a while (a stalled loop, a starved or paused
        process): the silence it saw is its own. Every neighbour gets a fresh window, and
        failures of calls that were in flight meanwhile are ignored."""
        self._grace_until = now + self.settings.ping_timeout
        self._forgiven_at = now
        for link in self._links.values():
            link.last_ok = link.last_activity = now
            link.failed = 0
        self.metrics.inc("detector_stalls")

    def tick(self) -> None:
        """Start the pings and reports that are due (called every tick_s)."""
        if self._closed:
            return
        s = self.settings
        now = self._now()
        held = self._held
        for node, link in self._links.items():
            if link.reported:
                continue
            if node in held and not link.failed:  # an open long-poll: in contact
                link.last_activity = link.last_ok = link.last_traffic = now
                continue
            every = s.ping_interval
            if now - link.last_traffic >= 2 * every:  # no long-poll lately: a quiet link
                every *= s.quiet_pings_every
            idle = now - link.last_activity >= every
            if not link.pinging and (idle or link.failed):
                link.pinging = True
                self._spawn(self._ping_one(node, link))
            if (link.failed >= s.failures and not link.reporting
                    and now - link.last_ok >= s.suspect_after):
                link.reporting = True
                silent = now - link.last_ok
                self._spawn(self._report_one(node, link, f"no answer for {silent:.2f} s"))

    def next_tick_in(self, period: float) -> float:
        """Seconds until ``tick`` may have something to start: ``period`` while a link is
        failing, pinging or being reported, else until the earliest ping falls due (a
        link with a long-poll open has none: its end pokes the detector), at least
        ``period`` and at most ``max_sleep_s``."""
        s = self.settings
        now = self._now()
        due = now + s.max_sleep_s
        for node, link in self._links.items():
            if link.reported:
                continue
            if link.failed or link.pinging or link.reporting:
                return period
            if node in self._held:
                continue
            at = link.last_activity + s.ping_interval
            if at >= link.last_traffic + 2 * s.ping_interval:  # quiet by then (see tick)
                at = link.last_activity + s.ping_interval * s.quiet_pings_every
            due = min(due, at)
        return min(max(period, due - now), s.max_sleep_s)

    async def run(self) -> None:
        period = min(self.settings.tick_s, self.settings.ping_interval / 2)
        while True:
            self._poke.clear()
            planned = self.next_tick_in(period)
            self._wake_at = self._now() + planned
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(planned):
                    await self._poke.wait()
            self._check_stall(self._now())
            self.tick()

    def _check_stall(self, now: float) -> None:
        """Our planned wake-up is more than ``stall_after`` overdue: this process was not
        running (a timer is late only when the loop is); forgive, once per gap. Checked
        when the detector wakes and before counting a failed contact, whose call may have
        timed out during the stall while the detector slept."""
        late = now - self._wake_at
        if (self._wake_at and late > self.settings.stall_after
                and now - self._forgiven_at >= self.settings.stall_forgive_gap):
            self.log.info("this agent was stalled; neighbours get a fresh window",
                          late_s=round(late, 2))
            self.forgive(now)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ping_one(self, node: str, link: _Link) -> None:
        self.metrics.inc("heartbeats")
        try:
            await self._ping(node, self.settings.ping_timeout)
        except Exception:  # the client already reported the failed contact
            pass
        finally:
            link.pinging = False

    async def _report_one(self, node: str, link: _Link, reason: str) -> None:
        backoff = self.settings.report_backoff
        try:
            while self._links.get(node) is link and link.failed:
                try:
                    outcome = await self._report(node, reason)
                except Exception as exc:  # coordinator unreachable: keep the report
                    self.log.info("suspicion not delivered yet", suspect=node,
                                  error=str(exc)[:200])
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                self.metrics.inc("suspicions_reported")
                self.outcomes.append((node, outcome))
                self.log.info("suspicion reported", suspect=node, outcome=outcome,
                              reason=reason)
                if outcome == "REFUTED":
                    link.last_ok = self._now()  # alive says the coordinator: fresh window
                else:
                    link.reported = True
                return
        finally:
            link.reporting = False

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
