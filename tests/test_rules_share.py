"""Who gets a scarce batch, and how long a long-poll is held (fos_agent.rules.share, pure),
with explicit ``now``. The fair queueing's own properties: test_fairshare.py and
test_fillplan.py; the RequestBatch handler that drives it over a real WAL: test_fairshare.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fos_agent.rules.share import MAX_WAIT_MS, FairShare, LongPoll, settle_wait


def test_a_long_poll_waits_its_turn_while_others_served_longer_ago_wait():
    fair = FairShare()
    a = LongPoll(fair, "a", 5000, flow_version=1, now=0.0)
    b = LongPoll(fair, "b", 5000, flow_version=1, now=0.0)
    assert fair.waiting() == {"a": 1, "b": 1}
    assert not a.wait_turn(1, 0.0, closing=False, ended=False)  # never served: by name
    assert b.wait_turn(1, 0.0, closing=False, ended=False)
    assert not b.wait_turn(2, 0.0, closing=False, ended=False)  # two batches: both
    assert not b.wait_turn(0, 0.0, closing=False, ended=False)  # nothing queued: ask
    a.served()
    a.close()
    assert not b.wait_turn(1, 0.1, closing=False, ended=False)
    assert fair.waiting() == {"b": 1}


def test_a_stop_an_end_or_the_deadline_stops_the_wait_for_a_turn():
    fair = FairShare()
    LongPoll(fair, "a", 5000, flow_version=1, now=0.0)
    b = LongPoll(fair, "b", 5000, flow_version=1, now=0.0)
    assert b.wait_turn(1, 1.0, closing=False, ended=False)
    assert not b.wait_turn(1, 1.0, closing=True, ended=False)
    assert not b.wait_turn(1, 1.0, closing=False, ended=True)
    assert not b.wait_turn(1, 5.0, closing=False, ended=False)


def test_an_unavailable_answer_waits_until_the_deadline_a_new_flow_a_stop_or_an_end():
    poll = LongPoll(FairShare(), "a", 4000, flow_version=3, now=10.0)
    assert poll.holding
    assert poll.wait_more(11.0, closing=False, flow_version=3, ended=False) == 3.0
    assert poll.wait_more(14.0, closing=False, flow_version=3, ended=False) is None
    assert poll.wait_more(11.0, closing=True, flow_version=3, ended=False) is None
    assert poll.wait_more(11.0, closing=False, flow_version=4, ended=False) is None
    assert poll.wait_more(11.0, closing=False, flow_version=3, ended=True) is None
    quick = LongPoll(FairShare(), "a", 0, flow_version=3, now=10.0)
    assert not quick.holding
    assert quick.wait_more(10.0, closing=False, flow_version=3, ended=False) is None


@given(st.integers(0, 10 * MAX_WAIT_MS), st.floats(0, 1e6))
def test_no_long_poll_is_held_beyond_the_cap(wait_ms: int, now: float):
    poll = LongPoll(FairShare(), "a", wait_ms, flow_version=1, now=now)
    assert poll.remaining(now) <= MAX_WAIT_MS / 1000.0
    assert poll.wait_more(now + MAX_WAIT_MS / 1000.0, False, 1, False) is None


@given(st.integers(2, 5), st.lists(st.integers(0, 4), min_size=1, max_size=100))
def test_consumers_that_always_wait_take_scarce_batches_in_turn(n: int, asks: list[int]):
    # one batch at a time, whoever asks: the one whose turn it is takes it
    fair = FairShare()
    polls = [LongPoll(fair, f"c{i}", 5000, 1, 0.0) for i in range(n)]
    got = [0] * n
    for ask in asks:
        asking = polls[ask % n]
        taker = asking if not asking.wait_turn(1, 0.0, False, False) else next(
            p for p in polls if not p.wait_turn(1, 0.0, False, False))
        taker.served()
        got[polls.index(taker)] += 1
    assert max(got) - min(got) <= 1


def test_weights_are_asked_for_once_the_flow_settles_or_at_the_longest_delay():
    assert settle_wait(10.0, 10.0, settle_s=1.0, max_delay_s=5.0) == 1.0
    assert settle_wait(10.0, 14.5, settle_s=1.0, max_delay_s=5.0) == 0.5  # the delay ends
    assert settle_wait(10.0, 15.0, settle_s=1.0, max_delay_s=5.0) is None


@given(st.lists(st.floats(0.0, 2.0), max_size=40), st.floats(0.1, 3.0), st.floats(0.1, 10.0))
def test_a_flow_that_keeps_moving_is_asked_about_by_the_longest_delay(
        moves: list[float], settle_s: float, max_delay_s: float):
    # the flow moves again after each gap in ``moves`` (or settles): the wait ends by
    # max_delay_s, and early only when the flow was quiet for settle_s
    now, asked_at = 0.0, None
    for gap in [*moves, float("inf")]:
        wait = settle_wait(0.0, now, settle_s, max_delay_s)
        if wait is None:
            asked_at = now
            break
        if gap >= wait:  # quiet for the whole wait: settled
            asked_at = now + wait
            assert wait == settle_s or asked_at >= max_delay_s - 1e-9
            break
        now += gap
    assert asked_at is not None and asked_at <= max_delay_s + 1e-9
