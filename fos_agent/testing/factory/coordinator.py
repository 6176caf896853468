"""The coordinator cluster as ONE logical replica: the real state machine and planner.

Every command goes through the real ``fos_raft.state.core.apply`` with the real incremental
planner (``fos_raft.planner.Planner.after_change``), so the flow agents see is the flow
the cluster would compute. Raft itself is not simulated: a command commits after
``commit_s``; a leader change is an outage (no command is accepted, no flow is pushed;
agents keep the last flow they saw) of configurable length.

Served calls (from simulated agents, through the simulated network):

- ``join`` (spec): Register a new node, or MarkUp (rejoin) a known one; answers its view;
- ``suspect`` (reporter, suspect, reason): the leader probes the suspect's *true* state
  (its process is up and the coordinator can reach it): refuted (NoteRefuted) or
  MarkDown(suspicion=True); concurrent reports about one suspect share one probe.

The harness submits drains, requirement changes and decommissions directly (what fosctl
does). After every command that changed the flow the new neighbourhood is pushed to each
agent it concerns (WatchFlow), after the link delay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fos_agent.rules.fetch import Supplier
from fos_agent.testing.factory.clock import Scheduler, Trace
from fos_agent.testing.factory.network import Call, SimNetwork
from fos_raft.model import NodeSpec, NodeStatus, Plan, find_item_cycle
from fos_raft.planner.plan import Planner
from fos_raft.state.commands import Command, MarkDown, MarkUp, NoteRefuted, Outcome, Register
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.entry import NodeEntry

COORDINATOR = "coordinator"
UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class View:
    """One agent's neighbourhood (what WatchFlow pushes)."""

    version: int
    known: bool
    in_flow: bool
    alive: bool
    drained: bool
    spec: NodeSpec | None
    suppliers: dict[str, tuple[Supplier, ...]]
    consumers: frozenset[str]
    alive_of: dict[str, bool]


def view_of(state: CoordinatorState, node_id: str) -> View:
    entry = state.nodes.get(node_id)
    by_item: dict[str, list[Supplier]] = {}
    consumers: set[str] = set()
    alive_of: dict[str, bool] = {}
    for edge in state.edges_of(node_id):
        other = edge.supplier if edge.consumer == node_id else edge.consumer
        other_entry = state.nodes.get(other)
        alive_of[other] = other_entry is not None and other_entry.status.alive
        if edge.consumer == node_id:
            by_item.setdefault(edge.item, []).append(
                Supplier(edge.supplier, edge.rank, alive_of[other]))
        if edge.supplier == node_id:
            consumers.add(edge.consumer)
    return View(
        version=state.version, known=entry is not None,
        in_flow=node_id in state.flow.members,
        alive=entry is not None and entry.status.alive,
        drained=entry is not None and entry.status.drained,
        spec=entry.spec if entry is not None else None,
        suppliers={item: tuple(sorted(s, key=lambda x: (x.rank, x.node_id)))
                   for item, s in by_item.items()},
        consumers=frozenset(consumers), alive_of=alive_of)


class Watcher(Protocol):
    """An agent as the coordinator sees it."""

    @property
    def up(self) -> bool: ...
    def on_flow(self, view: View) -> None: ...


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    commit_s: float = 0.005  # one Raft commit
    probe_refused_s: float = 0.15  # a dead suspect: its tries are refused at once
    probe_patience_s: float = 5.0  # an unreachable one: tries time out this long


@dataclass
class CoordinatorFigures:
    commands: int = 0  # accepted commands that changed something
    refused: int = 0
    unavailable: int = 0  # calls answered during an outage
    pushes: int = 0
    suspicions: int = 0
    refuted: int = 0
    marked_down: int = 0
    false_deaths: list[tuple[float, str]] = field(default_factory=list)


