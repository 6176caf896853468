"""The history checker (tests/linearizability.py) on hand-made histories, and a hypothesis
property: every history generated from the sequential model, with arbitrary overlap and
unknown outcomes, is accepted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from linearizability import Op, check, check_key, versions_seen

K = "saw-1"
INIT = (1, 5)  # value 1 at version 5


def read(c: int, t0: float, t1: float, value: int, version: int) -> Op:
    return Op(c, K, "read", t0, t1, value=value, version=version)


def cas(c: int, t0: float, t1: float | None, expected: int, value: int,
        outcome: str = "ok", version: int = 0) -> Op:
    return Op(c, K, "cas", t0, t1, value=value, version=version, expected=expected,
              outcome=outcome)


def ok(history: list[Op]) -> bool:
    return check_key(K, INIT, history).ok


def test_sequential_write_then_read_is_accepted() -> None:
    assert ok([cas(0, 0, 1, 5, 2, version=6), read(1, 2, 3, 2, 6)])


def test_stale_read_after_completed_write_is_rejected() -> None:
    # The write completed at t=1; a read invoked at t=2 still sees the old value.
    verdict = check_key(K, INIT, [cas(0, 0, 1, 5, 2, version=6), read(1, 2, 3, 1, 5)])
    assert not verdict.ok and "no linearization" in verdict.detail


def test_concurrent_read_may_see_either_value() -> None:
    assert ok([cas(0, 0, 3, 5, 2, version=6), read(1, 1, 2, 1, 5)])
    assert ok([cas(0, 0, 3, 5, 2, version=6), read(1, 1, 2, 2, 6)])


def test_read_going_back_in_time_is_rejected() -> None:
    # Both reads overlap the write, but the second (invoked after the first completed)
    # sees the older value: a new-then-old flip.
    history = [cas(0, 0, 10, 5, 2, version=6), read(1, 1, 2, 2, 6), read(2, 3, 4, 1, 5)]
    assert not ok(history)


def test_lost_update_is_rejected() -> None:
    # Two CAS from the same expected version both succeed, one after the other.
    history = [cas(0, 0, 1, 5, 2, version=6), cas(1, 2, 3, 5, 3, version=7)]
    assert not ok(history)


def test_failed_cas_must_have_seen_another_version() -> None:
    # Nothing wrote since version 5, yet a CAS expecting 5 was refused.
    assert not ok([cas(0, 0, 1, 5, 2, outcome="fail")])
    # After a completed write it is right to refuse.
    assert ok([cas(0, 0, 1, 5, 2, version=6), cas(1, 2, 3, 5, 3, outcome="fail")])


def test_read_of_a_value_never_written_is_rejected() -> None:
    assert not ok([read(0, 0, 1, 42, 9)])


def test_unknown_outcome_may_take_effect_late_or_never() -> None:
    lost = cas(0, 0, None, 5, 2, outcome="unknown")
    # Never took effect:
    assert ok([lost, read(1, 5, 6, 1, 5)])
    # Took effect long after the client gave up (a read at t=100 sees it):
    assert ok([lost, read(1, 5, 6, 1, 5), read(1, 100, 101, 2, 8)])
    # ...but not before it was invoked:
    late = cas(0, 50, None, 5, 2, outcome="unknown")
    assert not ok([late, read(1, 0, 1, 2, 8)])
    # ...and once seen it cannot disappear again.
    assert not ok([lost, read(1, 5, 6, 2, 8), read(1, 7, 8, 1, 5)])


def test_keys_are_checked_separately() -> None:
    other = Op(0, "glass-1", "read", 0, 1, value=7, version=3)
    verdicts = check({K: INIT, "glass-1": (7, 3)}, [read(1, 0, 1, 1, 5), other])
    assert [v.key for v in verdicts] == ["glass-1", K] and all(v.ok for v in verdicts)


def test_bad_op_is_refused() -> None:
    with pytest.raises(ValueError):
        Op(0, K, "write", 0, 1)
    with pytest.raises(ValueError):
        Op(0, K, "cas", 0, 1, outcome="unknown")


# ---------------------------------------------------------------- generated histories

@st.composite
def sequential_histories(draw: st.DrawFn) -> list[Op]:
    """Run the sequential model; op i takes effect at time 10*i; its interval is stretched
    around that point at random (so ops overlap), some outcomes are lost (unknown), and some
    unknown writes never take effect at all."""
    value, version, next_version = INIT[0], INIT[1], INIT[1] + 1
    written = {INIT[0]: INIT[1]}
    history: list[Op] = []
    steps = draw(st.integers(1, 14))
    for i in range(steps):
        point = 10.0 * i
        invoke = point - draw(st.floats(0, 25))
        complete = point + draw(st.floats(0, 25))
        client = draw(st.integers(0, 3))
        kind = draw(st.sampled_from(["read", "cas", "cas_stale", "cas_lost", "cas_void"]))
        new_value = 100 + i
        if kind == "read":
            history.append(read(client, invoke, complete, value, version))
        elif kind == "cas_stale":
            stale = draw(st.sampled_from(sorted(v for v in written.values() if v != version)
                                         or [version + 1000]))
            history.append(cas(client, invoke, complete, stale, new_value, outcome="fail"))
        elif kind == "cas_void":  # a lost write that never took effect
            history.append(cas(client, invoke, None, version, new_value, outcome="unknown"))
        else:
            value, version = new_value, next_version
            next_version += 1
            written[value] = version
            if kind == "cas_lost":
                history.append(cas(client, invoke, None, written_before(written, value),
                                   new_value, outcome="unknown"))
                # Clients only expect versions they have read: someone saw it take effect.
                history.append(read(8, point + 0.5, point + 1, value, version))
            else:
                history.append(cas(client, invoke, complete, written_before(written, value),
                                   new_value, version=version))
    # A final read pins the version of any lost write that did take effect.
    history.append(read(9, 10.0 * steps + 30, 10.0 * steps + 31, value, version))
    return history


def written_before(written: dict[int, int], value: int) -> int:
    """The version current just before ``value`` was written (its expected version)."""
    versions = sorted(written.values())
    return versions[versions.index(written[value]) - 1]


@settings(max_examples=150, deadline=None)
@given(sequential_histories())
def test_histories_from_the_sequential_model_are_accepted(history: list[Op]) -> None:
    verdict = check_key(K, INIT, history)
    assert verdict.ok, verdict.detail


@settings(max_examples=100, deadline=None)
@given(sequential_histories(), st.data())
def test_a_read_moved_after_a_later_write_is_rejected(history: list[Op], data: st.DataObject
                                                       ) -> None:
    # Take a completed read of value X and replay it strictly after a completed write that
    # replaced X was confirmed and a read saw the replacement: a stale read.
    writes = [op for op in history if op.kind == "cas" and op.outcome == "ok"]
    if not writes:
        return
    write = data.draw(st.sampled_from(writes))
    seen = {INIT[0]: INIT[1], **versions_seen(history)}
    expected_old = [v for v, ver in seen.items() if ver == write.expected]
    end = max(op.complete or op.invoke for op in history) + 100
    stale = read(7, end, end + 1, expected_old[0], write.expected)
    assert not check_key(K, INIT, [*history, stale]).ok
