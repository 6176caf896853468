"""The simulated factory: agents, the coordinator and the network on one virtual clock,
the faults as operations, and the checks after a run.

Build it from a catalog and a seeded ``random.Random``; ``start()`` registers the
catalog and starts every agent; faults and maintenance are methods (``kill``,
``restart``, ``partition``, ``heal``, ``drain``, ``undrain``, ``update_spec``,
``outage``), run now or scheduled with ``at``; ``run_until`` advances virtual time.
``finish()`` stops production, ends every fault, lets retries settle and checks: the
invariants I1-I6 (fos_agent.testing.invariants), the audit (0 lost, 0 duplicated,
nothing in transit), and false deaths (a node marked down while its agent ran).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fos_agent.audit import AuditReport, audit_states
from fos_agent.rules.weights import need_shares
from fos_agent.testing.factory.agent import (
    AgentSettings,
    SimAgent,
    StageCode,
    StoreFactory,
    always_succeeds,
)
from fos_agent.testing.factory.clock import Rng, Scheduler, Trace
from fos_agent.testing.factory.coordinator import (
    COORDINATOR,
    CoordinatorSettings,
    SimCoordinator,
)
from fos_agent.testing.factory.network import LinkSettings, SimNetwork
from fos_agent.testing.invariants import WriteMonitor, check_convergence, check_safety
from fos_raft.model import NodeSpec
from fos_raft.state.commands import Command, Drain, Register, Undrain, UpdateSpec


@dataclass(frozen=True, slots=True)
class FactorySettings:
    agent: AgentSettings = field(default_factory=AgentSettings)
    link: LinkSettings = field(default_factory=LinkSettings)
    coordinator: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    leader_outage_s: float = 3.0  # a leader kill: no coordinator for this long
    settle_s: float = 120.0  # the final heal may take this long (virtual)
    keep_trace: bool = False  # keep the trace's lines (a transcript), not only its digest
    seed_catalog: bool = False  # register the catalog in one step (large factories)
    check_every_s: float = 0.0  # also check I1, I5, I6 and persist-before-send this often
    # while running (0: only at the end; each check reads every store)


# (catalog specs, active node ids, consumers) -> (weights, priorities): how a supplier
# weighs its waiting consumers (default: the real agent's, fos_agent.rules.weights);
# None: equal weights, no priorities
Shares = Callable[[Sequence[NodeSpec], Collection[str], Collection[str]],
                  tuple[Mapping[str, float], Mapping[str, float]]]


@dataclass
class Segment:
    """From ``start_s`` on, these nodes were alive and not drained, with these specs."""

    start_s: float
    active: frozenset[str]
    specs: tuple[NodeSpec, ...]


@dataclass
class RunResult:
    ok: bool
    error: str
    duration_s: float
    finished: int  # final products made during the run
    produced: int  # batches produced by every node
    trades: int  # batches delivered (audit)
    messages: int  # RPCs between agents
    coordinator_calls: int  # RPCs to the coordinator (joins, reports)
    commands: int  # coordinator commands that changed the state
    suspicions: int
    refuted: int
    marked_down: int
    false_deaths: list[tuple[float, str]]
    kills: int
    audit: dict[str, int]
    events: int  # scheduler events run
    trace_lines: int
    digest: str
    segments: list[Segment]
    skipped: int
    cycles_ok: int


def final_items(specs: Iterable[NodeSpec]) -> frozenset[str]:
    specs = list(specs)
    required = {r.item for s in specs for r in s.requires}
    return frozenset(s.produces.item for s in specs if s.produces.item not in required)


class Factory:
    def __init__(self, specs: Sequence[NodeSpec], rng: Rng,
                 settings: FactorySettings | None = None,
                 stage: StageCode = always_succeeds,
                 store: StoreFactory | None = None,
                 shares: Shares | None = need_shares) -> None:
        """``store``: makes a node's durable store from its id (default: the test kit's
        in-memory store; fos_agent.testing.walstore.WalStores for the real WAL).
        ``shares``: how suppliers weigh waiting consumers (default: as the real agent
        does, by their shares of the catalog's need; None: equally)."""
        self.settings = settings or FactorySettings()
        self.clock = Scheduler()
        self.trace = Trace(self.clock, keep=self.settings.keep_trace)
        self.rng = rng
        self.net = SimNetwork(self.clock, rng, self.trace, self.settings.link)
        self.coordinator = SimCoordinator(self.clock, self.net, self.trace,
                                          self.settings.coordinator)
        self.monitor = WriteMonitor()
        self.specs = {s.node_id: s for s in specs}
        finals = final_items(specs)
        self.agents: dict[str, SimAgent] = {}
        for spec in specs:
            agent = SimAgent(spec, self.clock, self.net, self.trace, self.monitor,
                             self.settings.agent, spec.produces.item in finals, stage,
                             **({"store": store} if store is not None else {}))
            self.agents[spec.node_id] = agent
            self.coordinator.watchers[spec.node_id] = agent
            if shares is not None:
                agent.weigher = self._weigh
        self._shares = shares
        self._weighed: tuple[int, dict[str, float], dict[str, float]] = (-1, {}, {})
        self.drained: set[str] = set()
        self.segments: list[Segment] = []
        self.kills = 0
        self.finished_at_end = 0
        self.produced_at_end = 0
        self.violation = ""  # the first broken invariant seen while running

    def _weigh(self, consumers: frozenset[str]
               ) -> tuple[dict[str, float], dict[str, float]] | None:
        """The coordinator's catalog read (ListNodes) and weighed; one weighing of every
        node per flow version."""
        c = self.coordinator
        if c.in_outage or self._shares is None:
            return None
        if self._weighed[0] != c.state.version:
            state = c.state
            active = {n for n, e in state.nodes.items()
                      if e.status.alive and not e.status.drained}
            weights, priorities = self._shares(list(state.catalog.values()), active,
                                               sorted(state.nodes))
            self._weighed = (state.version, dict(weights), dict(priorities))
        _, weights, priorities = self._weighed
        return ({n: weights[n] for n in consumers if n in weights},
                {n: priorities[n] for n in consumers if n in priorities})

    # ---- running -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def start(self, agents: Iterable[str] | None = None) -> None:
        """Register the catalog (what ``fosctl apply`` does: one Register command per node,
        or with ``FactorySettings.seed_catalog`` one step) and start the agents."""
        if self.settings.seed_catalog:
            self.coordinator.seed(list(self.specs.values()))
        else:
            for spec in self.specs.values():
                self.coordinator.submit(Register(spec))
        for node_id in sorted(self.agents if agents is None else agents):
            self.agents[node_id].start()
        self._segment()

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        self.clock.at(when, fn, *args)

    def run_until(self, until: float) -> None:
        every = self.settings.check_every_s
        while every > 0 and self.clock.now + every < until:
            self.clock.run_until(self.clock.now + every)
            self.check_now()
        self.clock.run_until(until)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now + seconds)

    def check_now(self) -> None:
        """Check I1, I5, I6 and persist-before-send over every store now; the first
        violation is kept (and fails the run)."""
        if self.violation:
            return
        try:
            check_safety(self.agents)
        except AssertionError as exc:
            self.violation = f"at {self.clock.now:.3f} s: {exc}"
            self.trace.note("sim", f"violation {self.violation}")

    def _segment(self) -> None:
        active = frozenset(n for n, a in self.agents.items() if a.up and n not in self.drained)
        specs = tuple(self.specs[n] for n in sorted(self.specs))
        self.segments.append(Segment(self.clock.now, active, specs))

    # ---- faults and maintenance ----------------------------------------------------------

    def kill(self, node_id: str, mid_step: bool = False) -> None:
        """SIGKILL ``node_id`` now, or (``mid_step``) right after its next step that
        writes and sends was handled, before those writes are durable."""
        agent = self.agents[node_id]
        if mid_step:
            if agent.up:
                agent.crash_at_next_step = partial(self.kill, node_id)
            return
        if agent.up:
            self.kills += 1
            agent.crash()
            self._segment()

    def restart(self, node_id: str) -> None:
        agent = self.agents[node_id]
        agent.crash_at_next_step = None
        if not agent.up:
            agent.start()
            self._segment()

    def partition(self, a: str, b: str) -> None:
        self.trace.note("net", f"partition {a} {b}")
        self.net.partitioned(a, b)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        self.trace.note("net", "heal" if a is None else f"heal {a} {b}")
        cut_from_coordinator = {n for pair in self.net.partitions if COORDINATOR in pair
                                for n in pair if n != COORDINATOR}
        self.net.heal(a, b)
        for node_id in sorted(cut_from_coordinator):
            if not self.net.cut(COORDINATOR, node_id):
                self.coordinator._push_one(node_id)  # its watch stream reconnects

    def command(self, command: Command) -> bool:
        """A fosctl command; False when the coordinator could not take it (an outage)."""
        if self.coordinator.in_outage:
            self.trace.note(COORDINATOR, f"unavailable for {type(command).__name__}")
            return False
        outcome = self.coordinator.submit(command)
        return outcome.error is None

    def drain(self, node_id: str) -> bool:
        ok = self.command(Drain(node_id))
        if ok:
            self.drained.add(node_id)
            self._segment()
        return ok

    def undrain(self, node_id: str) -> bool:
        ok = self.command(Undrain(node_id))
        if ok:
            self.drained.discard(node_id)
            self._segment()
        return ok

    def update_spec(self, spec: NodeSpec) -> bool:
        ok = self.command(UpdateSpec(spec))
        if ok:
            self.specs[spec.node_id] = spec
            self._segment()
        return ok

    def outage(self, seconds: float | None = None) -> None:
        self.coordinator.outage(self.settings.leader_outage_s if seconds is None else seconds)

    # ---- views ---------------------------------------------------------------------------

    def alive(self, node_id: str) -> bool:
        entry = self.coordinator.state.nodes.get(node_id)
        return entry is not None and entry.status.alive

    def flow_edges(self) -> list[tuple[str, str, str, int]]:
        """(consumer, supplier, item, rank) of the current flow, sorted."""
        return sorted((e.consumer, e.supplier, e.item, e.rank)
                      for e in self.coordinator.state.flow.edges)

    @property
    def finished(self) -> int:
        return sum(a.finished for a in self.agents.values())

    # ---- the end ---------------------------------------------------------------------------

    def quiet(self) -> bool:
        return (not self.net.open
                and all(not a.up or (not a._pending and not a.node.outbound_in_transit())
                        for a in self.agents.values()))

    def finish(self) -> RunResult:
        """Stop production, end every fault, let retries settle, check; the result."""
        duration = self.clock.now
        self.finished_at_end = self.finished
        self.produced_at_end = sum(a.figures.produced for a in self.agents.values())
        cycles_ok = sum(a.figures.cycles_ok for a in self.agents.values())
        skipped = sum(a.figures.skipped for a in self.agents.values())
        self.trace.note("sim", "settle: production stops, faults end")
        for agent in self.agents.values():
            agent.quiesce()
            # a mid-step kill still waiting for its step is a fault too: landing while
            # settling, it would leave a node down that nobody restarts
            agent.crash_at_next_step = None
        self.net.heal()
        self.coordinator.outage_until = self.clock.now
        for node_id in sorted(self.agents):
            if not self.agents[node_id].up:
                self.agents[node_id].start()
        self.coordinator.push_all()
        end = self.clock.now + self.settings.settle_s
        while self.clock.now < end:
            self.clock.run_until(self.clock.now + 1.0)
            if self.quiet():
                break
        error = self.violation
        audit: dict[str, int] = {}
        try:
            check_safety(self.agents)
            if not self.quiet():
                report = audit_states({n: a.store.full() for n, a in self.agents.items()})
                audit = _audit_figures(report)
                raise AssertionError("the factory did not settle: " + self._busy())
            audit = _audit_figures(check_convergence(self.agents))
        except AssertionError as exc:
            error = error or str(exc) or "assertion failed"
        fig = self.coordinator.figures
        if not error and fig.false_deaths:
            error = f"false deaths: {fig.false_deaths}"
        messages = sum(v for k, v in self.net.calls.items() if k not in ("join", "suspect"))
        return RunResult(
            ok=not error, error=error, duration_s=duration, finished=self.finished_at_end,
            produced=self.produced_at_end, trades=audit.get("delivered", 0),
            messages=messages,
            coordinator_calls=self.net.calls.get("join", 0) + self.net.calls.get("suspect", 0),
            commands=fig.commands, suspicions=fig.suspicions, refuted=fig.refuted,
            marked_down=fig.marked_down, false_deaths=list(fig.false_deaths),
            kills=self.kills, audit=audit, events=self.clock.events_run,
            trace_lines=self.trace.count, digest=self.trace.digest, segments=self.segments,
            skipped=skipped, cycles_ok=cycles_ok)

    def _busy(self) -> str:
        busy = [f"{n}: {len(a.node.outbound_in_transit())} in transit"
                for n, a in sorted(self.agents.items()) if a.node.outbound_in_transit()]
        return f"{len(self.net.open)} calls open; " + ", ".join(busy[:5])


def _audit_figures(report: AuditReport) -> dict[str, int]:
    """The audit's counts (lists of batch ids counted)."""
    names = ("produced", "consumed", "queued", "in_transit", "lost", "duplicated",
             "inconsistent", "delivered", "reclaimed")
    out: dict[str, int] = {}
    for name in names:
        value = getattr(report, name)
        out[name] = len(value) if isinstance(value, list | set | dict | tuple) else int(value)
    return out
