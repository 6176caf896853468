"""A simulated agent's input fetching, one ``Fetcher`` per required item (the consumer
side of fos_agent.runtime.inputs on virtual time).

The buffer target and the supplier choice are fos_agent.rules.fetch, the very rules the
runtime applies: keep ``target`` batches (prefetch, the scarcest other input + 1, the
output's room); ask the suppliers in rank order with the failed ones last, the first
with a long-poll, the backups with quick requests, skipping backups that had nothing
lately; pause after a round that got nothing fast. A new flow cuts a long-poll: the
supplier answers at once (it sees the same flow); one not answered within
``FLOW_CHANGE_GRACE_S`` is given up and the round starts over.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fos_agent.protocol.messages import BatchSent, NewRequest, RequestBatch, RequestRefused
from fos_agent.rules.fetch import Answer, Supplier, SupplierChoice, batches_to_ask
from fos_agent.testing.factory.clock import Timer
from fos_agent.testing.factory.host import Host
from fos_agent.testing.factory.network import Call

FLOW_CHANGE_GRACE_S = 0.5


class Fetcher:
    """One input's worker (``inflight`` 1): one round over the suppliers at a time."""

    def __init__(self, agent: Host, item: str) -> None:
        self.agent = agent
        self.item = item
        self.choice = SupplierChoice(agent.settings.fetch)
        self.busy = False
        self.paused: Timer | None = None
        self.asked = 0  # batches asked for in the round in progress
        self.order: list[Supplier] = []
        self.index = 0
        self.first_answered = False
        self.wait0 = 0
        self.started = 0.0
        self.call: Call | None = None
        self.flow_moved = False

    def buffered(self) -> int:
        """Unheld QUEUED batches of the item plus those asked for (goods arrive with the
        message: nothing is on its way otherwise)."""
        node = self.agent.node
        queued = node.inbound_queued_counts().get(self.item, 0)
        if node.held:
            queued -= sum(1 for b in node.held
                          if (r := node.inbound(b)) and r.batch.item == self.item)
        return queued + self.asked

    def look(self) -> None:
        """Start a round if the buffer is below its target."""
        a = self.agent
        if self.busy or self.paused is not None or a.view is None or a.quiescing:
            return
        want = a.target(self.item)
        have = self.buffered()
        if have >= want:
            return
        now = a.clock.now
        self.busy = True
        self.started = now
        self.asked = batches_to_ask(a.settings.fetch, want, have)
        self.order = self.choice.order(a.view.suppliers.get(self.item, ()),
                                       a.detector.links.suspected(), now)
        self.wait0 = self.choice.first_wait_ms(self.order, now)
        self.index = 0
        self.first_answered = False
        self._next()

    def _next(self) -> None:
        while self.index < len(self.order):
            supplier = self.order[self.index]
            if self.choice.should_skip(supplier, self.index, self.first_answered, self.started):
                self.index += 1
                continue
            self._ask(supplier.node_id, self.wait0 if self.index == 0 else 0)
            return
        self._round_end(False)

    def _ask(self, supplier: str, wait_ms: int) -> None:
        a = self.agent
        assert a.view is not None
        (made,) = a.handle([NewRequest(supplier, self.item, flow_version=a.view.version,
                                       wait_ms=wait_ms)])
        (request,) = made.messages
        assert isinstance(request, RequestBatch)
        confirms = a.outbox.take_confirms(supplier)
        a.figures.requests += 1
        self.flow_moved = False
        if wait_ms:
            a.detector.hold(supplier, True)
        a.trace.add(a.node_id, f"ask {supplier} {request.request_id} x{self.asked} "
                    f"wait {wait_ms}")
        timeout = a.settings.rpc_timeout + wait_ms / 1000.0
        self.call = a.call(supplier, "request", (request, confirms, self.asked), timeout,
                           partial(self._asked, supplier, wait_ms, confirms))

    def _asked(self, supplier: str, wait_ms: int, confirms: list[str], replies: Any) -> None:
        a = self.agent
        self.call = None
        now = a.clock.now
        if wait_ms:
            a.detector.hold(supplier, False)
        if replies is None or isinstance(replies[0], RequestRefused):
            unreachable = replies is None
            a.detector.contact(supplier, not unreachable)
            a.outbox.give_back_confirms(supplier, confirms)  # they may not have arrived
            self.choice.answered(supplier, self.index,
                                 Answer.UNREACHABLE if unreachable else Answer.REFUSED, now)
            a.trace.add(a.node_id, f"no answer from {supplier}" if unreachable
                        else f"refused by {supplier}")
            self._answer(Answer.NO_ANSWER)
            return
        a.detector.contact(supplier, True)
        sent = isinstance(replies[0], BatchSent)
        answer = Answer.SENT if sent else Answer.NONE
        a.trace.add(a.node_id, f"got {' '.join(r.batch.batch_id for r in replies)}"
                    if sent else f"none from {supplier}")
        a.commit(a.handle(replies), a.outbox.sent)
        self.choice.answered(supplier, self.index, answer, now)
        if self.flow_moved and not sent:
            self._round_end(False, restart=True)
            return
        self._answer(answer)

    def _answer(self, answer: Answer) -> None:
        if answer is Answer.SENT:
            self._round_end(True)
            return
        if self.index == 0:
            self.first_answered = answer is Answer.NONE
        self.index += 1
        self._next()

    def _round_end(self, got: bool, restart: bool = False) -> None:
        a = self.agent
        self.busy = False
        self.asked = 0
        pause = 0.0 if restart else self.choice.idle_pause(got, self.started, a.clock.now)
        if pause:
            self.paused = a.timer(pause, self._unpause)
        else:
            a.wake()

    def _unpause(self) -> None:
        self.paused = None
        self.look()

    def flow_changed(self) -> None:
        """A new flow: end the idle pause; a long-poll held now is cut (module docstring)."""
        if self.paused is not None:
            self.paused.cancel()
            self.paused = None
        call = self.call
        if call is not None and self.index == 0 and self.wait0:
            self.flow_moved = True
            self.agent.later(FLOW_CHANGE_GRACE_S, self._give_up, call)

    def _give_up(self, call: Call) -> None:
        a = self.agent
        if self.call is call and not call.done:
            a.net.cancel(call)
            self.call = None
            a.detector.hold(call.dst, False)
            a.trace.add(a.node_id, f"gave up on {call.dst}")
            self._round_end(False, restart=True)
