"""Timed fault/maintenance events of a fos-sim run and the pure state they act on.

`Timeline` is what the harness believes about the world (which agents it killed, which nodes
are drained, which coordinator replicas are down); it refuses events that make no sense
(restart a live node, kill the last supplier of an item) with a `ScenarioError` saying why.
`plan_events` merges scripted events with the seeded Poisson kill/restart schedule of
``--failure-rate`` / ``--recover-rate`` and periodic coordinator leader kills. No I/O, no clock.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fos_raft.model import NodeSpec


class ScenarioError(ValueError):
    """A scenario or option that cannot run; the message says what and where, for a human."""


class Action(enum.Enum):
    KILL = "kill"  # SIGKILL the agent process of `node`
    RESTART = "restart"  # start it again on its own data dir
    DRAIN = "drain"
    UNDRAIN = "undrain"
    UPDATE_SPEC = "update-spec"  # `spec` replaces the node's spec (same id)
    ADD_NODE = "add-node"  # register `spec` and start its agent
    KILL_LEADER = "kill-leader"  # SIGKILL the coordinator replica that leads at that moment
    RESTART_REPLICA = "restart-replica"  # restart a killed replica (`replica`, or the earliest)


NODE_ACTIONS = frozenset(
    {Action.KILL, Action.RESTART, Action.DRAIN, Action.UNDRAIN, Action.UPDATE_SPEC, Action.ADD_NODE}
)


@dataclass(frozen=True, slots=True)
class SimEvent:
    at_s: float
    action: Action
    node: str = ""
    spec: NodeSpec | None = None
    replica: int | None = None
    origin: str = "scenario"  # "scenario", "rate" (Poisson schedule) or "leader-kill"

    def describe(self) -> str:
        what = self.action.value
        if self.action in NODE_ACTIONS:
            what += f" {self.node}"
        if self.replica is not None:
            what += f" replica {self.replica}"
        if self.spec is not None and self.action is Action.UPDATE_SPEC:
            needs = ",".join(str(r) for r in self.spec.requires) or "nothing"
            what += f" -> makes {self.spec.produces} from {needs}"
        return what


@dataclass
class Timeline:
    """The harness's model of the run: catalog, killed agents, drained nodes, dead replicas."""

    specs: dict[str, NodeSpec]
    replicas: int = 3
    allow_unviable: bool = False
    dead: set[str] = field(default_factory=set)
    drained: set[str] = field(default_factory=set)
    dead_replicas: int = 0
    # node -> every node of its host process (a kill or restart takes them all); default alone
    groups: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        specs: Iterable[NodeSpec],
        replicas: int = 3,
        allow_unviable: bool = False,
        groups: Iterable[Iterable[str]] = (),
    ) -> Timeline:
        timeline = cls({s.node_id: s for s in specs}, replicas, allow_unviable)
        for group in groups:
            members = frozenset(group)
            for node in members:
                timeline.groups[node] = members
        return timeline

    def group(self, node: str) -> frozenset[str]:
        """The nodes that live and die with ``node`` (its host process)."""
        return self.groups.get(node, frozenset({node}))

    def active(self) -> frozenset[str]:
        """Nodes that may trade: alive and not drained."""
        return frozenset(n for n in self.specs if n not in self.dead and n not in self.drained)

    def starved_items(self, active: Iterable[str]) -> list[str]:
        """Item types some node requires (or the chain makes) with no active supplier."""
        active = set(active)
        produced = {self.specs[n].produces.item for n in active}
        wanted = {s.produces.item for s in self.specs.values()}
        return sorted(wanted - produced)

    def can_remove(self, nodes: str | Iterable[str]) -> bool:
        """Whether killing/draining ``nodes`` leaves every item with an active supplier."""
        gone = {nodes} if isinstance(nodes, str) else set(nodes)
        return self.allow_unviable or not self.starved_items(self.active() - gone)

    def check(self, event: SimEvent) -> None:
        """Raise ScenarioError if ``event`` cannot happen in the current state."""
        a, node = event.action, event.node
        where = f"t={event.at_s:g}s {event.describe()}"
        if a in NODE_ACTIONS and a is not Action.ADD_NODE and node not in self.specs:
            raise ScenarioError(f"{where}: unknown node {node!r}")
        if a is Action.KILL:
            if node in self.dead:
                raise ScenarioError(f"{where}: {node} is already dead")
            if not self.can_remove(self.group(node)):
                starved = self.starved_items(self.active() - self.group(node))
                raise ScenarioError(
                    f"{where}: would leave no live supplier of {', '.join(starved)} "
                    "(allow with --allow-unviable / allow_unviable = true)"
                )
        elif a is Action.RESTART and node not in self.dead:
            raise ScenarioError(f"{where}: {node} is not dead (kill it first)")
        elif a is Action.DRAIN:
            if node in self.drained:
                raise ScenarioError(f"{where}: {node} is already drained")
            if node not in self.dead and not self.can_remove(node):
                starved = self.starved_items(self.active() - {node})
                raise ScenarioError(
                    f"{where}: would leave no active supplier of {', '.join(starved)} "
                    "(allow with --allow-unviable / allow_unviable = true)"
                )
        elif a is Action.UNDRAIN and node not in self.drained:
            raise ScenarioError(f"{where}: {node} is not drained")
        elif a is Action.UPDATE_SPEC:
            if event.spec is None or event.spec.node_id != node:
                raise ScenarioError(f"{where}: needs a spec for {node}")
        elif a is Action.ADD_NODE:
            if event.spec is None or not node or event.spec.node_id != node:
                raise ScenarioError(f"{where}: needs a node id and a spec")
            if node in self.specs:
                raise ScenarioError(f"{where}: {node} is already in the catalog")
        elif a is Action.KILL_LEADER:
            majority_lost = self.dead_replicas + 1 > (self.replicas - 1) // 2
            if majority_lost and not self.allow_unviable:
                raise ScenarioError(
                    f"{where}: {self.dead_replicas} of {self.replicas} replicas are already "
                    "down; another kill loses the majority (allow with --allow-unviable)"
                )
            if self.dead_replicas >= self.replicas:
                raise ScenarioError(f"{where}: every replica is already down")
        elif a is Action.RESTART_REPLICA and self.dead_replicas == 0:
            raise ScenarioError(f"{where}: no coordinator replica is down")
        if event.spec is not None:
            try:
                event.spec.validate()
            except ValueError as e:
                raise ScenarioError(f"{where}: {e}") from None

    def apply(self, event: SimEvent) -> None:
        self.check(event)
        a, node = event.action, event.node
        if a is Action.KILL:
            self.dead |= self.group(node)
        elif a is Action.RESTART:
            self.dead -= self.group(node)
        elif a is Action.DRAIN:
            self.drained.add(node)
        elif a is Action.UNDRAIN:
            self.drained.discard(node)
        elif a in (Action.UPDATE_SPEC, Action.ADD_NODE):
            assert event.spec is not None
            self.specs[node] = event.spec
        elif a is Action.KILL_LEADER:
            self.dead_replicas += 1
        elif a is Action.RESTART_REPLICA:
            self.dead_replicas -= 1


