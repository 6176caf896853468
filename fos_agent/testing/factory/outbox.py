"""A simulated agent's outbox (fos_agent.net.outbox on virtual time): confirmations held
``confirm_delay_s`` for a request to ride on, else sent on their own; the supplier's
re-offers, decided by the re-offer table of fos_agent.rules.retry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

from fos_agent.protocol.messages import (
    DeliveryConfirmed,
    Effects,
    Message,
    OfferBatch,
    OfferReply,
    Tick,
    WaitingForBatch,
)
from fos_agent.rules.retry import PendingConfirms, Reoffers
from fos_agent.testing.factory.host import Host


class SimOutbox:
    def __init__(self, agent: Host) -> None:
        self.agent = agent
        s = agent.settings
        self.confirms = PendingConfirms(s.confirm_delay_s)
        self.reoffers = Reoffers(s.retry_s, s.retry_cap_s)
        self._retry_armed = False

    def send(self, messages: Iterable[Message]) -> None:
        """The messages of a step whose writes are durable."""
        a = self.agent
        for msg in messages:
            if isinstance(msg, DeliveryConfirmed):
                if self.confirms.add(msg.supplier, msg.batch_id):
                    a.later(self.confirms.delay_s, self._flush, msg.supplier)
            elif isinstance(msg, OfferBatch):
                if self.reoffers.start(msg.batch.batch_id):
                    self._offer(msg)
            elif isinstance(msg, WaitingForBatch):
                a.call(msg.supplier, "waiting", msg, a.settings.rpc_timeout,
                       partial(a.detector.answered, msg.supplier))

    def sent(self, effects: Sequence[Effects]) -> None:
        """``then`` of a commit: send what the steps asked for."""
        for e in effects:
            if e.messages:
                self.send(e.messages)

    def take_confirms(self, supplier: str) -> list[str]:
        return self.confirms.take(supplier)

    def give_back_confirms(self, supplier: str, ids: list[str]) -> None:
        if ids:
            self.send(DeliveryConfirmed(supplier, self.agent.node_id, b) for b in ids)

    def _flush(self, supplier: str) -> None:
        a = self.agent
        for bid in self.confirms.flush_due(supplier):
            a.call(supplier, "confirmed", DeliveryConfirmed(supplier, a.node_id, bid),
                   a.settings.rpc_timeout, partial(a.detector.answered, supplier))

    def _offer(self, msg: OfferBatch) -> None:
        a = self.agent
        a.trace.add(a.node_id, f"offer {msg.batch.batch_id} to {msg.consumer}")
        a.call(msg.consumer, "offer", msg, a.settings.rpc_timeout, partial(self._offered, msg))

    def _offered(self, msg: OfferBatch, reply: OfferReply | None) -> None:
        a = self.agent
        self.reoffers.offered(msg.batch.batch_id)
        a.detector.contact(msg.consumer, reply is not None)
        if reply is not None:
            a.commit(a.handle([reply]), self.sent)

    def kick(self, consumers: Iterable[str]) -> None:
        """These consumers came back: re-offer what is in transit to them at once."""
        in_transit = self.agent.node.outbound_in_transit()
        for consumer in sorted(consumers):
            self.reoffers.kick(consumer, in_transit)
        self.arm_retry()

    def arm_retry(self) -> None:
        if not self._retry_armed:
            self._retry_armed = True
            self.agent.later(self.reoffers.tick_every, self._retry_tick)

    def _retry_tick(self) -> None:
        a = self.agent
        self._retry_armed = False
        if self.reoffers.idle(bool(a.node.outbound_in_transit())):
            return
        (effects,) = a.handle([Tick()])
        offers = [m for m in effects.messages if isinstance(m, OfferBatch)]
        for msg in self.reoffers.due(offers, a.clock.now):
            self._offer(msg)
        self.arm_retry()
