"""A supplier's re-offer table and a consumer's pending confirmations
(fos_agent.rules.retry, pure), with explicit ``now``. The Outbox that drives them over real
gRPC: test_agent_peer.py, test_outbox_close.py."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fos_agent.protocol.messages import OfferBatch
from fos_agent.protocol.records import Batch, OutboundRecord, OutState
from fos_agent.rules.retry import PendingConfirms, Reoffers


def offer(n: int, consumer: str = "c") -> OfferBatch:
    return OfferBatch("s", consumer, Batch(f"s:{n}", "wood", 1, "s", n))


def record(n: int, consumer: str) -> OutboundRecord:
    return OutboundRecord(offer(n, consumer).batch, OutState.IN_TRANSIT, to=consumer)


def offer_times(table: Reoffers, until: float, answered: bool = True) -> list[float]:
    """Tick every ``tick_every`` with one batch in transit; when it was offered."""
    times = []
    now = 0.0
    while now <= until:
        for msg in table.due([offer(1)], now):
            times.append(now)
            if answered:
                table.offered(msg.batch.batch_id)
        now += table.tick_every
    return times


def test_a_batch_in_transit_is_offered_after_retry_s_then_with_doubling_backoff():
    table = Reoffers(retry_s=1.0, retry_cap_s=8.0)
    times = offer_times(table, 40.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == 1.0  # first seen at 0, offered retry_s later
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0] and set(gaps[4:]) == {8.0}  # capped


def test_one_offer_of_a_batch_at_a_time():
    table = Reoffers(retry_s=1.0)
    assert offer_times(table, 40.0, answered=False) == [1.0]  # never answered: never again
    assert table.offering("s:1") and not table.start("s:1")
    table.offered("s:1")
    assert table.start("s:1") and not table.start("s:1")


def test_a_kicked_consumer_gets_its_batches_at_the_next_tick():
    table = Reoffers(retry_s=1.0)
    assert table.due([offer(1, "c"), offer(2, "d")], 0.0) == []  # first seen
    table.kick("c", [record(1, "c"), record(2, "d")])
    assert table.due([offer(1, "c"), offer(2, "d")], 0.5) == [offer(1, "c")]


def test_batches_no_longer_in_transit_are_forgotten_and_the_table_goes_idle():
    table = Reoffers()
    assert table.idle(in_transit=False)
    table.due([offer(1)], 0.0)
    assert not table.idle(in_transit=False)  # one is waiting to be offered
    table.due([], 0.5)  # confirmed meanwhile
    assert table.idle(in_transit=False) and not table.idle(in_transit=True)


@given(st.lists(st.floats(0.01, 3.0), min_size=1, max_size=40), st.floats(0.1, 5.0),
       st.floats(0.1, 20.0))
def test_offers_of_a_batch_are_never_closer_than_retry_s_nor_further_than_the_cap(
        gaps: list[float], retry_s: float, cap: float):
    table = Reoffers(retry_s=retry_s, retry_cap_s=cap)
    now, times = 0.0, []
    for gap in gaps:
        for msg in table.due([offer(1)], now):
            times.append(now)
            table.offered(msg.batch.batch_id)
        now += gap
    spacing = [b - a for a, b in itertools.pairwise(times)]
    assert all(s >= min(retry_s, cap) - 1e-9 for s in spacing)
    longest = max(retry_s, cap) + max(gaps)  # the backoff, plus the tick that sees it
    assert all(s <= longest + 1e-9 for s in spacing)


def test_confirmations_wait_for_a_request_or_their_timer():
    pending = PendingConfirms(delay_s=0.05)
    assert pending.add("s", "s:1")  # the first: set a timer
    assert not pending.add("s", "s:2")  # the timer is set already
    assert pending.add("t", "t:1")
    assert pending.take("s") == ["s:1", "s:2"]  # piggybacked on a RequestBatch
    assert pending.flush_due("s") == []  # nothing left when the timer goes off
    assert pending.suppliers() == ["t"]
    assert pending.flush_due("t") == ["t:1"]
    assert pending.add("s", "s:3")  # a new timer after the last went off