@dataclass(frozen=True, slots=True)
class Schedule:
    events: tuple[SimEvent, ...]
    skipped_kills: int  # Poisson kills dropped because no node could die without starving an item
    skipped_restarts: int  # Poisson restarts dropped because no rate-killed node was down


def poisson_times(rate_per_min: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival times of a Poisson process of ``rate_per_min`` events per minute in [0, duration)."""
    per_s = rate_per_min / 60.0
    if per_s <= 0:  # also a rate so small that it underflows
        return []
    times, t = [], 0.0
    while True:
        t += rng.expovariate(per_s)
        if t >= duration_s:
            return times
        times.append(t)


def plan_events(
    specs: Sequence[NodeSpec],
    duration_s: float,
    scripted: Sequence[SimEvent] = (),
    *,
    failure_rate: float = 0.0,
    recover_rate: float = 0.0,
    coordinator_kill_every: float = 0.0,
    replicas: int = 3,
    seed: int = 0,
    allow_unviable: bool = False,
    groups: Iterable[Iterable[str]] = (),
) -> Schedule:
    """Merge ``scripted`` events with seeded random kills/restarts, validated in time order.

    Random kills pick uniformly among active nodes whose loss keeps every item supplied
    (unless ``allow_unviable``); random restarts bring back the longest-dead randomly killed
    node. ``groups`` are nodes sharing a host process: a kill or restart takes the whole
    group, and random kills pick among whole groups. Nodes named by scripted events (and
    their groups) are left to the script. Leader kills happen every
    ``coordinator_kill_every`` seconds, each followed by a restart of that replica half a
    period (at most 10 s) later. Raises ScenarioError for an impossible scripted event.
    """
    for name, value in (("--failure-rate", failure_rate), ("--recover-rate", recover_rate)):
        if value < 0:
            raise ScenarioError(f"{name} must be >= 0 per minute, got {value:g}")
    if coordinator_kill_every < 0:
        raise ScenarioError("--coordinator-kill-every must be >= 0 seconds")
    kill_rng = random.Random(f"{seed}:kills")
    pick_rng = random.Random(f"{seed}:victims")
    candidates: list[SimEvent] = list(scripted)
    candidates += [
        SimEvent(t, Action.KILL, origin="rate")
        for t in poisson_times(failure_rate, duration_s, kill_rng)
    ]
    candidates += [
        SimEvent(t, Action.RESTART, origin="rate")
        for t in poisson_times(recover_rate, duration_s, random.Random(f"{seed}:restarts"))
    ]
    if coordinator_kill_every > 0:
        delay = min(coordinator_kill_every / 2, 10.0)
        t = coordinator_kill_every
        while t < duration_s:
            candidates.append(SimEvent(t, Action.KILL_LEADER, origin="leader-kill"))
            if t + delay < duration_s:
                candidates.append(SimEvent(t + delay, Action.RESTART_REPLICA, origin="leader-kill"))
            t += coordinator_kill_every
    # stable sort: scripted events first among equal times, in file order
    candidates.sort(key=lambda e: (e.at_s, e.origin != "scenario"))
    timeline = Timeline.of(specs, replicas, allow_unviable, groups)
    scripted_nodes = {n for e in scripted if e.node for n in timeline.group(e.node)}
    rate_killed: list[str] = []
    events: list[SimEvent] = []
    skipped_kills = skipped_restarts = 0
    for event in candidates:
        if event.origin == "rate" and event.action is Action.KILL:
            victims = sorted(
                {
                    min(timeline.group(n))  # one representative per host process
                    for n in timeline.active() - scripted_nodes
                    if not timeline.group(n) & (timeline.dead | scripted_nodes)
                    and timeline.can_remove(timeline.group(n))
                }
            )
            if not victims:
                skipped_kills += 1
                continue
            event = SimEvent(event.at_s, Action.KILL, pick_rng.choice(victims), origin="rate")
            rate_killed.append(event.node)
        elif event.origin == "rate" and event.action is Action.RESTART:
            if not rate_killed:
                skipped_restarts += 1
                continue
            event = SimEvent(event.at_s, Action.RESTART, rate_killed.pop(0), origin="rate")
        elif event.origin == "leader-kill":
            try:
                timeline.check(event)
            except ScenarioError:
                continue  # scripted replica kills already hold the majority's slack
        timeline.apply(event)
        events.append(event)
    return Schedule(tuple(events), skipped_kills, skipped_restarts)