class SimCoordinator:
    def __init__(self, clock: Scheduler, net: SimNetwork, trace: Trace,
                 settings: CoordinatorSettings | None = None) -> None:
        self.clock = clock
        self.net = net
        self.trace = trace
        self.settings = settings or CoordinatorSettings()
        self.state = CoordinatorState()
        self.planner = Planner()
        self.watchers: dict[str, Watcher] = {}
        self.figures = CoordinatorFigures()
        self.outage_until = 0.0
        self._ids = 0
        self._probing: dict[str, list[Call]] = {}
        self.generation = 0
        net.endpoints[COORDINATOR] = self

    # ---- Endpoint ------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return True  # replicas answer even without a leader (UNAVAILABLE)

    @property
    def in_outage(self) -> bool:
        return self.clock.now < self.outage_until

    def drop(self, call: Call) -> None:
        for waiting in self._probing.values():
            if call in waiting:
                waiting.remove(call)

    def serve(self, call: Call) -> None:
        if self.in_outage:
            self.figures.unavailable += 1
            self.net.answer(call, UNAVAILABLE)
            return
        if call.kind == "join":
            spec: NodeSpec = call.payload
            self.clock.after(self.settings.commit_s, self._join, call, spec)
        elif call.kind == "suspect":
            self._suspect(call)
        else:
            raise ValueError(f"the coordinator serves no {call.kind!r}")

    # ---- commands ------------------------------------------------------------------------

    def seed(self, specs: Sequence[NodeSpec]) -> None:
        """The catalog registered in one step (what a restored snapshot gives): every node
        alive, one full plan. Registering 10,000 nodes one command at a time re-checks the
        whole catalog per command; the flow a seed gives is the planner's full plan of it."""
        if self.state.nodes:
            raise ValueError("the coordinator already has a catalog")
        for spec in specs:
            spec.validate()
        if len({s.node_id for s in specs}) != len(specs):
            raise ValueError("a node id is listed twice")
        cycle = find_item_cycle(specs)
        if cycle:
            raise ValueError(f"the items form a cycle: {' -> '.join(cycle)}")
        version = len(specs)
        nodes = {s.node_id: NodeEntry(s, NodeStatus(), version, version) for s in specs}
        catalog = {n: e.spec for n, e in nodes.items()}
        status = {n: e.status for n, e in nodes.items()}
        flow = self.planner.full(catalog, status, Plan())
        self.state = CoordinatorState(version=version, nodes=nodes, flow=flow)
        self.figures.commands += 1
        self.trace.note(COORDINATOR, f"v{version} catalog of {len(specs)} nodes")

    def submit(self, command: Command) -> Outcome:
        """Apply one command now (the harness's fosctl; agents' calls come through
        ``serve``). During an outage nothing is accepted: UNAVAILABLE."""
        before = self.state
        self._ids += 1
        state, outcome = apply(before, f"sim-{self._ids}", command, self.planner.after_change)
        if outcome.error is not None:
            self.figures.refused += 1
            self.trace.add(COORDINATOR, f"refused {_show(command)}: {outcome.message}")
            return outcome
        self.state = state
        if outcome.changed:
            self.figures.commands += 1
        if state.version != before.version:
            self.trace.note(COORDINATOR, f"v{state.version} {_show(command)}")
            self._push(before, state, _node_of(command))
        return outcome

    def _join(self, call: Call, spec: NodeSpec) -> None:
        if self.in_outage:
            self.figures.unavailable += 1
            self.net.answer(call, UNAVAILABLE)
            return
        entry = self.state.nodes.get(spec.node_id)
        if entry is None:
            self.submit(Register(spec))
        elif not entry.status.alive:
            self.submit(MarkUp(spec.node_id))
        self.net.answer(call, view_of(self.state, spec.node_id))

    def _suspect(self, call: Call) -> None:
        reporter, suspect, reason = call.payload
        entry = self.state.nodes.get(suspect)
        if entry is None or not entry.status.alive:
            self.net.answer(call, "ALREADY_DOWN")
            return
        self.figures.suspicions += 1
        self.trace.note(COORDINATOR, f"{reporter} suspects {suspect} ({reason})")
        waiting = self._probing.get(suspect)
        if waiting is not None:
            waiting.append(call)
            return
        self._probing[suspect] = [call]
        target = self.watchers.get(suspect)
        reachable = not self.net.cut(COORDINATOR, suspect)
        alive = target is not None and target.up and reachable
        delay = self.settings.commit_s if alive else (
            self.settings.probe_refused_s if reachable else self.settings.probe_patience_s)
        self.clock.after(delay, self._probed, suspect)

    def _probed(self, suspect: str) -> None:
        calls = self._probing.pop(suspect, [])
        target = self.watchers.get(suspect)
        alive = (target is not None and target.up
                 and not self.net.cut(COORDINATOR, suspect))
        if self.in_outage:
            outcome = UNAVAILABLE
        elif alive:
            self.submit(NoteRefuted(suspect))
            self.figures.refuted += 1
            outcome = "REFUTED"
        else:
            self.submit(MarkDown(suspect, "suspected by its neighbours", suspicion=True))
            self.figures.marked_down += 1
            outcome = "MARKED_DOWN"
            if target is not None and target.up:  # alive, but out of our reach
                self.figures.false_deaths.append((self.clock.now, suspect))
                self.trace.note(COORDINATOR, f"false death: {suspect} is alive")
        for call in calls:
            self.net.answer(call, outcome)

    # ---- outages and pushes ----------------------------------------------------------------

    def outage(self, seconds: float) -> None:
        """A leader change: nothing is accepted or pushed for ``seconds``."""
        self.outage_until = max(self.outage_until, self.clock.now + seconds)
        self.trace.note(COORDINATOR, f"outage for {seconds:g} s")
        self.clock.at(self.outage_until, self._outage_over)

    def _outage_over(self) -> None:
        if self.in_outage:
            return
        self.trace.note(COORDINATOR, "leader elected")
        self.push_all()  # the watch streams reconnect and get the current flow

    def push_all(self) -> None:
        for node_id in sorted(self.watchers):
            self._push_one(node_id)

    def _push(self, before: CoordinatorState, after: CoordinatorState, changed: str) -> None:
        if self.in_outage:
            return
        # the planner keeps the Edge objects of what it did not re-plan: the edges that are
        # not the same objects are the change (an equal edge made anew only costs a push)
        old_ids = {id(e) for e in before.flow.edges}
        new_ids = {id(e) for e in after.flow.edges}
        touched = {changed}
        for edges, other in ((before.flow.edges, new_ids), (after.flow.edges, old_ids)):
            for e in edges:
                if id(e) not in other:
                    touched.add(e.supplier)
                    touched.add(e.consumer)
        for e in (*before.edges_of(changed), *after.edges_of(changed)):
            touched.add(e.supplier)
            touched.add(e.consumer)
        for node_id in sorted(touched):
            self._push_one(node_id)

    def _push_one(self, node_id: str) -> None:
        watcher = self.watchers.get(node_id)
        if watcher is None or not watcher.up or self.net.cut(COORDINATOR, node_id):
            return
        self.figures.pushes += 1
        view = view_of(self.state, node_id)
        self.clock.after(self.net.settings.delay_s, _deliver, watcher, view)


def _deliver(watcher: Watcher, view: View) -> None:
    if watcher.up:
        watcher.on_flow(view)


def _node_of(command: Command) -> str:
    spec = getattr(command, "spec", None)
    if spec is not None:
        return str(spec.node_id)
    return str(getattr(command, "node_id", "") or getattr(command, "suspect", ""))


def _show(command: Command) -> str:
    return f"{type(command).__name__} {_node_of(command)}".rstrip()

