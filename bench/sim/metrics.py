"""Bookkeeping of a fos-sim run (pure: times are arguments, no I/O).

- `CounterBook`: agents' Stats() counters, which reset on every restart, summed across
  incarnations (the maximum seen in each incarnation, since counters only grow within one).
- `DeathLedger`: classifies the coordinator's declared deaths as true or false; the harness
  knows when it killed and restarted every node.
- `RerouteTracker`: time from the SIGKILL of a supplier to each of its consumers' first batch
  received from another supplier of the same item (wall-clock times: the agents stamp
  their receipts with theirs, on the same machine).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Per-supplier counters an agent's Stats() exposes (the harness's request to fos_agent):
# how many batches this node received from <supplier>, and the wall time of the last one.
RECEIVED_FROM_PREFIX = "batches_received_from:"
RECEIVED_AT_PREFIX = "last_received_from_at:"
# Wall time (unix s) of an agent incarnation's first output: a time, never summed.
FIRST_OUTPUT_AT = "first_output_at"
# Wall time (unix s) an agent took its part of the first-article plan: a time, never summed.
PLAN_TAKEN_AT = "plan_taken_at"
TIMES = (FIRST_OUTPUT_AT, PLAN_TAKEN_AT)
# A restarted agent may take this long to rejoin; a death declared in that window is true.
REJOIN_GRACE_S = 3.0


@dataclass
class NodeRecord:
    """What the harness saw of one node across its incarnations."""

    by_incarnation: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)
    in_flow: bool = False
    ever_in_flow: bool = False
    flow_version: int = 0
    incarnation: int = 0
    last_seen_s: float | None = None
    queued_outbound: int = 0
    queued_inbound: int = 0

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for counters in self.by_incarnation.values():
            for name, value in counters.items():
                if not name.startswith(RECEIVED_AT_PREFIX) and name not in TIMES:
                    out[name] = out.get(name, 0.0) + value
        return out


class CounterBook:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.baseline: dict[str, dict[str, float]] = {}

    def mark_baseline(self) -> None:
        """Count from now on: agents start working before the run's clock starts (they come
        up one by one), and what they did before must not count in the run's figures."""
        self.baseline = {node: rec.totals() for node, rec in self.nodes.items()}

    def record(
        self,
        node: str,
        start: int,
        incarnation: int,
        counters: Mapping[str, float],
        t_s: float,
        *,
        in_flow: bool = False,
        flow_version: int = 0,
        queued_outbound: int = 0,
        queued_inbound: int = 0,
    ) -> None:
        """One Stats() answer. ``start`` counts the harness's starts of this node's process, so
        a restart is a new incarnation even if the agent's own number did not move."""
        rec = self.nodes.setdefault(node, NodeRecord())
        slot = rec.by_incarnation.setdefault((start, incarnation), {})
        for name, value in counters.items():
            if value > slot.get(name, float("-inf")):
                slot[name] = float(value)
        rec.in_flow = in_flow
        rec.ever_in_flow = rec.ever_in_flow or in_flow
        rec.flow_version = max(rec.flow_version, flow_version)
        rec.incarnation = incarnation
        rec.last_seen_s = t_s
        rec.queued_outbound = queued_outbound
        rec.queued_inbound = queued_inbound

    def totals(self, node: str) -> dict[str, float]:
        """Counters summed over incarnations, minus the baseline."""
        rec = self.nodes.get(node)
        if not rec:
            return {}
        base = self.baseline.get(node, {})
        return {k: v - base.get(k, 0.0) for k, v in rec.totals().items()}

    def current(self, node: str) -> dict[str, float]:
        """Counters of the newest incarnation seen (for reroute detection)."""
        rec = self.nodes.get(node)
        if not rec or not rec.by_incarnation:
            return {}
        return rec.by_incarnation[max(rec.by_incarnation)]

    def metric_names(self) -> list[str]:
        names = {n for rec in self.nodes.values() for n in rec.totals()}
        return sorted(names)


def first_output_s(counters: Mapping[str, float], t0_unix: float) -> float | None:
    """Seconds from the run's start (``t0_unix``, wall clock) to the first output an agent
    stamped in ``counters`` (None if none yet). Stamped by the agent itself, so precise
    whatever the polling period (polls every second made the first product up to a second
    late, every 5 s up to 5 s)."""
    at = counters.get(FIRST_OUTPUT_AT, 0.0)
    return at - t0_unix if at > 0 else None


@dataclass
class StatsSchedule:
    """Which agents' Stats() the harness reads at ``now``: everyone every ``full_every_s``,
    the final items' producers (products, reroutes) every ``final_every_s`` in between; a
    full read counts as a final read too."""

    full_every_s: float
    final_every_s: float
    next_full_s: float = 0.0
    next_final_s: float = 0.0

    def due(self, now: float) -> tuple[bool, bool]:
        """(read everyone, read the final producers) at ``now``; records the reads."""
        if now >= self.next_full_s:
            self.next_full_s = now + self.full_every_s
            self.next_final_s = now + self.final_every_s
            return True, True
        if now >= self.next_final_s:
            self.next_final_s = now + self.final_every_s
            return False, True
        return False, False


