"""A simulated agent's supplier side: the RequestBatch calls it holds (fos_agent.net.service
on virtual time), decided by fos_agent.rules.share, the rule the real service applies.

A request is answered at once when a batch is QUEUED and it is the consumer's turn, or
when it is not a long-poll; a long-poll is held until a batch is queued and it is its
turn, its deadline, or a new flow (answered then, with a batch if one is there). Whose
turn it is: start-time fair queueing over the waiting consumers (``FairShare``), weighted
by the consumers' shares of the catalog's need and tie-broken by their items' heights
(fos_agent.rules.weights), given by the factory's ``shares`` (by default the real
agent's; equal with None); no
first-article plan. Replies leave after the step's writes are durable.
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
from fos_agent.rules.share import FairShare, LongPoll
from fos_agent.testing.factory.clock import Timer
from fos_agent.testing.factory.host import Host
from fos_agent.testing.factory.network import Call


class Waiter:
    """A RequestBatch call held by the supplier."""

    __slots__ = ("call", "confirms", "consumer", "msgs", "poll", "timer")

    def __init__(self, call: Call, msgs: list[RequestBatch], confirms: list[DeliveryConfirmed],
                 poll: LongPoll) -> None:
        self.call = call
        self.msgs = msgs
        self.confirms = confirms
        self.consumer = msgs[0].consumer
        self.poll = poll
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
        self.fair = FairShare()

    def _version(self) -> int:
        view = self.agent.view
        return view.version if view is not None else 0

    def request(self, call: Call) -> None:
        a = self.agent
        request, confirms, count = call.payload
        ups = [DeliveryConfirmed(a.node_id, request.consumer, b) for b in confirms]
        poll = LongPoll(self.fair, request.consumer, request.wait_ms, self._version(),
                        a.clock.now)
        w = Waiter(call, sub_requests(request, count), ups, poll)
        if poll.holding:
            a.detector.hold(w.consumer, True)
        self.waiters.append(w)
        if not self.try_serve(w, final=not poll.holding or a.quiescing) and w in self.waiters:
            w.timer = a.timer(poll.remaining(a.clock.now), self._deadline, w)

    def try_serve(self, w: Waiter, final: bool) -> bool:
        """Serve ``w`` if a batch is there and it is its turn, or answer it anyway
        (``final``); False: it keeps waiting."""
        a = self.agent
        now = a.clock.now
        if not final and w.poll.wait_turn(a.node.queued_outbound_count, now, closing=False,
                                          ended=False):
            if w.confirms:  # consumers served longer ago take the batches first
                a.commit(a.handle(w.confirms))
                w.confirms = []
            return False
        effects = a.handle([*w.confirms, *w.msgs])
        w.confirms = []
        replies = [e.reply for e in effects[-len(w.msgs):]]
        first = replies[0]
        if isinstance(first, BatchSent):
            w.poll.served()
            sent = [r for r in replies if isinstance(r, BatchSent)]
            a.trace.add(a.node_id, f"send {' '.join(r.batch.batch_id for r in sent)} "
                        f"to {w.consumer}")
            self._answer(w, effects, sent)
            a.outbox.arm_retry()
            a.wake()
            return True
        if isinstance(first, RequestRefused) or final or w.poll.wait_more(
                now, closing=False, flow_version=self._version(), ended=False) is None:
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
            w.poll.close()
            if w.timer is not None:
                w.timer.cancel()
            if w.poll.holding:
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
        """Batches may be there, or the turns moved: serve the waiting whose turn it is."""
        for w in list(self.waiters):
            if not self.agent.node.queued_outbound_count:
                return
            if w in self.waiters:
                self.try_serve(w, final=False)

    def answer_all(self, unless_version: int | None = None) -> None:
        """Answer every held call now (a new flow: those held on another version; the
        end of the run: all)."""
        for w in list(self.waiters):
            if unless_version is None or w.poll.flow_version != unless_version:
                self.try_serve(w, final=True)

    def set_weights(self, weights: dict[str, float], priorities: dict[str, float]) -> None:
        self.fair.set_weights(weights, priorities)
