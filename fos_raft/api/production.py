"""Per-replica soft state about agents: when each was last heard from, and its production
figures (``ReportProduction``). Never replicated: a report costs no Raft command.

Contact: a replica hears from an agent when the agent registers, rejoins or reports its
production (every `REPORT_EVERY_S` seconds, to the replica its client prefers, normally the
leader). A started, alive node this replica has heard from, but not for longer than
`STALE_AFTER_S`, is ``stale``; a replica that never heard from a node does not call it stale
(it does not know). A leader change or a replica restart therefore forgets nothing durable:
the next report (cumulative counters per agent incarnation) restores the totals on the
replica that receives it; the trend has a gap of at most one report interval, and
``fosctl production`` merges every replica's view (the freshest report of each node wins).

The book keeps, per node, the newest report of each incarnation and one sample of its
cumulative totals per report for the last `KEEP_S` seconds; `node_figures` turns that into
per-window figures (the JSON ``GetProduction`` answers).

Link faults: each report lists the links its agent finds down (fos_raft.model.LinkState);
the book keeps the newest list per node, so a link is shown down until its ends' next
reports leave it out (or stop coming: a stale reporter's list is not believed).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.convert import link_fault_to_pb
from fos_raft.model import LinkFault, NodeState, earliest_faults, node_state
from fos_raft.state.core import CoordinatorState

REPORT_EVERY_S = 5.0  # agents' report period (a low rate: batches, not seconds, are the unit)
STALE_AFTER_S = 3 * REPORT_EVERY_S  # no contact for this long: stale (three missed reports)
KEEP_S = 3600.0  # samples kept per node: the floor display's one-hour trend
TREND_BUCKETS = 60
MAX_INCARNATIONS = 16  # per node; older incarnations are folded into a base


@dataclass(slots=True)
class Totals:
    produced: int = 0
    ok: int = 0
    blocked: int = 0
    failed: int = 0
    waiting: dict[str, int] = field(default_factory=dict)

    def add(self, other: Totals) -> Totals:
        waiting = dict(self.waiting)
        for item, n in other.waiting.items():
            waiting[item] = waiting.get(item, 0) + n
        return Totals(self.produced + other.produced, self.ok + other.ok,
                      self.blocked + other.blocked, self.failed + other.failed, waiting)

    def minus(self, other: Totals) -> Totals:
        waiting = {item: max(0, n - other.waiting.get(item, 0))
                   for item, n in self.waiting.items()}
        return Totals(max(0, self.produced - other.produced), max(0, self.ok - other.ok),
                      max(0, self.blocked - other.blocked), max(0, self.failed - other.failed),
                      waiting)


def totals_of(report: pb.ProductionReport) -> Totals:
    return Totals(int(report.batches_produced), int(report.cycles_ok),
                  int(report.cycles_blocked), int(report.cycles_failed),
                  {k: int(v) for k, v in report.cycles_waiting.items()})


@dataclass(slots=True)
class NodeBook:
    produces: str = ""
    base: Totals = field(default_factory=Totals)  # incarnations folded away
    by_incarnation: dict[int, Totals] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=dict)
    scrapped: dict[str, int] = field(default_factory=dict)  # this incarnation's, per input item
    samples: deque[tuple[float, Totals]] = field(default_factory=deque)
    last_report: float = 0.0
    last_increase: float = 0.0
    links_down: tuple[LinkFault, ...] = ()  # as its newest report lists them

    def total(self) -> Totals:
        out = self.base
        for t in self.by_incarnation.values():
            out = out.add(t)
        return out


class ProductionBook:
    """This replica's contact times and production figures, by node id."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.heard_at: dict[str, float] = {}
        self.nodes: dict[str, NodeBook] = {}
        self.reports = 0

    def heard(self, node_id: str) -> None:
        self.heard_at[node_id] = self.clock()

    def contact_age(self, node_id: str) -> float:
        at = self.heard_at.get(node_id)
        return -1.0 if at is None else max(0.0, self.clock() - at)

    def is_stale(self, node_id: str) -> bool:
        return self.contact_age(node_id) > STALE_AFTER_S

    def forget(self, keep: Iterable[str]) -> None:
        """Drop nodes no longer in the catalog."""
        kept = set(keep)
        for d in (self.heard_at, self.nodes):
            for node_id in [n for n in d if n not in kept]:
                del d[node_id]

    def record(self, report: pb.ProductionReport) -> None:
        now = self.clock()
        self.heard(report.node_id)
        self.reports += 1
        book = self.nodes.setdefault(report.node_id, NodeBook())
        before = book.total().produced
        book.produces = report.produces
        book.by_incarnation[int(report.incarnation)] = totals_of(report)
        while len(book.by_incarnation) > MAX_INCARNATIONS:
            oldest = min(book.by_incarnation)
            book.base = book.base.add(book.by_incarnation.pop(oldest))
        book.consumed = {k: int(v) for k, v in report.consumed.items()}
        book.scrapped = {k: int(v) for k, v in report.scrapped.items()}
        book.links_down = tuple(sorted(
            LinkFault(link.supplier, link.consumer, float(link.since_unix))
            for link in report.links_down))
        total = book.total()
        if total.produced > before:
            book.last_increase = now
        book.last_report = now
        book.samples.append((now, total))
        while book.samples and book.samples[0][0] < now - KEEP_S:
            book.samples.popleft()

    def links_down(self) -> list[LinkFault]:
        """Links reported down by an end that still reports (either end's word suffices;
        both ends usually report the link: the earliest ``since`` is kept)."""
        return earliest_faults(link for node_id, book in self.nodes.items()
                               if not self.is_stale(node_id) for link in book.links_down)

    def document(self, since_s: float, replica_id: str) -> dict[str, Any]:
        now = self.clock()
        window = since_s if since_s > 0 else KEEP_S
        return {"replica": replica_id, "now_unix": now, "since_s": window,
                "report_every_s": REPORT_EVERY_S,
                "links_down": [{"supplier": f.supplier, "consumer": f.consumer,
                                "since_unix": f.since_unix} for f in self.links_down()],
                "nodes": {node_id: node_figures(book, now, window)
                          for node_id, book in sorted(self.nodes.items())}}


