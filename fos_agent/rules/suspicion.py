"""The neighbour-only failure detector's rules (docs/agent.md, "Failure detector"), as a
pure state machine over the links to the watched neighbours (the caller passes ``now``).

Each agent watches only its flow neighbours that the flow says are alive. Any successful
RPC with a neighbour, in either direction, is a heartbeat (``contact(node, True)``), and
so is a long-poll held open on the link, at either end (``hold``: a consumer's
RequestBatch waiting at its supplier): a SIGKILLed peer's sockets are closed by its
kernel, so the held call fails at once, and that failure is failed contact. A Ping is
due only when the link has been idle for ``ping_interval`` with nothing held (or at once,
every tick, while contact is failing); a link that carried no long-poll for 2 x
``ping_interval`` (a backup supplier's, or a consumer's that buys nothing for now: most
links of a chain with several suppliers per item) only every ``quiet_pings_every`` x
``ping_interval``: pings were most of the messages per traded batch of a large chain
otherwise. The price: a dead quiet neighbour is reported up to 20 s after its death
(nobody waits for it: a consumer turning to a dead backup is refused at once and tries
the next; and a supplier is mostly some consumer's first supplier too, whose long-poll
fails at once), and a peer that hangs without dying (SIGSTOP) with a long-poll open is
noticed when the channel's HTTP/2 keepalive ping goes unanswered (fos_agent.net.client),
not at the end of the long-poll's wait.

A neighbour is suspected when at least ``failures`` consecutive contacts failed and
nothing succeeded for ``suspect_after`` seconds; the suspicion goes to the coordinator
(``ReportSuspect``), which probes the suspect's grpc.health.v1 endpoint before marking it
down, so a false suspicion on a loaded machine costs one probe, not a death. Two failures,
not one: a single slow answer on a loaded machine is common, two in a row much less; a
SIGKILLed peer on loopback refuses at once, so the second failure costs only one tick.

Reports are retried while the coordinator is unreachable (pauses from
``report_retry_after``) and dropped only if the suspect is heard from again (then it was
not dead: ``report_wanted`` turns False). After MARKED_DOWN or ALREADY_DOWN the suspect is
left alone until the flow shows it alive again; after REFUTED it gets a fresh
``suspect_after`` window, and while contact keeps failing it is reported again only after
a backoff (``refuted_backoff``, doubling per refutation up to ``refuted_backoff_max``):
the coordinator reaches it, so the fault is in the link between us, and every report
costs the coordinator a probe and a replicated refutation. Such a link is *down*
(``links_down``: since its contact began failing) until a contact succeeds; the agent
shows it in its production report. Its consumers do not wait for the coordinator
meanwhile: they buy from a backup supplier (fos_agent.rules.fetch).

A process that was itself not running (its tick comes ``stall_after`` late: a stalled
loop, a starved or SIGSTOPped process) judges nobody on the silence it saw meanwhile: every
link gets a fresh window and failures of calls in flight during the stall are ignored
(at most once per ``stall_forgive_gap``: a process starved without end still reports).
On a starved machine this is what turns a burst of refuted suspicions into none.

Defaults: ping 2 s (20 s on quiet links), a Ping deadline of 3 s, a tick every 0.5 s
while a link is failing or a ping is in flight, else a sleep until the next ping falls due
(at most 5 s; a failed contact wakes it at once), suspect after 1.5 s and 2 failures.
A SIGKILLed neighbour with a long-poll open is reported about 1.5 s after its death, one
on an idle link up to a ping interval later; its consumers do not wait for that (they
switch to a backup supplier at the first refused call, fos_agent.rules.fetch).

Contract (the driver, fos_agent.runtime.detector, or a simulation):

- loop: ``delay = next_tick_in(now)``; sleep ``delay`` or until an input method returned
  True (a wake-up); then ``stall(now)`` (it returns how late the tick was when it
  pardoned, for the log) and ``tick(now)``;
- carry out each action ``tick`` returns: ``Ping``: ping the node with a
  ``ping_timeout`` deadline, report the call's outcome through ``contact`` and then call
  ``ping_done(ping)``; ``Report``: report the suspicion to the coordinator while
  ``report_wanted(report)``, pausing ``report_retry_after`` between failed deliveries,
  then ``report_done(report, outcome, now)`` (outcome None: not delivered, dropped);
- before a failed ``contact`` call ``stall(now)`` (the call may have timed out during a
  stall while the detector slept).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

REPORT_BACKOFF_MAX_S = 2.0  # longest pause between deliveries of an undelivered report


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    ping_interval: float = 2.0  # ping a neighbour when the link was idle this long (a
    # trading link's gaps are short; a primary supplier's death is seen by its consumers'
    # next call anyway, the coordinator only re-plans a little later)
    quiet_pings_every: int = 10  # ... or this many ping_intervals when it carried no
    # long-poll for 2 ping_intervals (a backup supplier's link): nobody waits for its death
    tick_s: float = 0.5  # how often links are looked at while something is due or failing
    # (at most ping_interval / 2); otherwise the detector sleeps until the next ping is due
    max_sleep_s: float = 5.0  # ... but at most this long (an idle agent's frequent ticks
    # were one of its most frequent wake-ups; a long-poll's end wakes it when that link's
    # next ping falls due sooner)
    suspect_after: float = 1.5  # failed contact and no success for this long -> suspect
    failures: int = 2  # consecutive failed contacts needed as well
    ping_timeout: float = 3.0  # deadline of one Ping (a dead peer refuses at once: a long
    # deadline costs only a hung peer time, and spares a starved live one a suspicion)
    report_backoff: float = 0.25  # first retry pause of an undelivered report (doubles, <= 2 s)
    stall_after: float = 1.0  # our own tick this late: we were not running; judge nobody
    stall_forgive_gap: float = 5.0  # at most one such pardon per this long (a process
    # starved without end must still find its dead neighbours)
    refuted_backoff: float = 5.0  # a refuted suspect whose contact still fails is reported
    # again only after this long (doubling per refutation, <= refuted_backoff_max): the
    # coordinator reaches it, so the link is at fault, and a report per window was a
    # probe and a replicated command a second per cut link
    refuted_backoff_max: float = 120.0

    @property
    def period(self) -> float:
        """The tick period while something is due or failing."""
        return min(self.tick_s, self.ping_interval / 2)


@dataclass(frozen=True, slots=True)
class Ping:
    """Ping ``node`` now (deadline ``ping_timeout``)."""

    node: str
    link: int  # which watch of the node this is for (a re-watched node is a new link)


@dataclass(frozen=True, slots=True)
class Report:
    """Report ``node`` to the coordinator as suspected."""

    node: str
    reason: str
    link: int


Action = Ping | Report


@dataclass(slots=True)
class _Link:
    serial: int  # tells a re-watched node's link from the one before
    last_ok: float  # last successful contact (or when watching began)
    last_activity: float  # last contact attempt either way
    failed: int = 0  # consecutive failed contacts since last_ok
    last_traffic: float = float("-inf")  # a long-poll last held open on this link
    pinging: bool = False
    reporting: bool = False
    reported: bool = False  # coordinator says it is down: wait for the flow
    incarnation: int = 0  # the one the node last proved by answering at its address
    failing_since: float | None = None  # when the current run of failed contacts began
    refuted: int = 0  # refutations of this run of failed contacts
    quiet_until: float = float("-inf")  # no report before this (the refuted backoff)
    down_since: float | None = None  # refuted while failing: a link fault, since then


def refuted_pause(settings: DetectorSettings, refuted: int) -> float:
    """The pause before a suspect refuted ``refuted`` times in a row (contact failing all
    along) may be reported again: ``refuted_backoff`` doubling, <= ``refuted_backoff_max``."""
    doublings = min(max(0, refuted - 1), 30)
    return min(settings.refuted_backoff * 2 ** doublings, settings.refuted_backoff_max)


def report_retry_after(settings: DetectorSettings, previous: float | None) -> float:
    """The pause before the next delivery of an undelivered report (``previous``: the
    last pause, None for the first): ``report_backoff``, doubling up to 2 s."""
    if previous is None:
        return settings.report_backoff
    return min(previous * 2, REPORT_BACKOFF_MAX_S)


class Suspicion:
    """The link table of one agent's failure detector (module docstring)."""

    def __init__(self, node_id: str, settings: DetectorSettings | None = None) -> None:
        self.node_id = node_id
        self.settings = settings or DetectorSettings()
        self._links: dict[str, _Link] = {}
        self._held: dict[str, int] = {}  # node -> long-polls open with it (either end)
        self._serial = 0
        self._grace_until = 0.0  # failed contacts before this are a stall's, ignored
        self._forgiven_at = float("-inf")
        self._wake_at = 0.0  # the planned wake-up (next_tick_in)

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._links)

    def suspected(self) -> frozenset[str]:
        """Neighbours with failed contact right now (suspected or about to be)."""
        return frozenset(n for n, link in self._links.items() if link.failed)

    def holding(self) -> frozenset[str]:
        """Nodes with a long-poll open on the link right now (either end)."""
        return frozenset(self._held)

    def watch(self, alive_neighbours: Collection[str], now: float) -> bool:
        """The flow changed: watch exactly these (alive) neighbours. Returns True (tick
        now: a new link may be due)."""
        for node in list(self._links):
            if node not in alive_neighbours:
                del self._links[node]
        for node in alive_neighbours:
            if node == self.node_id:
                continue
            link = self._links.get(node)
            if link is None or link.reported:  # new, or back alive after a mark-down
                self._serial += 1
                self._links[node] = _Link(self._serial, last_ok=now, last_activity=now)
        return True

    def contact(self, node: str, ok: bool, now: float) -> bool:
        """An RPC with ``node`` succeeded (ok) or got no answer. Returns True when the
        driver should tick now (the link starts failing: from now on it is pinged and
        judged every period; a wake-up per failure made a failing ping its own loop)."""
        link = self._links.get(node)
        if link is None:
            return False
        link.last_activity = now
        if ok:
            link.last_ok = now
            link.failed = 0
            link.failing_since = link.down_since = None  # healed: no backoff, not down
            link.refuted = 0
            link.quiet_until = float("-inf")
        elif now >= self._grace_until:  # not a call that timed out while we were stalled
            link.failed += 1
            if link.failed == 1:
                link.failing_since = now
            return link.failed == 1
        return False

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

    def hold(self, node: str, held: bool, now: float) -> bool:
        """A long-poll with ``node`` opened (True) or ended (False), in either direction.
        While one is open the link counts as in contact (no pings); its end reports its
        own outcome through ``contact``. Returns True when the driver should tick sooner
        than planned (the link's next ping falls due before the planned wake-up)."""
        count = self._held.get(node, 0) + (1 if held else -1)
        link = self._links.get(node)
        if link is not None:
            link.last_traffic = now
        if count > 0:
            self._held[node] = count
            return False
        self._held.pop(node, None)
        if link is not None and not link.failed:  # open until now: the idle clock
            link.last_activity = link.last_ok = now  # starts at its end
        return now + self.settings.ping_interval < self._wake_at

    def forgive(self, now: float) -> None:
        """This process was not running for a while (a stalled loop, a starved or paused
        process): the silence it saw is its own. Every neighbour gets a fresh window, and
        failures of calls that were in flight meanwhile are ignored."""
        self._grace_until = now + self.settings.ping_timeout
        self._forgiven_at = now
        for link in self._links.values():
            link.last_ok = link.last_activity = now
            link.failed = 0  # a down link stays down (and backed off) until a success

    def stall(self, now: float) -> float | None:
        """The planned wake-up is more than ``stall_after`` overdue: this process was not
        running (a timer is late only when the loop is); forgive, once per
        ``stall_forgive_gap``. Returns how late the wake-up was when it forgave, else
        None."""
        late = now - self._wake_at
        if (self._wake_at and late > self.settings.stall_after
                and now - self._forgiven_at >= self.settings.stall_forgive_gap):
            self.forgive(now)
            return late
        return None

    def tick(self, now: float) -> list[Action]:
        """The pings and reports due now (the driver carries them out: module docstring)."""
        s = self.settings
        actions: list[Action] = []
        for node, link in self._links.items():
            if link.reported:
                continue
            if node in self._held and not link.failed:  # an open long-poll: in contact
                link.last_activity = link.last_ok = link.last_traffic = now
                continue
            every = s.ping_interval
            if now - link.last_traffic >= 2 * every:  # no long-poll lately: a quiet link
                every *= s.quiet_pings_every
            idle = now - link.last_activity >= every
            if not link.pinging and (idle or link.failed):
                link.pinging = True
                actions.append(Ping(node, link.serial))
            if (link.failed >= s.failures and not link.reporting
                    and now - link.last_ok >= s.suspect_after and now >= link.quiet_until):
                link.reporting = True
                silent = now - link.last_ok
                actions.append(Report(node, f"no answer for {silent:.2f} s", link.serial))
        return actions

    def _link(self, node: str, serial: int) -> _Link | None:
        link = self._links.get(node)
        return link if link is not None and link.serial == serial else None

    def ping_done(self, ping: Ping) -> None:
        """The Ping ``tick`` asked for is over (its outcome went through ``contact``)."""
        link = self._link(ping.node, ping.link)
        if link is not None:
            link.pinging = False

    def report_wanted(self, report: Report) -> bool:
        """Is the suspicion still worth delivering (the node is still watched, the same
        link, and contact with it still failing)?"""
        link = self._link(report.node, report.link)
        return link is not None and bool(link.failed)

    def report_done(self, report: Report, outcome: str | None, now: float) -> None:
        """The report is over: the coordinator's ``outcome`` (REFUTED, MARKED_DOWN,
        ALREADY_DOWN, ...) or None (dropped: the node was heard from, or the driver
        stopped). REFUTED: alive says the coordinator, a fresh window; any other outcome:
        left alone until the flow shows it alive again."""
        link = self._link(report.node, report.link)
        if link is None:
            return
        link.reporting = False
        if outcome is None:
            return
        if outcome == "REFUTED":
            link.last_ok = now
            if link.failed:  # still failing: the link, not the node, is at fault
                link.refuted += 1
                link.quiet_until = now + refuted_pause(self.settings, link.refuted)
                if link.down_since is None:
                    since = link.failing_since
                    link.down_since = now if since is None else since
        else:
            link.reported = True

    def links_down(self) -> dict[str, float]:
        """Watched neighbours whose suspicion was refuted while our contact with them
        kept failing (the coordinator reaches them, we do not), each with the time its
        contact began failing. A contact that succeeds ends it."""
        return {node: link.down_since for node, link in sorted(self._links.items())
                if link.down_since is not None and not link.reported}

    def next_tick_in(self, now: float) -> float:
        """Seconds until ``tick`` may have something to do, and records that wake-up
        (``stall`` measures against it): the period while a link is failing, pinging or
        being reported, else until the earliest ping falls due (a link with a long-poll
        open has none: its end wakes the driver), at least the period and at most
        ``max_sleep_s``."""
        s = self.settings
        period = s.period
        due = now + s.max_sleep_s
        delay: float | None = None
        for node, link in self._links.items():
            if link.reported:
                continue
            if link.failed or link.pinging or link.reporting:
                delay = period
                break
            if node in self._held:
                continue
            at = link.last_activity + s.ping_interval
            if at >= link.last_traffic + 2 * s.ping_interval:  # quiet by then (see tick)
                at = link.last_activity + s.ping_interval * s.quiet_pings_every
            due = min(due, at)
        if delay is None:
            delay = min(max(period, due - now), s.max_sleep_s)
        self._wake_at = now + delay
        return delay
