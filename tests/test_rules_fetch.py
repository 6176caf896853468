"""A consumer's supplier choice (fos_agent.rules.fetch, pure), with explicit ``now``: order,
cooldown, the backoff of backups that had nothing, the buffer target, the idle pause and
the first-article plan's follower. The real fetcher over real peers: test_agent_peer.py."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from fos_agent.rules.fetch import (
    Answer,
    FetchSettings,
    PlanFollow,
    PlanStep,
    Supplier,
    SupplierChoice,
    batches_to_ask,
    target,
)

S = FetchSettings()
A, B, C = Supplier("a", 0, True), Supplier("b", 1, True), Supplier("c", 2, True)


def ids(suppliers: list[Supplier]) -> list[str]:
    return [s.node_id for s in suppliers]


def test_suppliers_go_in_rank_order_failed_ones_last():
    choice = SupplierChoice(S)
    assert ids(choice.order((C, A, B), (), 0.0)) == ["a", "b", "c"]
    assert ids(choice.order((A, B, C), {"a"}, 0.0)) == ["b", "c", "a"]  # suspected
    down = Supplier("a", 0, False)
    assert ids(choice.order((down, B, C), (), 0.0)) == ["b", "c", "a"]  # down in the flow


def test_a_supplier_that_gave_no_answer_is_asked_last_for_the_cooldown():
    choice = SupplierChoice(S)
    choice.answered("a", 0, Answer.UNREACHABLE, now=10.0)
    assert ids(choice.order((A, B), (), 10.0 + S.cooldown_s - 0.01)) == ["b", "a"]
    assert ids(choice.order((A, B), (), 10.0 + S.cooldown_s)) == ["a", "b"]
    # a refusal or a cut call says nothing about reachability: no cooldown
    choice.answered("b", 0, Answer.NO_ANSWER, now=20.0)
    choice.answered("a", 0, Answer.REFUSED, now=20.0)
    assert ids(choice.order((A, B), (), 20.0)) == ["a", "b"]
    # heard from again (any reply): the cooldown ends at once
    choice.answered("a", 0, Answer.UNREACHABLE, now=30.0)
    choice.answered("a", None, Answer.NONE, now=30.5)
    assert ids(choice.order((A, B), (), 30.5)) == ["a", "b"]


def test_a_backup_with_nothing_is_skipped_with_doubling_backoff_while_the_first_answers():
    choice = SupplierChoice(S)
    now = 0.0
    expected = [4.0, 8.0, 16.0, 16.0]
    for backoff in expected:
        assert not choice.should_skip(B, 1, True, now)
        choice.answered("b", 1, Answer.NONE, now)
        assert choice.should_skip(B, 1, True, now + backoff - 0.01)
        assert not choice.should_skip(B, 1, False, now + 0.01)  # first did not answer: ask
        now += backoff
    choice.answered("b", 1, Answer.SENT, now)  # it had goods: due at once again
    assert not choice.should_skip(B, 1, True, now + 0.01)
    assert choice.asked_after("b", now) == now
    # the first supplier is never backed off, whatever it answers
    choice.answered("a", 0, Answer.NONE, now)
    assert not choice.should_skip(A, 0, True, now + 1)


def test_the_first_wait_ends_when_the_earliest_backup_is_due():
    choice = SupplierChoice(S)
    assert choice.first_wait_ms([A], 0.0) == S.long_poll_ms  # no backup: long
    assert choice.first_wait_ms([A, B], 0.0) == S.long_poll_min_ms  # b may have goods
    choice.answered("b", 1, Answer.NONE, 0.0)  # b backs off 4 s, then 8 s
    choice.answered("b", 1, Answer.NONE, 4.0)
    assert choice.first_wait_ms([A, B], 4.0) == 8000
    choice.answered("c", 2, Answer.NONE, 4.0)  # c due at 8.0: the earliest
    assert choice.first_wait_ms([A, B, C], 4.0) == S.long_poll_min_ms


@given(st.lists(st.tuples(st.sampled_from(list(Answer)), st.floats(0, 30)), max_size=30))
def test_a_backup_is_never_skipped_longer_than_the_longest_backoff(
        answers: list[tuple[Answer, float]]):
    choice = SupplierChoice(S)
    now = 0.0
    for answer, gap in answers:
        now += gap
        choice.answered("b", 1, answer, now)
        assert choice.asked_after("b", now) <= now + S.empty_backoff_max_s
        assert not choice.should_skip(B, 1, True, now + S.empty_backoff_max_s)
        if answer is not Answer.NONE and answer is not Answer.SENT:
            continue
        assert choice.should_skip(B, 1, True, now) == (answer is Answer.NONE)


@given(st.integers(0, 10), st.one_of(st.none(), st.integers(0, 10)),
       st.one_of(st.none(), st.integers(0, 10)))
def test_the_target_keeps_prefetch_within_the_scarcest_input_and_the_output_room(
        prefetch: int, scarcest: int | None, room: int | None):
    t = target(prefetch, scarcest, room)
    assert 0 <= t <= max(prefetch, 1)
    if room is not None:
        assert t <= room
    if scarcest is not None:
        assert t <= max(1, scarcest + 1)
        if room is None or room > 0:
            assert t >= 1  # one of each input is always worth having
    if scarcest is None and room is None:
        assert t == prefetch


def test_targets_and_batch_counts():
    assert target(2, None, None) == 2
    assert target(4, 0, None) == 1  # another input is missing: do not hoard this one
    assert target(4, 1, None) == 2
    assert target(4, None, 0) == 0  # the output is blocked: buy nothing
    assert batches_to_ask(FetchSettings(per_request=8), 20, 2) == 8
    assert batches_to_ask(FetchSettings(per_request=8), 3, 2) == 1
    assert batches_to_ask(FetchSettings(per_request=8), 2, 2) == 1


def test_a_round_that_got_nothing_fast_pauses():
    choice = SupplierChoice(S)
    assert choice.idle_pause(False, 1.0, 1.0 + S.idle_pause_s / 2) == S.idle_pause_s
    assert choice.idle_pause(False, 1.0, 1.0 + S.idle_pause_s) == 0.0  # it waited anyway
    assert choice.idle_pause(True, 1.0, 1.0) == 0.0


def test_the_plan_follower_asks_a_planned_backup_and_drops_an_idle_one():
    follow = PlanFollow(SupplierChoice(S))
    sup = (A, B)

    def step(nxt: str | None, planned: bool = True, started: bool = True, have: int = 0,
             suspected: frozenset[str] = frozenset()) -> PlanStep:
        return follow.step(nxt, planned, started, sup, suspected, have, 2, 0.0)

    assert step(None, planned=False) is PlanStep.WAIT_PLAN
    assert step("b", started=False) is PlanStep.WAIT_PLAN
    assert step(None) is PlanStep.DONE
    assert step("a") is PlanStep.WAIT_FLOW  # our first supplier: the workers ask it
    assert step("b", have=2) is PlanStep.WAIT_NEED
    assert step("x") is PlanStep.DROP  # not ours in this flow
    assert step("b", suspected=frozenset({"b"})) is PlanStep.DROP
    assert step("b") is PlanStep.ASK
    assert follow.asked(Answer.SENT, flow_moved=False) == 0.0
    for _ in range(S.plan_rounds):  # nothing, plan_rounds times: dropped
        assert step("b") is PlanStep.ASK
        assert follow.asked(Answer.NONE, flow_moved=False) == 0.0
    assert step("b") is PlanStep.DROP
    assert step("b") is PlanStep.ASK  # the count starts over for the next planned batch
    assert follow.asked(Answer.UNREACHABLE, flow_moved=False) == S.idle_pause_s  # no spin
    assert follow.asked(Answer.NO_ANSWER, flow_moved=True) == 0.0  # a new flow: look again


def test_the_rules_load_without_the_io_stack():
    # a simulation drives the rules without asyncio, gRPC or LMDB loaded at all
    code = ("import sys, fos_agent.rules; "
            "print(sorted(m for m in ('asyncio', 'grpc', 'lmdb', 'random') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
