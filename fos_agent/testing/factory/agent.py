"""A simulated agent: the real protocol ``Node`` over a durable store, with the agent
runtime's behaviour over time on virtual time.

- Durability: every step's writes go into a commit queue made durable as one group
  ``commit_s`` later (the group committer), in order; a step's messages and reply leave
  only after that (persist, then send). A crash drops the queue: "effects applied up to
  a crash point". A restart rebuilds the node from the store (``Node.recover``) and
  trades on the flow it saw last (saved) until the coordinator answers its join.
- Stage: one worker; a cycle starts when every input is QUEUED and the output has room
  (``output_cap``, not for a sink), holds its inputs for ``cycle_s``, then runs the stage
  code and steps ``Produce``; every full ``cycle_s`` spent waiting is a skipped cycle.
- The parts, each its own module: input fetching (``fetching``), serving requests
  (``serving``), confirmations and re-offers (``outbox``), the failure detector
  (``detector``).
- Coordinator side: join (register or rejoin) at start, retried while unavailable;
  follow the pushed flow; rejoin when the flow says we are down while running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import Effects, Event, FlowChanged, Produce
from fos_agent.protocol.records import Batch, DurableState, Write
from fos_agent.rules.fetch import FetchSettings, target
from fos_agent.rules.share import settle_wait
from fos_agent.rules.suspicion import DetectorSettings
from fos_agent.testing.factory.clock import Scheduler, Timer, Trace
from fos_agent.testing.factory.coordinator import COORDINATOR, View
from fos_agent.testing.factory.detector import SimDetector
from fos_agent.testing.factory.fetching import Fetcher
from fos_agent.testing.factory.network import Call, SimNetwork
from fos_agent.testing.factory.outbox import SimOutbox
from fos_agent.testing.factory.serving import Server
from fos_agent.testing.invariants import Store, WriteMonitor
from fos_agent.testing.sim import MemoryStore
from fos_raft.model import NodeSpec

StageCode = Callable[[str, Sequence[Batch]], bool]
BRIEF = 0.02  # a wait this short (x cycle_s) after a cycle is bookkeeping, not a break


def always_succeeds(node_id: str, inputs: Sequence[Batch]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class AgentSettings:
    cycle_s: float = 1.0
    output_cap: int = 1  # unsold QUEUED outputs before the stage pauses (not for sinks)
    commit_s: float = 0.002  # one group commit (the fsync)
    rpc_timeout: float = 2.0
    coordinator_timeout: float = 5.0
    retry_s: float = 1.0  # re-offer a batch in transit after this long (then backoff)
    retry_cap_s: float = 8.0
    confirm_delay_s: float = 0.05  # a confirmation waits this long for a request to ride on
    fetch: FetchSettings = field(default_factory=FetchSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)


@dataclass
class AgentFigures:
    cycles_ok: int = 0
    cycles_failed: int = 0  # the stage code said no
    skipped: int = 0  # cycle slots spent waiting for inputs or room
    produced: int = 0
    requests: int = 0
    crashes: int = 0


Then = Callable[[list[Effects]], None]


class DurableStore(Store, Protocol):
    """A node's durable records: the test kit's MemoryStore (default) or the real WAL
    (fos_agent.testing.walstore.WalStore)."""

    def apply(self, writes: Sequence[Write]) -> None: ...
    def restart(self) -> DurableState: ...
    def settled_inbound(self, batch_id: str) -> str | None: ...
    def settled_request(self, consumer: str, request_id: str) -> Batch | None: ...


StoreFactory = Callable[[str], DurableStore]
# consumers -> (weights, priorities) from the coordinator's catalog (its ListNodes), or
# None while it cannot answer
Weigher = Callable[[frozenset[str]], tuple[dict[str, float], dict[str, float]] | None]
SHARES_RETRY_S = 5.0  # the coordinator could not answer: ask again this much later


class SimAgent:
    def __init__(self, spec: NodeSpec, clock: Scheduler, net: SimNetwork, trace: Trace,
                 monitor: WriteMonitor, settings: AgentSettings, is_sink: bool,
                 stage: StageCode = always_succeeds,
                 store: StoreFactory = MemoryStore) -> None:
        self.spec = spec
        self.node_id = spec.node_id
        self.config = NodeConfig(spec.node_id, spec.produces, spec.requires,
                                 immediate_arrival=True)
        self.clock = clock
        self.net = net
        self.trace = trace
        self.monitor = monitor
        self.settings = settings
        self.is_sink = is_sink
        self.stage_code = stage
        self.store: DurableStore = store(spec.node_id)
        self.node = Node(self.config, self.store.durable.copy(), self.store)
        self.decommissioned = False
        self.up = False
        self.generation = 0
        self.started_once = False
        self.view: View | None = None  # the last flow seen (saved: survives a crash)
        self.figures = AgentFigures()
        self.finished = 0  # final products made (a sink's outputs)
        self.quiescing = False  # the run is over: no new cycle, no new request
        # a kill waiting for the next step that writes and sends: it lands after that step
        # was handled and before its writes are durable (its messages must not have left)
        self.crash_at_next_step: Callable[[], None] | None = None
        self.weigher: Weigher | None = None  # set by the factory (fos_agent.rules.weights)
        net.endpoints[self.node_id] = self
        self._reset()

    def _reset(self) -> None:
        """What a process holds in memory only (a crash loses it)."""
        self._pending: list[tuple[list[Effects], Then | None]] = []
        self._flush_due = False
        self._wake_due = False
        self._cycling = False
        self._idle_since = self.clock.now
        self._carry = 0.0
        self.fetchers = {r.item: Fetcher(self, r.item) for r in self.config.requires}
        self.server = Server(self)
        self.outbox = SimOutbox(self)
        self.detector = SimDetector(self)
        self._last_rejoin = float("-inf")
        self._joined = False
        self._shares_due = False
        self._moved_at = 0.0  # the flow first moved since the weights were last asked for
        self._last_move = 0.0

    # ---- scheduling, guarded by incarnation: a dead process's timers do nothing ----------

    def later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.clock.after(delay, self._guard, self.generation, fn, args)

    def timer(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return self.clock.timer(delay, self._guard, self.generation, fn, args)

    def _guard(self, gen: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self.up and gen == self.generation:
            fn(*args)

    def call(self, dst: str, kind: str, payload: Any, timeout: float,
             on_done: Callable[[Any], None]) -> Call:
        return self.net.call(self.node_id, dst, kind, payload, timeout, on_done)

    # ---- life -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or restart from the store): recover, trade on the saved flow, join."""
        assert not self.up
        self.up = True
        self.generation += 1
        self._reset()
        durable = self.store.restart() if self.started_once else self.store.durable.copy()
        self.started_once = True
        self.node, effects = Node.recover(self.config, durable, self.store)
        self.trace.note(self.node_id, f"start (incarnation {durable.incarnation})")
        self.outbox.send(effects.messages)
        if self.view is not None:
            self._adopt(self.view, None)
        self._join()
        self.wake()
        self.outbox.arm_retry()

    def quiesce(self) -> None:
        """The run is over: start no cycle and no request; answer held requests now."""
        self.quiescing = True
        if self.up:
            self.server.answer_all()

    def crash(self) -> None:
        """SIGKILL: the commit queue and everything in memory are lost."""
        if not self.up:
            return
        self.up = False
        self.figures.crashes += 1
        self.trace.note(self.node_id, f"crash ({sum(len(e) for e, _ in self._pending)} "
                        "steps not durable)")
        self._pending = []
        self.net.crashed(self.node_id)

    # ---- durability: persist, then send ----------------------------------------------------

    def handle(self, events: Sequence[Event]) -> list[Effects]:
        return [self.node.handle(e) for e in events]

    def commit(self, effects: list[Effects], then: Then | None = None) -> None:
        """Make ``effects``' writes durable after every earlier step's, then ``then``."""
        if not self._pending and not any(e.writes for e in effects):
            if then is not None:
                then(effects)
            return
        self._pending.append((effects, then))
        if self.crash_at_next_step is not None and any(
                e.writes and (e.messages or e.reply is not None) for e in effects):
            hook, self.crash_at_next_step = self.crash_at_next_step, None
            self.clock.after(0.0, hook)
        if not self._flush_due:
            self._flush_due = True
            self.later(self.settings.commit_s, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        group, self._pending = self._pending, []
        writes = 0
        for effects, _ in group:
            for e in effects:
                if e.writes:
                    self.monitor.check(self, e.writes)
                    self.store.apply(e.writes)
                    writes += len(e.writes)
        self.trace.add(self.node_id, f"commit {writes}")
        for effects, then in group:
            if then is not None and self.up:
                then(effects)

    # ---- wake-ups -------------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (inputs queued, outputs sold, flow): look again, once."""
        if not self._wake_due:
            self._wake_due = True
            self.later(0.0, self._look)

    def _look(self) -> None:
        self._wake_due = False
        self._stage_try()
        for f in self.fetchers.values():
            f.look()
        if self.server.waiters:
            self.server.look()

    def target(self, item: str) -> int:
        """How many batches of ``item`` to keep (fos_agent.rules.fetch.target)."""
        others = [f.buffered() for i, f in self.fetchers.items() if i != item]
        room = None if self.is_sink else max(
            0, self.settings.output_cap - self.node.queued_outbound_count)
        return target(self.settings.fetch.prefetch, min(others) if others else None, room)

    # ---- the stage ---------------------------------------------------------------------------

    def _stage_try(self) -> None:
        if self._cycling or self.quiescing:
            return
        if not self.is_sink and self.node.queued_outbound_count >= self.settings.output_cap:
            return
        inputs = self.node.hold_inputs()
        if inputs is None:
            return
        cycle = self.settings.cycle_s
        waited = self.clock.now - self._idle_since + self._carry
        if waited >= BRIEF * cycle:
            skipped = int(waited // cycle)
            self.figures.skipped += skipped
            self._carry = waited - skipped * cycle
        self._cycling = True
        self.later(cycle, self._cycle_done, inputs)

    def _cycle_done(self, inputs: tuple[str, ...]) -> None:
        self._cycling = False
        self._idle_since = self.clock.now
        batches = [rec.batch for b in inputs if (rec := self.node.inbound(b)) is not None]
        if not self.stage_code(self.node_id, batches):
            self.node.release(inputs)
            self.figures.cycles_failed += 1
            self.trace.add(self.node_id, "cycle failed")
            self.wake()
            return
        effects = self.handle([Produce(inputs)])
        self.figures.cycles_ok += 1
        self.figures.produced += 1
        if self.is_sink:
            self.finished += 1
        self.trace.add(self.node_id, f"produce {self.node_id}:{self.node.next_seq - 1}")
        self.commit(effects)
        self.wake()

    # ---- served calls ------------------------------------------------------------------------

    def serve(self, call: Call) -> None:
        kind = call.kind
        self.detector.contact(call.src, True)  # a call from a neighbour is a heartbeat
        if kind == "request":
            self.server.request(call)
        elif kind in ("confirmed", "waiting"):
            self.commit(self.handle([call.payload]), lambda e: self.net.answer(call, True))
        elif kind == "offer":
            self.commit(self.handle([call.payload]),
                        lambda e: self.net.answer(call, e[0].reply))
        elif kind == "ping":
            self.net.answer(call, self.store.durable.incarnation)
        else:
            raise ValueError(f"an agent serves no {kind!r}")

    def drop(self, call: Call) -> None:
        self.server.drop(call)

    # ---- coordinator side -----------------------------------------------------------------

    def _join(self, backoff: float = 0.5) -> None:
        def done(reply: Any) -> None:
            if isinstance(reply, View):
                self._joined = True
                self.trace.note(self.node_id, "joined")
                self.on_flow(reply)
            else:
                self.later(backoff, self._join, min(backoff * 2, 4.0))
        self.call(COORDINATOR, "join", self.spec, self.settings.coordinator_timeout, done)

    def on_flow(self, view: View) -> None:
        """A neighbourhood pushed by the coordinator (WatchFlow) or the join's answer."""
        if not self.up:
            return
        if self.view is not None and view.version < self.view.version:
            return
        previous, self.view = self.view, view
        self._adopt(view, previous)

    def _adopt(self, view: View, previous: View | None) -> None:
        """The order fos_agent.runtime.membership applies a flow in: spec, protocol,
        detector, re-offers to consumers back, rejoin if we are down, held calls, fetchers."""
        self.trace.add(self.node_id, f"flow v{view.version}")
        if view.spec is not None and (view.spec.requires != self.config.requires
                                      or view.spec.produces != self.config.produces):
            self._adopt_spec(view.spec)
        self.commit(self.handle([FlowChanged(view.version, view.consumers)]))
        self.detector.watch({n for n, alive in view.alive_of.items() if alive})
        was = previous.alive_of if previous is not None else {}
        back = [c for c in view.consumers if view.alive_of.get(c) and not was.get(c, False)]
        if back:
            self.outbox.kick(back)
        now = self.clock.now
        if (view.known and not view.alive and self._joined
                and now - self._last_rejoin >= 1.0):
            self._last_rejoin = now
            self.trace.note(self.node_id, "the coordinator has us down: rejoining")
            self._join()
        if self.weigher is not None and len(view.consumers) >= 2:
            self._last_move = now
            if not self._shares_due:
                self._shares_due = True
                self._moved_at = now
                self._settle(now)
        self.server.answer_all(unless_version=view.version)
        for f in self.fetchers.values():
            f.flow_changed()
        self.wake()

    def _settle(self, since: float) -> None:
        """Ask for the weights once the flow stopped moving (fos_agent.rules.share)."""
        now = self.clock.now
        wait = settle_wait(self._moved_at, now)
        if wait is not None and (self._last_move > since or now == since):
            self.later(wait, self._settle, now)
            return
        self._weigh()

    def _weigh(self) -> None:
        """Ask the catalog for our consumers' weights and priorities (fairshare)."""
        self._shares_due = False
        self._moved_at = 0.0  # the flow first moved since the weights were last asked for
        self._last_move = 0.0
        if self.weigher is None or self.view is None:
            return
        got = self.weigher(self.view.consumers)
        if got is None:  # the coordinator cannot answer: keep the last ones, ask later
            self._shares_due = True
            self.later(SHARES_RETRY_S, self._weigh)
            return
        self.server.set_weights(*got)
        self.wake()

    def _adopt_spec(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.config = NodeConfig(spec.node_id, spec.produces, spec.requires,
                                 immediate_arrival=True)
        self.node.config = self.config
        items = {q.item for q in spec.requires}
        stale = [b for b in self.node.held
                 if (rec := self.node.inbound(b)) is None or rec.batch.item not in items]
        self.node.release(stale)
        for item in [i for i in self.fetchers if i not in items]:
            del self.fetchers[item]
        for item in sorted(items):
            self.fetchers.setdefault(item, Fetcher(self, item))
