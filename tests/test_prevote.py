"""The pre-vote rules (fos_raft.replica.prevote), without processes: who grants, and when a
round is won. The real-process proof is in tests/test_partition.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fos_raft.replica.prevote import LogPosition, Round, grant

positions = st.builds(LogPosition, st.integers(0, 5), st.integers(0, 20))


@given(asked=st.integers(0, 8), mine=st.integers(0, 8), asker=positions, me=positions,
       leader=st.booleans(), heard=st.booleans())
def test_grant_only_without_a_working_leader_to_an_up_to_date_asker(
        asked: int, mine: int, asker: LogPosition, me: LogPosition, leader: bool,
        heard: bool) -> None:
    ok = grant(asked_term=asked, asker_log=asker, my_term=mine, my_log=me,
               i_am_leader=leader, leader_heard_recently=heard)
    # a real vote would go the same way (Raft's log rule), and a working leader blocks it
    assert ok == (not leader and not heard and asked > mine
                  and (asker.term, asker.index) >= (me.term, me.index))


def test_a_round_is_won_with_a_majority_counting_the_asker() -> None:
    r = Round(term=3, members=5)
    r.reply("a", 4, True)
    assert not r.won  # 2 of 5
    r.reply("a", 4, True)  # the same peer twice counts once
    r.reply("b", 5, True)  # an answer for another term does not count
    r.reply("c", 4, False)
    assert not r.won
    r.reply("d", 4, True)
    assert r.won  # asker + a + d = 3 of 5


@given(members=st.integers(1, 7), grants=st.sets(st.sampled_from("abcdef")))
def test_won_means_a_strict_majority(members: int, grants: set[str]) -> None:
    r = Round(term=0, members=members)
    for peer in grants:
        r.reply(peer, 1, True)
    assert r.won == (len(grants) + 1 > members / 2)
