"""A simulated agent's supplier side: the RequestBatch calls it holds (fos_agent.net.service
on virtual time).

A request is answered at once when a batch is QUEUED and it is the consumer's turn, or
when it is not a long-poll; a long-poll is held until a batch is queued, its deadline,
or a new flow (answered then, with a batch if one is there). The waiting consumers are
served by start-time fair queueing, the rule of fos_agent.core.fairshare (without its
first-article plan): a consumer's start tag is the virtual time its share reached, or the
current one if it was not waiting; the smallest goes first, ties by the highest priority,
then by name; a service advances the consumer's share by ``1 / weight``. Weights and
priorities are the consumers' shares of the catalog's need and their items' heights
(fos_agent.runtime.shares), given by the factory's ``shares`` (equal without one).
Replies leave after the step's writes are durable.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    DeliveryConfirmed,
    Effects,
    RequestBatch,
    RequestRefused,
)
from fos_agent.testing.factory.clock import Timer
from fos_agent.testing.factory.host import Host
from fos_agent.testing.factory.network import Call

MAX_WAIT_MS = 60000


class Waiter:
    """A RequestBatch call held by the supplier."""

    __slots__ = ("call", "confirms", "consumer", "deadline", "msgs", "timer", "version")

    def __init__(self, call: Call, msgs: list[RequestBatch], confirms: list[DeliveryConfirmed],
                 deadline: float, version: int) -> None:
        self.call = call
        self.msgs = msgs
        self.confirms = confirms
        self.consumer = msgs[0].consumer
        self.deadline = deadline
        self.version = version
        self.timer: Timer | None = None


def sub_requests(request: RequestBatch, count: int) -> list[RequestBatch]:
    """The protocol requests of one call for ``count`` batches (as fos_agent.net.pbconv
    names them: ``<id>.<i>`` after the first)."""
    return [request] + [RequestBatch(request.supplier, request.consumer,
                                     f"{request.request_id}.{i}", request.item, request.qty,
                                     request.flow_version, request.wait_ms)
                        for i in range(1, count)]


class Server:
    def __init__(self, agent: Host) -> None:
        self.agent = agent
        self.waiters: list[Waiter] = []
        self._vtime = 0.0  # start tag of the last service
        self._finish: dict[str, float] = {}  # consumer -> virtual time its share reached
        self.weights: dict[str, float] = {}  # consumer -> weight (missing: 1)
        self.priorities: dict[str, float] = {}  # consumer -> tie-break, highest first

    def _order(self, consumer: str) -> tuple[float, float, str]:
        start = max(self._finish.get(consumer, 0.0), self._vtime)
        return (start, -self.priorities.get(consumer, 0.0), consumer)

    def request(self, call: Call) -> None:
        a = self.agent
        request, confirms, count = call.payload
        ups = [DeliveryConfirmed(a.node_id, request.consumer, b) for b in confirms]
        version = a.view.version if a.view is not None else 0
        w = Waiter(call, sub_requests(request, count), ups,
                   a.clock.now + min(request.wait_ms, MAX_WAIT_MS) / 1000, version)
        if request.wait_ms > 0:
            a.detector.hold(w.consumer, True)
        self.waiters.append(w)
        final = request.wait_ms <= 0 or a.quiescing
        if not self.try_serve(w, final=final) and w in self.waiters:
            w.timer = a.timer(w.deadline - a.clock.now, self._deadline, w)

    def _turn(self, w: Waiter, available: int) -> bool:
        """Fewer waiting consumers ordered before ``w``'s than batches available."""
        waiting = {x.consumer for x in self.waiters if x.consumer != w.consumer}
        if len(waiting) < available:
            return True
        mine = self._order(w.consumer)
        return sum(1 for c in waiting if self._order(c) < mine) < available

    def try_serve(self, w: Waiter, final: bool) -> bool:
        """Serve ``w`` if a batch is there and it is its turn, or answer it anyway
        (``final``); False: it keeps waiting."""
        a = self.agent
        available = a.node.queued_outbound_count
        if available and not final and not self._turn(w, available):
            if w.confirms:
                a.commit(a.handle(w.confirms))
                w.confirms = []
            return False
        effects = a.handle([*w.confirms, *w.msgs])
        w.confirms = []
        replies = [e.reply for e in effects[-len(w.msgs):]]
        first = replies[0]
        if isinstance(first, BatchSent):
            start = self._order(w.consumer)[0]
            self._vtime = start
            self._finish[w.consumer] = start + 1.0 / max(self.weights.get(w.consumer, 1.0),
                                                         1e-9)
            sent = [r for r in replies if isinstance(r, BatchSent)]
            a.trace.add(a.node_id, f"send {' '.join(r.batch.batch_id for r in sent)} "
                        f"to {w.consumer}")
            self._answer(w, effects, sent)
            a.outbox.arm_retry()
            a.wake()
            return True
        if isinstance(first, RequestRefused) or final:
            self._answer(w, effects, [first])
            return True
        assert isinstance(first, BatchUnavailable)
        a.commit(effects)
        return False

    def _answer(self, w: Waiter, effects: list[Effects], replies: list[Any]) -> None:
        self.end_wait(w)
        self.agent.commit(effects, partial(self._reply, w.call, replies))

    def _reply(self, call: Call, replies: list[Any], effects: list[Effects]) -> None:
        self.agent.net.answer(call, replies)

    def end_wait(self, w: Waiter) -> None:
        if w in self.waiters:
            self.waiters.remove(w)
            if w.timer is not None:
                w.timer.cancel()
            if w.msgs[0].wait_ms > 0:
                self.agent.detector.hold(w.consumer, False)

    def drop(self, call: Call) -> None:
        """The caller died or gave up: forget its held call."""
        for w in self.waiters:
            if w.call is call:
                self.end_wait(w)
                return

    def _deadline(self, w: Waiter) -> None:
        if w in self.waiters:
            self.try_serve(w, final=True)

    def look(self) -> None:
        """Batches may be there: serve the waiting in turn."""
        for w in sorted(self.waiters, key=lambda x: self._order(x.consumer)):
            if not self.agent.node.queued_outbound_count:
                return
            if w in self.waiters:
                self.try_serve(w, final=False)

    def answer_all(self, unless_version: int | None = None) -> None:
        """Answer every held call now (a new flow: those held on another version; the
        end of the run: all)."""
        for w in list(self.waiters):
            if unless_version is None or w.version != unless_version:
                self.try_serve(w, final=True)
