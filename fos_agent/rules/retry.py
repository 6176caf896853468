"""A supplier's re-offers of batches in transit, and a consumer's piggybacked
confirmations (pure: the caller passes ``now``).

Re-offers (docs/protocol.md: the supplier owns the retries). A batch sent stays IN_TRANSIT
at its supplier until the consumer confirms it; a lost reply or a crashed consumer would
leave it there, so the supplier offers it again (OfferBatch, which the consumer always
takes). The protocol's ``Tick`` lists an OfferBatch for every batch in transit; this table
alone decides which of them go out: each batch is re-offered once it has been in transit
for ``retry_s`` (first seen by a tick, which comes every ``tick_every``), then with doubling
backoff up to ``retry_cap_s``; one offer of a batch at a time. ``kick(consumer, ...)``
makes everything in transit to that consumer due at the next tick (it came back, or is
new in the flow). While nothing is in transit and the table is empty, no tick is needed
(``idle``): the driver sleeps until something goes out, and a batch sent then is first
re-offered ``retry_s`` after the first tick sees it, as always.

Contract (the driver, fos_agent.net.outbox, or a simulation): while not ``idle``, every
``tick_every`` seconds step a ``Tick`` through the engine and pass its OfferBatch
messages to ``due(offers, now)``; send each one it returns and call ``offered(batch_id)``
when that call is over (answered or not). An OfferBatch from any other step goes out only
if ``start(batch_id)`` says so (no second offer of a batch while one is in flight), again
followed by ``offered``.

Confirmations (``PendingConfirms``): a consumer's DeliveryConfirmed messages are collected
per supplier for ``delay_s`` and piggybacked on the next RequestBatch to that supplier
(``take``), else sent as their own RPCs when the delay is over: one RPC per trade instead
of two when a consumer keeps buying.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fos_agent.protocol.messages import OfferBatch
from fos_agent.protocol.records import OutboundRecord


class Reoffers:
    """One supplier's re-offer table (module docstring)."""

    def __init__(self, retry_s: float = 1.0, retry_cap_s: float = 8.0) -> None:
        self.retry_s = retry_s
        self.retry_cap_s = retry_cap_s
        self._due: dict[str, tuple[float, float]] = {}  # batch id -> (next offer, backoff)
        self._offering: set[str] = set()  # batch ids with an OfferBatch in flight

    @property
    def tick_every(self) -> float:
        """Seconds between re-offer ticks while anything is in transit."""
        return self.retry_s / 2

    def idle(self, in_transit: bool) -> bool:
        """No tick needed: nothing is ``in_transit`` and nothing is waiting to be offered."""
        return not self._due and not in_transit

    def offering(self, batch_id: str) -> bool:
        """An offer of ``batch_id`` is in flight."""
        return batch_id in self._offering

    def start(self, batch_id: str) -> bool:
        """An offer of ``batch_id`` is about to be sent: False (do not send) when one is
        already in flight."""
        if batch_id in self._offering:
            return False
        self._offering.add(batch_id)
        return True

    def offered(self, batch_id: str) -> None:
        """The offer of ``batch_id`` is over (answered, refused or unreachable)."""
        self._offering.discard(batch_id)

    def kick(self, consumer: str, in_transit: Iterable[OutboundRecord]) -> None:
        """Make every batch ``in_transit`` to ``consumer`` due at the next tick."""
        for rec in in_transit:
            if rec.to == consumer:
                self._due[rec.batch_id] = (0.0, self.retry_s)

    def due(self, offers: Sequence[OfferBatch], now: float) -> list[OfferBatch]:
        """The offers to send now, out of a Tick's (one per batch in transit), each
        marked in flight (``start``); batches no longer listed are forgotten (confirmed,
        reclaimed)."""
        out: list[OfferBatch] = []
        listed: set[str] = set()
        for msg in offers:
            bid = msg.batch.batch_id
            listed.add(bid)
            entry = self._due.get(bid)
            if entry is None:  # first seen: offered again after retry_s
                self._due[bid] = (now + self.retry_s, self.retry_s)
                continue
            at, backoff = entry
            if now >= at and self.start(bid):
                out.append(msg)
                self._due[bid] = (now + backoff, min(backoff * 2, self.retry_cap_s))
        for bid in [b for b in self._due if b not in listed]:
            del self._due[bid]
        return out


class PendingConfirms:
    """A consumer's DeliveryConfirmed batch ids waiting per supplier (module docstring)."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self._ids: dict[str, dict[str, None]] = {}  # supplier -> batch ids, in order
        self._timed: set[str] = set()  # suppliers with a flush timer set

    def add(self, supplier: str, batch_id: str) -> bool:
        """A confirmation for ``supplier``; True when the caller must set a timer of
        ``delay_s`` and then call ``flush_due(supplier)``."""
        self._ids.setdefault(supplier, {})[batch_id] = None
        if supplier in self._timed:
            return False
        self._timed.add(supplier)
        return True

    def take(self, supplier: str) -> list[str]:
        """The pending confirmations for ``supplier`` (to piggyback on a RequestBatch, or
        to send), removed from the table."""
        ids = self._ids.pop(supplier, None)
        return list(ids) if ids else []

    def flush_due(self, supplier: str) -> list[str]:
        """The timer for ``supplier`` went off: the confirmations to
        send now as their own RPCs."""
        self._timed.discard(supplier)
        return self.take(supplier)

    def suppliers(self) -> list[str]:
        """Suppliers with confirmations pending."""
        return list(self._ids)
