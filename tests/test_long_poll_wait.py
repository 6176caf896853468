"""The first supplier's long-poll wait (fos_agent.rules.fetch.long_poll_wait_ms): long
only while no backup may have goods, so a 20 s long-poll never leaves a backup's batches
unsold for longer than a 4 s one would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fos_agent.rules.fetch import FetchSettings, long_poll_wait_ms

S = FetchSettings(long_poll_ms=20000, long_poll_min_ms=4000)


def test_no_backup_waits_the_whole_long_poll():
    assert long_poll_wait_ms(S, [], now=100.0) == 20000


def test_a_backup_that_may_have_goods_keeps_the_wait_short():
    # due now (never asked, or it sold us something): the wait is the floor, as before
    assert long_poll_wait_ms(S, [100.0, 150.0], now=100.0) == 4000


def test_backups_backing_off_let_the_wait_run_until_the_first_is_due():
    assert long_poll_wait_ms(S, [116.0, 112.5], now=100.0) == 12500
    assert long_poll_wait_ms(S, [190.0], now=100.0) == 20000  # capped


def test_a_long_poll_setting_below_the_floor_wins():
    short = FetchSettings(long_poll_ms=1000, long_poll_min_ms=4000)
    assert long_poll_wait_ms(short, [100.0], now=100.0) == 1000
    assert long_poll_wait_ms(short, [], now=100.0) == 1000


@given(st.lists(st.floats(-1e4, 1e4), max_size=6), st.integers(0, 60000),
       st.integers(0, 60000))
def test_the_wait_stays_within_its_bounds_and_ends_by_the_first_due_backup(
        due: list[float], long_ms: int, min_ms: int):
    settings = FetchSettings(long_poll_ms=long_ms, long_poll_min_ms=min_ms)
    wait = long_poll_wait_ms(settings, due, now=0.0)
    assert min(min_ms, long_ms) <= wait <= long_ms
    if due and wait > min(min_ms, long_ms):
        assert wait <= min(due) * 1000  # no backup due becomes due during a longer wait
