"""Compaction in the protocol model (fos_agent.protocol.compaction + the test kit): settled
records leave the live state, yet late and duplicated messages about them are answered as
before and never accepted as new (I1); crash-safety is covered by the stateful machines of
tests/test_protocol_stateful.py, whose ops include ``compact``."""

from __future__ import annotations

from hypothesis import given, settings

from fos_agent.protocol.messages import BatchSent, OfferBatch, OfferReply, RequestBatch
from fos_agent.protocol.records import InState, OutState
from fos_agent.testing import Simulation, check_schedule, fault_schedules, two_by_two


def _flush_deliver(sim: Simulation, kind: type | None = None) -> None:
    """Deliver everything in flight (or only messages of ``kind``), flushing as we go."""
    while True:
        idx = next((i for i, m in enumerate(sim.network.in_flight)
                    if kind is None or isinstance(m, kind)), None)
        if idx is None:
            return
        target = sim.deliver(idx)
        if target is not None:
            sim.flush(target, len(sim.nodes[target].pending))


def _one_trade(sim: Simulation) -> RequestBatch:
    """S1 makes a batch, C1 requests it and gets it (immediate arrival): returns the
    request, so a test can replay it later."""
    sim.produce("S1")
    sim.flush("S1", 9)
    sim.request("C1", "S1")
    sim.flush("C1", 9)
    (request,) = [m for m in sim.network.in_flight if isinstance(m, RequestBatch)]
    _flush_deliver(sim, RequestBatch)
    _flush_deliver(sim, BatchSent)
    return request


def test_late_offer_of_a_compacted_batch_is_answered_consumed() -> None:
    sim = Simulation(two_by_two(immediate_arrival=True))
    _one_trade(sim)
    sim.network.in_flight.clear()  # the DeliveryConfirmed is lost: S1 stays IN_TRANSIT
    sim.produce("C1")
    sim.flush("C1", 9)
    sim.compact("C1")
    (bid,) = sim.nodes["C1"].store.settled_in
    assert sim.nodes["C1"].node.inbound(bid) is None  # forgotten in memory too
    sim.tick("S1")
    sim.flush("S1", 9)
    _flush_deliver(sim, OfferBatch)
    (reply,) = [m for m in sim.network.in_flight if isinstance(m, OfferReply)]
    assert reply.state is InState.CONSUMED
    assert bid not in sim.nodes["C1"].store.durable.inbound  # not accepted as new
    _flush_deliver(sim)
    assert sim.nodes["S1"].store.durable.outbound[bid].state is OutState.DELIVERED
    sim.compact("S1")
    assert not sim.nodes["S1"].store.durable.outbound
    sim.heal()
    sim.check_safety()
    sim.check_convergence()


def test_retried_request_after_compaction_gets_the_same_batch() -> None:
    sim = Simulation(two_by_two(immediate_arrival=True))
    request = _one_trade(sim)
    _flush_deliver(sim)
    sim.produce("S1")  # a second batch is QUEUED: a new request would get it
    sim.flush("S1", 9)
    sim.compact("S1")
    sim.compact("C1")
    assert not sim.nodes["S1"].store.durable.requests
    sim.network.send([request])  # the old request arrives again, very late
    _flush_deliver(sim, RequestBatch)
    (sent,) = [m for m in sim.network.in_flight if isinstance(m, BatchSent)]
    assert sent.batch.batch_id == "S1:1"  # the settled batch, not the queued S1:2
    assert [b.batch_id for b in sim.nodes["S1"].node.outbound_queued()] == ["S1:2"]
    _flush_deliver(sim)
    assert list(sim.nodes["C1"].store.durable.inbound) == ["S1:1"]  # still the one batch
    assert sim.nodes["S1"].store.durable.outbound["S1:2"].state is OutState.QUEUED
    sim.check_safety()


@settings(max_examples=150, deadline=None)
@given(fault_schedules(kinds=("produce", "request", "deliver", "flush", "arrive", "tick",
                              "duplicate", "crash", "compact")))
def test_schedules_with_compaction_converge(schedule) -> None:  # type: ignore[no-untyped-def]
    check_schedule(two_by_two(), schedule)
