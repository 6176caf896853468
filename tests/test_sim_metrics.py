"""Run bookkeeping: counters across incarnations, death classification, reroute times."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.metrics import (
    FIRST_OUTPUT_AT,
    RECEIVED_AT_PREFIX,
    RECEIVED_FROM_PREFIX,
    CounterBook,
    DeathLedger,
    RerouteTracker,
    StatsSchedule,
    first_output_s,
)
from bench.stats import percentile, spread

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def test_counters_are_summed_over_incarnations_using_each_ones_maximum():
    book = CounterBook()
    book.record("a", 1, 1, {"cycles": 3}, 1.0, in_flow=True)
    book.record("a", 1, 1, {"cycles": 7}, 2.0)
    book.record("a", 1, 1, {"cycles": 5}, 2.5)  # a late, older answer never lowers a counter
    book.record("a", 2, 2, {"cycles": 4, "wal_recovered": 2}, 3.0)
    # a restart whose agent kept the same incarnation number is still a new incarnation
    book.record("a", 3, 2, {"cycles": 1}, 4.0)
    assert book.totals("a") == {"cycles": 12.0, "wal_recovered": 2.0}
    assert book.current("a") == {"cycles": 1.0}
    assert book.nodes["a"].ever_in_flow and not book.nodes["a"].in_flow
    assert book.metric_names() == ["cycles", "wal_recovered"]
    assert book.totals("missing") == {} and book.current("missing") == {}
    book.mark_baseline()  # the run's clock starts: count only what comes after
    book.record("a", 3, 2, {"cycles": 3}, 5.0)
    book.record("b", 1, 1, {"cycles": 2}, 5.0)
    assert book.totals("a") == {"cycles": 2.0, "wal_recovered": 0.0}
    assert book.totals("b") == {"cycles": 2.0}


@settings(max_examples=100 * (50 if DEEP else 1))
@given(st.lists(st.lists(st.integers(0, 1000), min_size=1, max_size=6), min_size=1, max_size=5))
def test_counter_totals_equal_the_sum_of_final_values_per_incarnation(incarnations):
    book = CounterBook()
    t = 0.0
    for n, readings in enumerate(incarnations):
        running = 0
        for r in readings:
            running += r  # counters are monotone within an incarnation
            t += 1
            book.record("x", n + 1, n + 1, {"c": running}, t)
    assert book.totals("x")["c"] == sum(sum(r) for r in incarnations)


def test_deaths_of_killed_nodes_are_true_and_others_false():
    ledger = DeathLedger(grace_s=2.0)
    for node in "abc":
        ledger.observe(node, True, 0.0)
    ledger.killed("a", 1.0)
    assert ledger.observe("a", False, 3.0).true_death  # declared while dead
    assert ledger.observe("a", False, 3.5) is None  # still down: not a new declaration
    ledger.restarted("a", 5.0)
    ledger.observe("a", True, 6.0)
    assert not ledger.observe("b", False, 6.0).true_death  # never killed: false death
    # killed and restarted, declared within the rejoin grace window: the old incarnation died
    ledger.killed("c", 10.0)
    ledger.restarted("c", 10.5)
    ledger.observe("c", True, 11.0)
    assert ledger.observe("c", False, 12.0).true_death
    ledger.observe("c", True, 13.0)
    # long after the restart and grace: a false death
    assert not ledger.observe("c", False, 30.0).true_death
    assert (ledger.declared, ledger.false) == (4, 2)


def test_reroute_time_is_first_batch_from_another_supplier_after_the_kill():
    tracker = RerouteTracker()
    suppliers = {"wood": ["s1", "s2", "s3"]}
    before = {RECEIVED_FROM_PREFIX + "s1": 10, RECEIVED_FROM_PREFIX + "s2": 4}
    tracker.supplier_killed("s1", 100.0, {"c1": "wood", "c2": "wood"}, {"c1": before})
    # more from the dead supplier (in flight before the kill) is not a reroute
    assert tracker.observe("c1", {RECEIVED_FROM_PREFIX + "s1": 11}, 100.5, suppliers) == []
    assert tracker.observe("c1", {**before, RECEIVED_FROM_PREFIX + "s3": 1}, 101.5, suppliers) == [
        pytest.approx(1.5)
    ]
    # the exact arrival time wins over the poll time when the agent exposes it
    counters = {RECEIVED_FROM_PREFIX + "s2": 1, RECEIVED_AT_PREFIX + "s2": 100.8}
    assert tracker.observe("c2", counters, 102.0, suppliers) == [pytest.approx(0.8)]
    assert tracker.durations_s == [pytest.approx(1.5), pytest.approx(0.8)]
    assert tracker.pending == []


def test_reroutes_of_dead_consumers_and_unfinished_ones_are_abandoned():
    tracker = RerouteTracker()
    tracker.supplier_killed("s1", 1.0, {"c1": "wood", "c2": "wood"}, {})
    tracker.consumer_died("c1")
    # the receipts ring gives the first receipt from another supplier of that item exactly
    receipts = [("s1", "wood", 1.2), ("s2", "glue", 1.3), ("s2", "wood", 0.9),
                ("s2", "wood", 1.6), ("s2", "wood", 2.5)]  # fmt: skip
    done = tracker.observe("c2", {}, 3.0, {"wood": ["s1", "s2"]}, receipts)
    assert done == [pytest.approx(0.6)]
    tracker.supplier_killed("s2", 4.0, {"c2": "wood"}, {})
    tracker.supplier_killed("s3", 4.0, {"c3": "wood"}, {})
    tracker.supplier_restarted("s3")  # back before c3 took wood from anyone else
    assert tracker.observe("c3", {}, 5.0, {"wood": ["s2", "s3"]}, [("s2", "wood", 4.5)]) == []
    tracker.finish()
    assert (tracker.abandoned, tracker.recovered) == (2, 1)


def test_percentiles_and_spread():
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    s = spread([1.0, 2.0, 3.0, 10.0])
    assert (s.min, s.max, s.mean, s.median) == (1.0, 10.0, 4.0, 2.5)
    assert s.std == pytest.approx(3.5355, abs=1e-3)
    assert spread([]) is None


def test_final_producers_are_read_every_second_between_full_reads():
    # the first product was measured up to 5 s late: a full read pushed the final
    # producers' next read to the next full read (issue 14)
    schedule = StatsSchedule(full_every_s=5.0, final_every_s=1.0)
    reads = {t / 10: schedule.due(t / 10) for t in range(0, 121)}  # every 0.1 s for 12 s
    full = [t for t, (everyone, _) in reads.items() if everyone]
    final = [t for t, (_, finals) in reads.items() if finals]
    assert full == [0.0, 5.0, 10.0]
    assert final == [float(t) for t in range(0, 13)]
    assert all(reads[t][1] for t in full)  # a full read reads the final producers too


def test_first_output_is_the_agents_own_stamp_and_never_summed():
    assert first_output_s({}, 1000.0) is None
    assert first_output_s({FIRST_OUTPUT_AT: 0.0}, 1000.0) is None
    assert first_output_s({FIRST_OUTPUT_AT: 1010.25}, 1000.0) == pytest.approx(10.25)
    book = CounterBook()
    book.record("a", 1, 1, {FIRST_OUTPUT_AT: 1010.0, "cycles": 2}, 1.0)
    book.record("a", 2, 2, {FIRST_OUTPUT_AT: 1030.0, "cycles": 1}, 2.0)  # a restart
    assert FIRST_OUTPUT_AT not in book.totals("a")
    assert book.totals("a")["cycles"] == 3
