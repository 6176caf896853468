"""A simulated agent: the real protocol ``Node`` over a durable store, with the agent
runtime's behaviour over time on virtual time.

- Durability: every step's writes go into a commit queue made durable as one group
  ``commit_s`` later (the group committer), in order; a step's messages and reply leave
  only after that (persist, then send). A crash drops the queue: "effects applied up to
  a crash point". A restart rebuilds the node from the store (``Node.recover``).
- Stage: one worker; a cycle starts when every input is QUEUED and the output has room
  (``output_cap``, not for a sink), holds its inputs for ``cycle_s``, then runs the stage
  code and steps ``Produce``; every full ``cycle_s`` spent waiting is a skipped cycle.
- Input fetching, one fetcher per required item: buffer target (prefetch, the scarcest
  other input + 1, the output's room), suppliers in rank order with the failed last, a
  long-poll to the first, quick requests to the backups, backup backoff, an idle pause
  after a fast empty round, a long-poll cut by a flow change.
- Serving requests: long-polls held until a batch is queued, the deadline or a flow
  change; the waiting consumers served by start-time fair queueing (equal weights).
- Outbox: confirmations piggybacked on the next request to the supplier, else sent on
  their own after ``confirm_delay_s``; re-offers by the retry table.
- Failure detector: the neighbour link table, pings, suspicion reports to the
  coordinator (retried while it is unavailable).
- Coordinator side: join (register or rejoin) at start with retries, follow the pushed
  flow, rejoin when the flow says we are down while running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    Effects,
    Event,
    FlowChanged,
    Message,
    NewRequest,
    OfferBatch,
    OfferReply,
    Produce,
    RequestBatch,
    RequestRefused,
    Tick,
    WaitingForBatch,
)
from fos_agent.protocol.records import Batch, Write
from fos_agent.rules.fetch import (
    Answer,
    FetchSettings,
    SupplierChoice,
    batches_to_ask,
    target,
)
from fos_agent.rules.retry import PendingConfirms, Reoffers
from fos_agent.rules.suspicion import (
    DetectorSettings,
    Ping,
    Report,
    Suspicion,
    report_retry_after,
)
from fos_agent.testing.factory.clock import Scheduler, Timer, Trace
from fos_agent.testing.factory.coordinator import COORDINATOR, UNAVAILABLE, View
from fos_agent.testing.factory.network import Call, SimNetwork
from fos_agent.testing.invariants import WriteMonitor
from fos_agent.testing.sim import MemoryStore
from fos_raft.model import NodeSpec

StageCode = Callable[[str, Sequence[Batch]], bool]
MAX_WAIT_MS = 60000
FLOW_CHANGE_GRACE_S = 0.5
BRIEF = 0.02


def always_succeeds(node_id: str, inputs: Sequence[Batch]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class AgentSettings:
    cycle_s: float = 1.0
    output_cap: int = 1
    commit_s: float = 0.002  # one group commit (fsync)
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
    cycles_failed: int = 0
    skipped: int = 0
    produced: int = 0
    requests: int = 0
    crashes: int = 0


class _Fetch:
    """One input's fetcher state (one worker: ``inflight`` 1)."""

    __slots__ = ("asked", "busy", "call", "choice", "count", "first_answered", "flow_moved",
                 "index", "item", "order", "paused", "started", "version", "wait0")

    def __init__(self, item: str, settings: FetchSettings) -> None:
        self.item = item
        self.choice = SupplierChoice(settings)
        self.busy = False
        self.paused: Timer | None = None
        self.asked = 0  # batches asked for in the round in progress
        self.count = 0
        self.order: list[Any] = []
        self.index = 0
        self.first_answered = False
        self.wait0 = 0
        self.started = 0.0
        self.version = 0
        self.call: Call | None = None
        self.flow_moved = False


class _Waiter:
    """A RequestBatch call held by the supplier."""

    __slots__ = ("call", "confirms", "consumer", "deadline", "msgs", "tag", "timer", "version")

    def __init__(self, call: Call, msgs: list[RequestBatch], confirms: list[DeliveryConfirmed],
                 deadline: float, version: int) -> None:
        self.call = call
        self.msgs = msgs
        self.confirms = confirms
        self.consumer = msgs[0].consumer
        self.deadline = deadline
        self.version = version
        self.tag = 0.0
        self.timer: Timer | None = None