@dataclass(frozen=True, slots=True)
class Declaration:
    node: str
    seen_down_s: float  # first poll that showed the node down
    last_up_s: float  # the poll before, which still showed it alive
    true_death: bool


@dataclass
class DeathLedger:
    """Kill/restart times per node, and the coordinator's declared deaths checked against them."""

    grace_s: float = REJOIN_GRACE_S
    dead_intervals: dict[str, list[list[float]]] = field(default_factory=dict)
    declarations: list[Declaration] = field(default_factory=list)
    _coord_alive: dict[str, tuple[bool, float]] = field(default_factory=dict)

    def killed(self, node: str, t_s: float) -> None:
        self.dead_intervals.setdefault(node, []).append([t_s, float("inf")])

    def restarted(self, node: str, t_s: float) -> None:
        intervals = self.dead_intervals.get(node)
        if intervals and intervals[-1][1] == float("inf"):
            intervals[-1][1] = t_s + self.grace_s

    def was_dead_between(self, node: str, start_s: float, end_s: float) -> bool:
        return any(a <= end_s and start_s <= b for a, b in self.dead_intervals.get(node, ()))

    def observe(self, node: str, alive: bool, t_s: float) -> Declaration | None:
        """One coordinator liveness reading; returns a declaration on an alive -> down edge."""
        before = self._coord_alive.get(node)
        self._coord_alive[node] = (alive, t_s)
        if before is None or alive or not before[0]:
            return None
        last_up = before[1]
        decl = Declaration(node, t_s, last_up, self.was_dead_between(node, last_up, t_s))
        self.declarations.append(decl)
        return decl

    @property
    def declared(self) -> int:
        return len(self.declarations)

    @property
    def false(self) -> int:
        return sum(1 for d in self.declarations if not d.true_death)


@dataclass
class _PendingReroute:
    consumer: str
    item: str
    supplier: str
    killed_s: float
    baseline: dict[str, float]  # received-from counts per other supplier at the kill


@dataclass
class RerouteTracker:
    """Reroute time of (consumer, item) after its supplier's SIGKILL."""

    pending: list[_PendingReroute] = field(default_factory=list)
    durations_s: list[float] = field(default_factory=list)
    abandoned: int = 0  # the consumer died, or the run ended first
    recovered: int = 0  # the killed supplier came back before the consumer rerouted

    def supplier_killed(
        self,
        supplier: str,
        t_s: float,
        consumers: Mapping[str, str],
        counters_of: Mapping[str, Mapping[str, float]],
    ) -> None:
        """``consumers``: consumer -> item it took from ``supplier`` in the flow at the kill;
        ``counters_of``: each consumer's current counters (the baseline)."""
        for consumer, item in sorted(consumers.items()):
            self.pending = [p for p in self.pending if (p.consumer, p.item) != (consumer, item)]
            base = {
                k: v
                for k, v in counters_of.get(consumer, {}).items()
                if k.startswith(RECEIVED_FROM_PREFIX)
            }
            self.pending.append(_PendingReroute(consumer, item, supplier, t_s, base))

    def supplier_restarted(self, supplier: str) -> None:
        """The killed supplier is back: a later receipt from another supplier would no
        longer measure a reroute, so its pending reroutes end here (counted as recovered)."""
        keep = [p for p in self.pending if p.supplier != supplier]
        self.recovered += len(self.pending) - len(keep)
        self.pending = keep

    def consumer_died(self, consumer: str) -> None:
        keep = [p for p in self.pending if p.consumer != consumer]
        self.abandoned += len(self.pending) - len(keep)
        self.pending = keep

    def observe(
        self,
        consumer: str,
        counters: Mapping[str, float],
        t_s: float,
        suppliers_of_item: Mapping[str, Iterable[str]],
        receipts: Iterable[tuple[str, str, float]] = (),
    ) -> list[float]:
        """A Stats() reading of ``consumer`` at ``t_s``; returns reroute times completed by it.

        Times are wall-clock seconds, the agents' clock (same machine). ``receipts``:
        (supplier, item, time) of recent batches received, which give the exact first
        receipt; without one, the per-supplier counters show that a receipt happened, and
        its time is the counter's last-receipt time or, failing that, ``t_s``."""
        receipts = list(receipts)
        done: list[float] = []
        keep: list[_PendingReroute] = []
        for p in self.pending:
            if p.consumer != consumer:
                keep.append(p)
                continue
            exact = [
                at for supplier, item, at in receipts
                if item == p.item and supplier != p.supplier and at >= p.killed_s
            ]  # fmt: skip
            finished_at = min(exact) if exact else None
            for other in suppliers_of_item.get(p.item, ()):
                if finished_at is not None or other == p.supplier:
                    continue
                key = RECEIVED_FROM_PREFIX + other
                if counters.get(key, 0.0) > p.baseline.get(key, 0.0):
                    at = counters.get(RECEIVED_AT_PREFIX + other)
                    when = at if at is not None and p.killed_s <= at <= t_s else t_s
                    finished_at = when if finished_at is None else min(finished_at, when)
            if finished_at is None:
                keep.append(p)
            else:
                done.append(finished_at - p.killed_s)
        self.pending = keep
        self.durations_s.extend(done)
        return done

    def finish(self) -> None:
        self.abandoned += len(self.pending)
        self.pending = []
