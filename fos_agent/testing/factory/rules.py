"""The agent's time rules as pure functions of ``now``: which supplier to ask and how long
to wait, the failure detector's link table, the supplier's re-offer table.

The same rules, with the same defaults, as the real agent runtime applies them with its
clock (fos_agent/runtime/inputs.py: supplier order, first long-poll, backup backoff;
fos_agent/runtime/detector.py: pings, holds, suspicion; fos_agent/net/outbox.py: re-offer
backoff), written here without a clock so the simulated agent can run them on virtual
time. What the simulation leaves out of them is listed in docs/experiments.md.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fos_agent.protocol.messages import OfferBatch


@dataclass(frozen=True, slots=True)
class FetchSettings:
    prefetch: int = 2
    inflight: int = 1
    per_request: int = 8
    long_poll_ms: int = 20000
    long_poll_min_ms: int = 4000
    cooldown_s: float = 2.0
    idle_pause_s: float = 0.25
    empty_backoff_s: float = 4.0
    empty_backoff_max_s: float = 16.0


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    ping_interval: float = 2.0
    quiet_pings_every: int = 10
    tick_s: float = 0.5
    max_sleep_s: float = 5.0
    suspect_after: float = 1.5
    failures: int = 2
    ping_timeout: float = 3.0
    report_backoff: float = 0.25


@dataclass(frozen=True, slots=True)
class RetrySettings:
    retry_s: float = 1.0
    retry_cap_s: float = 8.0
    confirm_delay_s: float = 0.05


# ---- input fetching: which supplier, how long ------------------------------------------------


class Answer(enum.Enum):
    SENT = "sent"  # a batch came
    NONE = "none"  # the supplier answered: nothing for us now
    NO_ANSWER = "no answer"  # refused, unreachable, or cut by a flow change


@dataclass(frozen=True, slots=True)
class Supplier:
    node_id: str
    rank: int
    alive: bool


def long_poll_wait_ms(settings: FetchSettings, backups_due: list[float], now: float) -> int:
    """The first supplier's wait: until the earliest backup is due, within
    [long_poll_min_ms, long_poll_ms] (fos_agent.runtime.inputs.long_poll_wait_ms)."""
    floor = min(settings.long_poll_min_ms, settings.long_poll_ms)
    if not backups_due:
        return settings.long_poll_ms
    until_ms = int((min(backups_due) - now) * 1000)
    return max(floor, min(settings.long_poll_ms, until_ms))


@dataclass
class SupplierChoice:
    """One input's supplier bookkeeping: who gave no answer lately (asked last for
    ``cooldown_s``), which backups had nothing (skipped, doubling backoff)."""

    settings: FetchSettings
    failed_at: dict[str, float] = field(default_factory=dict)
    empty: dict[str, tuple[float, float]] = field(default_factory=dict)  # (ask after, backoff)

    def failed(self, s: Supplier, suspected: frozenset[str], now: float) -> bool:
        at = self.failed_at.get(s.node_id)
        return (s.node_id in suspected or not s.alive
                or (at is not None and now - at < self.settings.cooldown_s))

    def order(self, suppliers: Sequence[Supplier], suspected: frozenset[str],
              now: float) -> list[Supplier]:
        """Flow rank order, suppliers that failed lately or are suspected last."""
        return sorted(suppliers, key=lambda s: (self.failed(s, suspected, now), s.rank,
                                                s.node_id))

    def first_wait_ms(self, ordered: Sequence[Supplier], now: float) -> int:
        return long_poll_wait_ms(self.settings,
                                 [self.empty.get(s.node_id, (now, 0.0))[0] for s in ordered[1:]],
                                 now)

    def should_skip(self, index: int, supplier: str, first_answered: bool, now: float) -> bool:
        """A backup that had nothing lately, while the first supplier answers."""
        return bool(index and first_answered
                    and self.empty.get(supplier, (0.0, 0.0))[0] > now)

    def answered(self, index: int, supplier: str, answer: Answer, now: float, *,
                 unreachable: bool = False, refused: bool = False) -> None:
        """How asking ``supplier`` (``index`` in the round's order) ended: no answer at
        all, a refusal, or an answer (a batch or none)."""
        if unreachable:
            self.failed_at[supplier] = now
            return
        if refused:
            return
        self.failed_at.pop(supplier, None)
        if answer is Answer.SENT:
            self.empty.pop(supplier, None)
        elif index and answer is Answer.NONE:
            backoff = self.empty.get(supplier, (0.0, 0.0))[1]
            backoff = min(max(backoff * 2, self.settings.empty_backoff_s),
                          self.settings.empty_backoff_max_s)
            self.empty[supplier] = (now + backoff, backoff)


# ---- the failure detector's link table -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    node: str


@dataclass(frozen=True, slots=True)
class Report:
    node: str
    reason: str


@dataclass(slots=True)
class Link:
    last_ok: float
    last_activity: float
    failed: int = 0
    last_traffic: float = float("-inf")
    pinging: bool = False
    reporting: bool = False
    reported: bool = False


class Links:
    """Neighbour links of one agent (fos_agent.runtime.detector.FailureDetector without
    its tasks and clock). ``tick(now)`` says which pings and reports to start."""

    def __init__(self, node_id: str, settings: DetectorSettings) -> None:
        self.node_id = node_id
        self.settings = settings
        self.links: dict[str, Link] = {}
        self.held: dict[str, int] = {}

    @property
    def period(self) -> float:
        return min(self.settings.tick_s, self.settings.ping_interval / 2)

    def suspected(self) -> frozenset[str]:
        return frozenset(n for n, link in self.links.items() if link.failed)

    def watch(self, alive_neighbours: Iterable[str], now: float) -> None:
        alive = set(alive_neighbours)
        for node in list(self.links):
            if node not in alive:
                del self.links[node]
        for node in sorted(alive):
            if node == self.node_id:
                continue
            link = self.links.get(node)
            if link is None or link.reported:
                self.links[node] = Link(last_ok=now, last_activity=now)

    def contact(self, node: str, ok: bool, now: float) -> bool:
        """An RPC with ``node`` succeeded or got no answer; True: tick soon (it is failing)."""
        link = self.links.get(node)
        if link is None:
            return False
        link.last_activity = now
        if ok:
            link.last_ok = now
            link.failed = 0
            return False
        link.failed += 1
        return link.failed == 1

    def hold(self, node: str, held: bool, now: float) -> None:
        count = self.held.get(node, 0) + (1 if held else -1)
        link = self.links.get(node)
        if link is not None:
            link.last_traffic = now
        if count > 0:
            self.held[node] = count
        else:
            self.held.pop(node, None)
            if link is not None and not link.failed:
                link.last_activity = link.last_ok = now

    def tick(self, now: float) -> list[Ping | Report]:
        s = self.settings
        out: list[Ping | Report] = []
        for node, link in self.links.items():
            if link.reported:
                continue
            if node in self.held and not link.failed:
                link.last_activity = link.last_ok = link.last_traffic = now
                continue
            every = s.ping_interval
            if now - link.last_traffic >= 2 * every:
                every *= s.quiet_pings_every
            idle = now - link.last_activity >= every
            if not link.pinging and (idle or link.failed):
                link.pinging = True
                out.append(Ping(node))
            if (link.failed >= s.failures and not link.reporting
                    and now - link.last_ok >= s.suspect_after):
                link.reporting = True
                out.append(Report(node, f"no answer for {now - link.last_ok:.2f} s"))
        return out

    def next_tick_in(self, now: float) -> float:
        s = self.settings
        period = self.period
        due = now + s.max_sleep_s
        for node, link in self.links.items():
            if link.reported:
                continue
            if link.failed or link.pinging or link.reporting:
                return period
            if node in self.held:
                continue
            at = link.last_activity + s.ping_interval
            if at >= link.last_traffic + 2 * s.ping_interval:
                at = link.last_activity + s.ping_interval * s.quiet_pings_every
            due = min(due, at)
        return min(max(period, due - now), s.max_sleep_s)

    def ping_done(self, node: str) -> None:
        link = self.links.get(node)
        if link is not None:
            link.pinging = False

    def still_suspect(self, node: str, link: Link) -> bool:
        """Is the report about ``link`` still worth sending (retrying)?"""
        return self.links.get(node) is link and link.failed > 0

    def reported(self, node: str, link: Link, outcome: str, now: float) -> None:
        link.reporting = False
        if outcome == "REFUTED":
            link.last_ok = now
        else:
            link.reported = True


# ---- the supplier's re-offers ----------------------------------------------------------------


class Reoffers:
    """Which IN_TRANSIT batches to re-offer at a retry tick: each once it has been in
    transit ``retry_s``, then with doubling backoff up to ``retry_cap_s``."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.due: dict[str, tuple[float, float]] = {}
        self.offering: set[str] = set()

    def kick(self, batch_ids: Iterable[str]) -> None:
        for bid in batch_ids:
            self.due[bid] = (0.0, self.settings.retry_s)

    def tick(self, now: float, offers: Sequence[OfferBatch]) -> list[OfferBatch]:
        start: list[OfferBatch] = []
        alive: set[str] = set()
        s = self.settings
        for msg in offers:
            bid = msg.batch.batch_id
            alive.add(bid)
            if bid not in self.due:
                self.due[bid] = (now + s.retry_s, s.retry_s)
                continue
            due, backoff = self.due[bid]
            if now >= due and bid not in self.offering:
                start.append(msg)
                self.offering.add(bid)
                self.due[bid] = (now + backoff, min(backoff * 2, s.retry_cap_s))
        for bid in [b for b in self.due if b not in alive]:
            del self.due[bid]
        return start

    def done(self, batch_id: str) -> None:
        self.offering.discard(batch_id)