class SimAgent:
    def __init__(self, spec: NodeSpec, clock: Scheduler, net: SimNetwork, trace: Trace,
                 monitor: WriteMonitor, settings: AgentSettings, is_sink: bool,
                 stage: StageCode = always_succeeds) -> None:
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
        self.store = MemoryStore(spec.node_id)
        self.node = Node(self.config, self.store.durable.copy(), self.store)
        self.decommissioned = False
        self.up = False
        self.generation = 0
        self.started_once = False
        self.view: View | None = None  # the last flow seen (saved: survives a crash)
        self.figures = AgentFigures()
        self.finished = 0  # final products made (a sink's outputs)
        self.quiescing = False  # the run is over: no new cycle, no new request
        net.endpoints[self.node_id] = self
        self._reset()

    def _reset(self) -> None:
        s = self.settings
        self._pending: list[tuple[list[Effects], Callable[[list[Effects]], None] | None]] = []
        self._flush_due = False
        self._wake_due = False
        self._cycling = False
        self._idle_since = self.clock.now
        self._carry = 0.0
        self._fetch = {r.item: _Fetch(r.item, s.fetch) for r in self.config.requires}
        self._waiters: list[_Waiter] = []
        self._vnow = 0.0
        self._finish: dict[str, float] = {}
        self._confirms = PendingConfirms(s.confirm_delay_s)
        self.links = Suspicion(self.node_id, s.detector)
        self._detector_timer: Timer | None = None
        self._reoffers = Reoffers(s.retry_s, s.retry_cap_s)
        self._retry_armed = False
        self._last_rejoin = float("-inf")
        self._joined = False

    # ---- scheduling guarded by incarnation -------------------------------------------------

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.clock.after(delay, self._guard, self.generation, fn, args)

    def _timer(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return self.clock.timer(delay, self._guard, self.generation, fn, args)

    def _guard(self, gen: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self.up and gen == self.generation:
            fn(*args)

    def _call(self, dst: str, kind: str, payload: Any, timeout: float,
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
        self._send(effects.messages)
        if self.view is not None:
            self._adopt(self.view, None)
        self._join()
        self._wake()
        self._arm_retry()

    def quiesce(self) -> None:
        """The run is over: start no cycle and no request; answer held requests now."""
        self.quiescing = True
        if self.up:
            for w in list(self._waiters):
                self._try_serve(w, final=True)

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

    def commit(self, effects: list[Effects],
               then: Callable[[list[Effects]], None] | None = None) -> None:
        """Make ``effects``' writes durable after every earlier step's, then ``then``."""
        if not self._pending and not any(e.writes for e in effects):
            if then is not None:
                then(effects)
            return
        self._pending.append((effects, then))
        if not self._flush_due:
            self._flush_due = True
            self._later(self.settings.commit_s, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        group, self._pending = self._pending, []
        writes = 0
        for effects, _ in group:
            for e in effects:
                if e.writes:
                    self._write(e.writes)
                    writes += len(e.writes)
        self.trace.add(self.node_id, f"commit {writes}")
        for effects, then in group:
            if then is not None and self.up:
                then(effects)

    def _write(self, writes: tuple[Write, ...]) -> None:
        self.monitor.check(self, writes)
        self.store.apply(writes)

    def _send(self, messages: Sequence[Message]) -> None:
        for msg in messages:
            if isinstance(msg, DeliveryConfirmed):
                if self._confirms.add(msg.supplier, msg.batch_id):
                    self._later(self._confirms.delay_s, self._flush_confirms, msg.supplier)
            elif isinstance(msg, OfferBatch):
                self._offer(msg)
            elif isinstance(msg, WaitingForBatch):
                self._call(msg.supplier, "waiting", msg, self.settings.rpc_timeout,
                           partial(self._contacted, msg.supplier))

    def _sent(self, effects: list[Effects]) -> None:
        for e in effects:
            if e.messages:
                self._send(e.messages)

    # ---- wake-ups -------------------------------------------------------------------------

    def _wake(self) -> None:
        """Something changed (inputs queued, outputs sold, flow): look again, once."""
        if not self._wake_due:
            self._wake_due = True
            self._later(0.0, self._look)

    def _look(self) -> None:
        self._wake_due = False
        self._stage_try()
        for f in self._fetch.values():
            self._fetch_try(f)
        if self._waiters:
            self._serve_waiters()

    # ---- stage ------------------------------------------------------------------------------

    def _output_full(self) -> bool:
        return not self.is_sink and self.node.queued_outbound_count >= self.settings.output_cap

    def _stage_try(self) -> None:
        if self._cycling or self.quiescing or self._output_full():
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
        self._later(cycle, self._cycle_done, inputs)

    def _cycle_done(self, inputs: tuple[str, ...]) -> None:
        self._cycling = False
        self._idle_since = self.clock.now
        batches = [rec.batch for b in inputs if (rec := self.node.inbound(b)) is not None]
        if not self.stage_code(self.node_id, batches):
            self.node.release(inputs)
            self.figures.cycles_failed += 1
            self.trace.add(self.node_id, "cycle failed")
            self._wake()
            return
        effects = self.handle([Produce(inputs)])
        self.figures.cycles_ok += 1
        self.figures.produced += 1
        if self.is_sink:
            self.finished += 1
        self.trace.add(self.node_id, f"produce {self.node_id}:{self.node.next_seq - 1}")
        self.commit(effects)
        self._wake()

    # ---- input fetching (consumer side) ------------------------------------------------------

    def _buffered(self, item: str) -> int:
        node = self.node
        queued = node.inbound_queued_counts().get(item, 0)
        held = sum(1 for b in node.held if (r := node.inbound(b)) and r.batch.item == item)
        return queued - held + self._fetch[item].asked

    def _target(self, item: str) -> int:
        others = [self._buffered(i) for i in self._fetch if i != item]
        room = None if self.is_sink else max(
            0, self.settings.output_cap - self.node.queued_outbound_count)
        return target(self.settings.fetch.prefetch, min(others) if others else None, room)

    def _fetch_try(self, f: _Fetch) -> None:
        if f.busy or f.paused is not None or self.view is None or self.quiescing:
            return
        want = self._target(f.item)
        have = self._buffered(f.item)
        if have >= want:
            return
        now = self.clock.now
        f.busy = True
        f.started = now
        f.count = batches_to_ask(self.settings.fetch, want, have)
        f.asked = f.count
        f.version = self.view.version
        suppliers = self.view.suppliers.get(f.item, ())
        f.order = f.choice.order(suppliers, self.links.suspected(), now)
        f.wait0 = f.choice.first_wait_ms(f.order, now)
        f.index = 0
        f.first_answered = False
        self._fetch_next(f)

    def _fetch_next(self, f: _Fetch) -> None:
        while f.index < len(f.order):
            supplier = f.order[f.index].node_id
            if f.choice.should_skip(f.order[f.index], f.index, f.first_answered, f.started):
                f.index += 1
                continue
            self._ask(f, supplier, f.wait0 if f.index == 0 else 0)
            return
        self._round_end(f, False)

    def _ask(self, f: _Fetch, supplier: str, wait_ms: int) -> None:
        assert self.view is not None
        (made,) = self.handle([NewRequest(supplier, f.item, flow_version=self.view.version,
                                          wait_ms=wait_ms)])
        (request,) = made.messages
        assert isinstance(request, RequestBatch)
        confirms = self._confirms.take(supplier)
        self.figures.requests += 1
        f.flow_moved = False
        if wait_ms:
            self._hold(supplier, True)
        timeout = self.settings.rpc_timeout + wait_ms / 1000.0
        self.trace.add(self.node_id, f"ask {supplier} {request.request_id} x{f.count} "
                       f"wait {wait_ms}")
        f.call = self._call(supplier, "request", (request, confirms, f.count), timeout,
                            lambda r: self._asked(f, supplier, wait_ms, confirms, r))

    def _asked(self, f: _Fetch, supplier: str, wait_ms: int, confirms: list[str],
               replies: Any) -> None:
        f.call = None
        now = self.clock.now
        if wait_ms:
            self._hold(supplier, False)
        if replies is None or isinstance(replies[0], RequestRefused):
            unreachable = replies is None
            self._contact(supplier, not unreachable)
            for bid in confirms:  # they may not have arrived: send them on their own
                self._send([DeliveryConfirmed(supplier, self.node_id, bid)])
            f.choice.answered(supplier, f.index,
                              Answer.UNREACHABLE if unreachable else Answer.REFUSED, now)
            self.trace.add(self.node_id, f"no answer from {supplier}"
                           if unreachable else f"refused by {supplier}")
            self._next_supplier(f, Answer.NO_ANSWER)
            return
        self._contact(supplier, True)
        sent = isinstance(replies[0], BatchSent)
        answer = Answer.SENT if sent else Answer.NONE
        self.trace.add(self.node_id, f"got {' '.join(r.batch.batch_id for r in replies)}"
                       if sent else f"none from {supplier}")
        self.commit(self.handle(replies), self._sent)
        f.choice.answered(supplier, f.index, answer, now)
        if f.flow_moved and not sent:
            self._round_end(f, False, restart=True)
            return
        self._next_supplier(f, answer)

    def _next_supplier(self, f: _Fetch, answer: Answer) -> None:
        if answer is Answer.SENT:
            self._round_end(f, True)
            return
        if f.index == 0:
            f.first_answered = answer is Answer.NONE
        f.index += 1
        self._fetch_next(f)

    def _round_end(self, f: _Fetch, got: bool, restart: bool = False) -> None:
        f.busy = False
        f.asked = 0
        pause = 0.0 if restart else f.choice.idle_pause(got, f.started, self.clock.now)
        if pause:
            f.paused = self._timer(pause, self._unpause, f)
        else:
            self._wake()

    def _unpause(self, f: _Fetch) -> None:
        f.paused = None
        self._fetch_try(f)

    def _flow_moved(self) -> None:
        """A new flow cuts our long-polls: the supplier answers at once (it sees the same
        flow); one not answered within the grace is given up."""
        for f in self._fetch.values():
            if f.paused is not None:
                f.paused.cancel()
                f.paused = None
            call = f.call
            if call is not None and f.index == 0 and f.wait0:
                f.flow_moved = True
                self._later(FLOW_CHANGE_GRACE_S, self._give_up, f, call)

    def _give_up(self, f: _Fetch, call: Call) -> None:
        if f.call is call and not call.done:
            self.net.cancel(call)
            f.call = None
            self._hold(call.dst, False)
            self.trace.add(self.node_id, f"gave up on {call.dst}")
            self._round_end(f, False, restart=True)

    # ---- serving requests (supplier side) ------------------------------------------------

    def serve(self, call: Call) -> None:
        kind = call.kind
        self._contact(call.src, True)
        if kind == "request":
            self._serve_request(call)
        elif kind == "confirmed":
            self.commit(self.handle([call.payload]), partial(self._ack, call))
        elif kind == "offer":
            self.commit(self.handle([call.payload]), partial(self._reply, call))
        elif kind == "waiting":
            self.commit(self.handle([call.payload]), partial(self._ack, call))
        elif kind == "ping":
            self.net.answer(call, self.store.durable.incarnation)
        else:
            raise ValueError(f"an agent serves no {kind!r}")

    def _ack(self, call: Call, effects: list[Effects]) -> None:
        self.net.answer(call, True)

    def _reply(self, call: Call, effects: list[Effects]) -> None:
        self.net.answer(call, effects[0].reply)

    def drop(self, call: Call) -> None:
        for w in self._waiters:
            if w.call is call:
                self._end_wait(w)
                return

    def _serve_request(self, call: Call) -> None:
        request, confirms, count = call.payload
        msgs = [request] + [RequestBatch(request.supplier, request.consumer,
                                         f"{request.request_id}.{i}", request.item,
                                         request.qty, request.flow_version, request.wait_ms)
                            for i in range(1, count)]
        ups = [DeliveryConfirmed(self.node_id, request.consumer, b) for b in confirms]
        version = self.view.version if self.view is not None else 0
        w = _Waiter(call, msgs, ups, self.clock.now + min(request.wait_ms, MAX_WAIT_MS) / 1000,
                    version)
        w.tag = max(self._finish.get(w.consumer, 0.0), self._vnow)
        if request.wait_ms > 0:
            self._hold(w.consumer, True)
        self._waiters.append(w)
        final = request.wait_ms <= 0 or self.quiescing
        if not self._try_serve(w, final=final) and w in self._waiters:
            w.timer = self._timer(w.deadline - self.clock.now, self._deadline, w)

    def _turn(self, w: _Waiter, available: int) -> bool:
        ahead = sorted(self._waiters, key=lambda x: (x.tag, x.consumer))
        return w in ahead[:available]

    def _try_serve(self, w: _Waiter, final: bool) -> bool:
        """Serve ``w`` if a batch is there and it is its turn (or answer it, ``final``)."""
        available = self.node.queued_outbound_count
        if available and not final and not self._turn(w, available):
            if w.confirms:
                self.commit(self.handle(w.confirms))
                w.confirms = []
            return False
        effects = self.handle([*w.confirms, *w.msgs])
        w.confirms = []
        replies = [e.reply for e in effects[-len(w.msgs):]]
        first = replies[0]
        if isinstance(first, BatchSent):
            self._vnow = w.tag
            self._finish[w.consumer] = w.tag + 1.0
            sent = [r for r in replies if isinstance(r, BatchSent)]
            self.trace.add(self.node_id, f"send {' '.join(r.batch.batch_id for r in sent)} "
                           f"to {w.consumer}")
            self._answer(w, effects, sent)
            self._arm_retry()
            self._wake()
            return True
        if isinstance(first, RequestRefused) or final:
            self._answer(w, effects, [first])
            return True
        assert isinstance(first, BatchUnavailable)
        self.commit(effects)
        return False

    def _answer(self, w: _Waiter, effects: list[Effects], replies: list[Any]) -> None:
        self._end_wait(w)
        self.commit(effects, partial(self._replies, w.call, replies))

    def _replies(self, call: Call, replies: list[Any], effects: list[Effects]) -> None:
        self.net.answer(call, replies)

    def _end_wait(self, w: _Waiter) -> None:
        if w in self._waiters:
            self._waiters.remove(w)
            if w.timer is not None:
                w.timer.cancel()
            if w.msgs[0].wait_ms > 0:
                self._hold(w.consumer, False)

    def _deadline(self, w: _Waiter) -> None:
        if w in self._waiters:
            self._try_serve(w, final=True)

    def _serve_waiters(self) -> None:
        for w in sorted(self._waiters, key=lambda x: (x.tag, x.consumer)):
            if not self.node.queued_outbound_count:
                return
            if w in self._waiters:
                self._try_serve(w, final=False)

    # ---- outbox: confirmations and re-offers ------------------------------------------------

    def _flush_confirms(self, supplier: str) -> None:
        for bid in self._confirms.flush_due(supplier):
            msg = DeliveryConfirmed(supplier, self.node_id, bid)
            self._call(supplier, "confirmed", msg, self.settings.rpc_timeout,
                       partial(self._contacted, supplier))

    def _offer(self, msg: OfferBatch) -> None:
        if self._reoffers.start(msg.batch.batch_id):
            self._send_offer(msg)

    def _send_offer(self, msg: OfferBatch) -> None:
        bid = msg.batch.batch_id
        self.trace.add(self.node_id, f"offer {bid} to {msg.consumer}")
        self._call(msg.consumer, "offer", msg, self.settings.rpc_timeout,
                   lambda r: self._offered(msg, r))

    def _offered(self, msg: OfferBatch, reply: OfferReply | None) -> None:
        self._reoffers.offered(msg.batch.batch_id)
        self._contact(msg.consumer, reply is not None)
        if reply is not None:
            self.commit(self.handle([reply]), self._sent)

    def _arm_retry(self) -> None:
        if not self._retry_armed:
            self._retry_armed = True
            self._later(self._reoffers.tick_every, self._retry_tick)

    def _retry_tick(self) -> None:
        self._retry_armed = False
        if self._reoffers.idle(bool(self.node.outbound_in_transit())):
            return
        (effects,) = self.handle([Tick()])
        offers = [m for m in effects.messages if isinstance(m, OfferBatch)]
        for msg in self._reoffers.due(offers, self.clock.now):
            self._send_offer(msg)
        self._arm_retry()

    # ---- failure detector ---------------------------------------------------------------------

    def _hold(self, node: str, held: bool) -> None:
        if self.links.hold(node, held, self.clock.now):
            self._arm_detector(0.0)

    def _contacted(self, node: str, reply: Any) -> None:
        self._contact(node, reply is not None)

    def _contact(self, node: str, ok: bool) -> None:
        if self.links.contact(node, ok, self.clock.now):
            self._arm_detector(0.0)

    def _arm_detector(self, delay: float) -> None:
        t = self._detector_timer
        at = self.clock.now + delay
        if t is not None and not t.cancelled and t.at <= at:
            return
        if t is not None:
            t.cancel()
        self._detector_timer = self._timer(delay, self._detector_tick)

    def _detector_tick(self) -> None:
        self._detector_timer = None
        now = self.clock.now
        self.links.stall(now)  # never late on virtual time, but the contract says so
        for action in self.links.tick(now):
            if isinstance(action, Ping):
                self._ping(action)
            else:
                self._report(action, None)
        self._arm_detector(self.links.next_tick_in(now))

    def _ping(self, ping: Ping) -> None:
        def done(reply: Any) -> None:
            self._contact(ping.node, reply is not None)
            self.links.ping_done(ping)
        self._call(ping.node, "ping", None, self.settings.detector.ping_timeout, done)

    def _report(self, report: Report, pause: float | None) -> None:
        if not self.links.report_wanted(report):
            self.links.report_done(report, None, self.clock.now)
            return

        def done(outcome: Any) -> None:
            if outcome is None or outcome == UNAVAILABLE:
                wait = report_retry_after(self.settings.detector, pause)
                self._later(wait, self._report, report, wait)
                return
            self.trace.note(self.node_id, f"reported {report.node}: {outcome}")
            self.links.report_done(report, outcome, self.clock.now)

        self._call(COORDINATOR, "suspect", (self.node_id, report.node, report.reason),
                   self.settings.coordinator_timeout, done)

    # ---- coordinator side -----------------------------------------------------------------

    def _join(self, backoff: float = 0.5) -> None:
        def done(reply: Any) -> None:
            if isinstance(reply, View):
                self._joined = True
                self.trace.note(self.node_id, "joined")
                self.on_flow(reply)
            else:
                self._later(backoff, self._join, min(backoff * 2, 4.0))
        self._call(COORDINATOR, "join", self.spec, self.settings.coordinator_timeout, done)

    def on_flow(self, view: View) -> None:
        if not self.up:
            return
        if self.view is not None and view.version < self.view.version:
            return
        previous, self.view = self.view, view
        self._adopt(view, previous)

    def _adopt(self, view: View, previous: View | None) -> None:
        self.trace.add(self.node_id, f"flow v{view.version}")
        if view.spec is not None and (view.spec.requires != self.config.requires
                                      or view.spec.produces != self.config.produces):
            self._adopt_spec(view.spec)
        self.commit(self.handle([FlowChanged(view.version, view.consumers)]))
        now = self.clock.now
        self.links.watch({n for n, alive in view.alive_of.items() if alive}, now)
        self._arm_detector(0.0)
        was = previous.alive_of if previous is not None else {}
        back = [c for c in view.consumers if view.alive_of.get(c) and not was.get(c, False)]
        if back:
            in_transit = self.node.outbound_in_transit()
            for consumer in sorted(back):
                self._reoffers.kick(consumer, in_transit)
            self._arm_retry()
        if (view.known and not view.alive and self._joined
                and now - self._last_rejoin >= 1.0):
            self._last_rejoin = now
            self.trace.note(self.node_id, "the coordinator has us down: rejoining")
            self._join()
        for w in list(self._waiters):
            if w.version != view.version:
                self._try_serve(w, final=True)
        self._flow_moved()
        self._wake()

    def _adopt_spec(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.config = NodeConfig(spec.node_id, spec.produces, spec.requires,
                                 immediate_arrival=True)
        self.node.config = self.config
        items = {q.item for q in spec.requires}
        stale = [b for b in self.node.held
                 if (rec := self.node.inbound(b)) is None or rec.batch.item not in items]
        self.node.release(stale)
        for item in [i for i in self._fetch if i not in items]:
            del self._fetch[item]
        for item in sorted(items):
            self._fetch.setdefault(item, _Fetch(item, self.settings.fetch))