def _at(times: list[float], samples: list[tuple[float, Totals]], when: float) -> Totals:
    """The cumulative totals at ``when``: the last sample at or before it (zero before the
    first: a node first heard within the window made everything it reports in it)."""
    index = bisect_right(times, when)
    return samples[index - 1][1] if index else Totals()


def node_figures(book: NodeBook, now: float, window: float) -> dict[str, Any]:
    """One node's figures over the last ``window`` seconds (plain JSON data)."""
    start = now - window
    total = book.total()
    samples = list(book.samples)
    times = [at for at, _ in samples]
    first = times[0] if times else now
    base = _at(times, samples, start) if first < start else Totals()
    delta = total.minus(base)
    # down: time in the window not covered by reports (gaps beyond the stale window)
    down = 0.0
    previous = max(start, first)
    for at in times[bisect_right(times, start):]:
        if at - previous > STALE_AFTER_S:
            down += at - previous - REPORT_EVERY_S
        previous = at
    if now - previous > STALE_AFTER_S:
        down += now - previous - REPORT_EVERY_S
    step = window / TREND_BUCKETS
    trend = []
    for i in range(TREND_BUCKETS):
        lo, hi = start + i * step, start + (i + 1) * step
        lo_t = _at(times, samples, lo) if first < lo else Totals()
        hi_t = _at(times, samples, hi)
        trend.append(max(0, hi_t.produced - lo_t.produced))
    return {
        "produces": book.produces,
        "produced_total": total.produced,
        "produced": delta.produced,
        "cycles_ok": delta.ok,
        "cycles_blocked": delta.blocked,
        "cycles_failed": delta.failed,
        "cycles_waiting": dict(sorted(delta.waiting.items())),
        "consumed_total": dict(sorted(book.consumed.items())),
        "scrapped_total": dict(sorted(book.scrapped.items())),
        "down_s": round(down, 1),
        "observed_s": round(min(window, now - first), 1),
        "last_report_unix": book.last_report,
        "last_finished_unix": book.last_increase,
        "trend": trend,
    }


def state_of(state: CoordinatorState, node_id: str, book: ProductionBook) -> NodeState:
    """The node's state word as this replica sees it (registered nodes only)."""
    entry = state.nodes[node_id]
    stale = entry.status.started and entry.status.alive and book.is_stale(node_id)
    return node_state(entry.status, node_id in state.flow.members, stale)


def annotate(infos: list[pb.NodeInfo], state: CoordinatorState, book: ProductionBook) -> None:
    """Fill each NodeInfo's state word, ``started``, contact age and the links down at
    it (this replica's)."""
    faults = book.links_down()
    for info in infos:
        node_id = info.spec.node_id
        entry = state.nodes.get(node_id)
        if entry is None:
            continue
        info.started = entry.status.started
        info.contact_age_s = book.contact_age(node_id)
        info.state = state_of(state, node_id, book).value
        info.links_down.extend(link_fault_to_pb(f) for f in faults
                               if node_id in (f.supplier, f.consumer))
