"""Sending the protocol's messages, and the supplier-owned retries.

``Outbox.send(messages)`` takes the messages of a step whose writes are already durable
(the engine guarantees it) and delivers them in the background:

- DeliveryConfirmed: collected per supplier for ``confirm_delay_s`` and piggybacked on the
  next RequestBatch to that supplier (``take_confirms``), else sent as their own RPCs:
  one RPC per trade instead of two when a consumer keeps buying.
- WaitingForBatch: one RPC; a lost one is repaired by the supplier's re-offer.
- OfferBatch: one RPC; the consumer's answer goes back into the protocol (OfferReply).

Retries (docs/protocol.md: the supplier owns them): while anything is in transit, a Tick
every ``retry_s / 2`` lists the IN_TRANSIT batches and the re-offer table
(fos_agent.rules.retry.Reoffers, which holds the rule: after ``retry_s``, then doubling
backoff up to ``retry_cap_s``) picks the ones to offer now; while nothing is, the loop
waits for the outbound queue to change. ``kick(consumer)`` re-offers at the next tick (the
consumer came back). The confirmations' delay is fos_agent.rules.retry.PendingConfirms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any

from fos_agent.core.engine import Engine
from fos_agent.net.client import PeerClient, PeerRefused, PeerUnreachable
from fos_agent.protocol.messages import (
    DeliveryConfirmed,
    Message,
    OfferBatch,
    Tick,
    WaitingForBatch,
)
from fos_agent.rules.retry import PendingConfirms, Reoffers
from fos_raft.runtime.logging import get_logger


class Outbox:
    def __init__(self, engine: Engine, client: PeerClient, *, retry_s: float = 1.0,
                 retry_cap_s: float = 8.0, confirm_delay_s: float = 0.05) -> None:
        self.engine = engine
        self.client = client
        self.retry_s = retry_s
        self.retry_cap_s = retry_cap_s
        self.confirm_delay_s = confirm_delay_s
        self.log = get_logger("fos_agent.net.outbox").bind(node=client.node_id)
        self.confirms = PendingConfirms(confirm_delay_s)
        self.reoffers = Reoffers(retry_s, retry_cap_s)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._confirming: set[asyncio.Task[Any]] = set()  # _flush_later tasks
        self._closed = False

    # ---- sending ---------------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            if isinstance(msg, DeliveryConfirmed):
                if self.confirms.add(msg.supplier, msg.batch_id):
                    task = self._spawn(self._flush_later(msg.supplier))
                    if task is not None:
                        self._confirming.add(task)
                        task.add_done_callback(self._confirming.discard)
            elif isinstance(msg, WaitingForBatch):
                self._spawn(self._quiet(self.client.waiting(msg)))
            elif isinstance(msg, OfferBatch):
                self._start_offer(msg)
            else:  # RequestBatch is sent by the input fetchers, which await its reply
                self.log.warning("outbox cannot send", message=type(msg).__name__)

    def take_confirms(self, supplier: str) -> list[str]:
        """Pending confirmations for ``supplier``, to piggyback on a RequestBatch."""
        return self.confirms.take(supplier)

    def give_back_confirms(self, supplier: str, ids: list[str]) -> None:
        """The RequestBatch that carried them got no answer: send them later."""
        if ids:
            self.send(DeliveryConfirmed(supplier, self.client.node_id, b) for b in ids)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        if self._closed:
            coro.close()
            return None
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _quiet(call: Coroutine[Any, Any, Any]) -> None:
        with contextlib.suppress(PeerUnreachable, PeerRefused):
            await call

    async def _flush_later(self, supplier: str) -> None:
        await asyncio.sleep(self.confirms.delay_s)  # cancelled only when closing
        await self._send_confirms(supplier, self.confirms.flush_due(supplier))

    async def _send_confirms(self, supplier: str, ids: list[str]) -> None:
        calls = [self.client.confirmed(DeliveryConfirmed(supplier, self.client.node_id, b))
                 for b in ids]
        await asyncio.gather(*(self._quiet(c) for c in calls))

    async def flush_confirms(self, supplier: str | None = None) -> None:
        """Send pending confirmations now (all suppliers when None)."""
        suppliers = [supplier] if supplier is not None else self.confirms.suppliers()
        await asyncio.gather(*(self._send_confirms(s, self.take_confirms(s))
                               for s in suppliers))

    def _start_offer(self, msg: OfferBatch) -> None:
        if self.reoffers.start(msg.batch.batch_id):
            self._spawn_offer(msg)

    def _spawn_offer(self, msg: OfferBatch) -> None:
        """Send ``msg``, already marked in flight in the re-offer table."""
        if self._spawn(self._offer(msg)) is None:
            self.reoffers.offered(msg.batch.batch_id)

    async def _offer(self, msg: OfferBatch) -> None:
        try:
            reply = await self.client.offer(msg)
            (effects,) = await self.engine.step(reply)
            self.send(effects.messages)
        except (PeerUnreachable, PeerRefused) as exc:
            self.log.debug("offer failed", batch=msg.batch.batch_id, error=str(exc))
        except Exception as exc:  # engine recovering; the next tick offers again
            self.log.warning("offer reply not recorded", batch=msg.batch.batch_id,
                             error=str(exc))
        finally:
            self.reoffers.offered(msg.batch.batch_id)

    # ---- retries ---------------------------------------------------------------------------

    def kick(self, consumer: str) -> None:
        """Re-offer everything in transit to ``consumer`` at the next tick."""
        node = self.engine.node
        if node is not None:
            self.reoffers.kick(consumer, node.outbound_in_transit())

    def _idle(self) -> bool:
        node = self.engine.node
        return node is not None and self.reoffers.idle(bool(node.outbound_in_transit()))

    async def retry_once(self, now: float) -> int:
        """One retry tick at ``now`` (loop time); returns how many offers it started."""
        if self._idle():
            return 0  # nothing in transit: the Tick would offer nothing (an idle agent's
            # most frequent wake-up costs no engine step)
        (effects,) = await self.engine.step(Tick())
        offers = [m for m in effects.messages if isinstance(m, OfferBatch)]
        due = self.reoffers.due(offers, now)
        for msg in due:
            self._spawn_offer(msg)
        return len(due)

    async def run_retries(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            changed = self.engine.outbound_changed.ticket()  # before looking: no lost wake-up
            if self._idle():
                # nothing in transit: sleep until something goes out (an idle agent's most
                # frequent wake-up otherwise); a batch sent starts the clock here
                await changed.wait()
            await asyncio.sleep(self.reoffers.tick_every)
            try:
                await self.retry_once(loop.time())
            except Exception as exc:  # engine recovering: try again next tick
                self.log.warning("retry tick failed", error=str(exc))

    async def close(self, flush: bool = True) -> None:
        """Stop sending. ``flush``: first send the pending confirmations and let those
        already on their way arrive (2 s at most), so a clean stop leaves its suppliers
        nothing in transit; cancelling a confirmation mid-RPC lost it (seen in a test)."""
        if flush:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.flush_confirms()
                    await asyncio.gather(*self._confirming, return_exceptions=True)
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
