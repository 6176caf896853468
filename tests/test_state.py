"""Pure tests of the replicated coordinator state: every command, every refusal, determinism."""

from __future__ import annotations

import os
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fos_raft.model import ErrorCode, ItemReq, ModelError, NodeSpec
from fos_raft.planner.plan import plan
from fos_raft.state.commands import (
    AnnounceReplica,
    Decommission,
    Drain,
    ForgetReplica,
    MarkDown,
    MarkUp,
    NoteRefuted,
    Register,
    Undrain,
    UpdateSpec,
)
from fos_raft.state.core import HISTORY_LIMIT, REQUEST_MEMORY, CoordinatorState, apply, validate

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = 150 * (50 if DEEP else 1)

SAW = NodeSpec("saw-1", "127.0.0.1:7201", ItemReq("wood", 3))
SAW2 = NodeSpec("saw-2", "127.0.0.1:7202", ItemReq("wood", 3))
PRESS = NodeSpec("press-1", "127.0.0.1:7203", ItemReq("frame", 1), (ItemReq("wood", 3),))


def run(state: CoordinatorState, *commands, rid: str = ""):
    outcome = None
    for command in commands:
        state, outcome = apply(state, rid, command)
    return state, outcome


def chain() -> CoordinatorState:
    state, _ = run(CoordinatorState(), Register(SAW), Register(SAW2), Register(PRESS))
    return state


def refused(state: CoordinatorState, command, code: ErrorCode) -> str:
    """Assert ``command`` is refused with ``code`` by validate and apply, state unchanged."""
    with pytest.raises(ModelError) as info:
        validate(state, command)
    assert info.value.code == code
    new, outcome = apply(state, "", command)
    assert outcome.error == code and not outcome.changed
    assert outcome.version == state.version
    assert new.digest == state.digest
    return outcome.message


def test_register_builds_the_flow_and_bumps_the_version_once_per_change():
    state = chain()
    assert state.version == 3
    assert set(state.nodes) == {"saw-1", "saw-2", "press-1"}
    assert state.flow == plan(state.catalog, state.status, state.history[-2][1])
    assert state.flow.members == {"saw-1", "saw-2", "press-1"}
    assert {e.consumer for e in state.flow.edges} == {"press-1"}
    assert state.nodes["press-1"].spec_version == 3 == state.nodes["press-1"].changed_version
    # identical re-registration: success, nothing changes
    again, outcome = apply(state, "", Register(PRESS))
    assert outcome.error is None and not outcome.changed and outcome.version == 3
    assert again.digest == state.digest


def test_register_refusals():
    state = chain()
    moved = NodeSpec("press-1", "127.0.0.1:9999", PRESS.produces, PRESS.requires)
    msg = refused(state, Register(moved), ErrorCode.ALREADY_EXISTS)
    assert "press-1" in msg
    loop = NodeSpec("saw-3", "127.0.0.1:7210", ItemReq("wood", 1), (ItemReq("frame", 1),))
    assert "cyclic" in refused(state, Register(loop), ErrorCode.INVALID_ARGUMENT)
    selfish = NodeSpec("x", "127.0.0.1:7211", ItemReq("wood", 1), (ItemReq("wood", 1),))
    refused(state, Register(selfish), ErrorCode.INVALID_ARGUMENT)
    for bad in (
        NodeSpec("", "127.0.0.1:1", ItemReq("a", 1)),
        NodeSpec("n" * 129, "127.0.0.1:1", ItemReq("a", 1)),
        NodeSpec("n", "127.0.0.1:1", ItemReq("a", 0)),
        NodeSpec("n", "127.0.0.1:1", ItemReq("a", 1), (ItemReq("b", -2),)),
        NodeSpec("n", "nowhere", ItemReq("a", 1)),
        NodeSpec("n", "127.0.0.1:1", ItemReq("a", 1), capacity=0),
    ):
        refused(state, Register(bad), ErrorCode.INVALID_ARGUMENT)
    refused(state, Register("not a spec"), ErrorCode.INVALID_ARGUMENT)  # type: ignore[arg-type]


def test_update_spec_compare_and_set():
    state = chain()
    token = state.nodes["press-1"].spec_version
    bigger = NodeSpec("press-1", PRESS.address, ItemReq("frame", 2), PRESS.requires)
    msg = refused(state, UpdateSpec(bigger, token - 1), ErrorCode.FAILED_PRECONDITION)
    assert str(token) in msg and str(token - 1) in msg
    new, outcome = run(state, UpdateSpec(bigger, token))
    assert outcome.changed and outcome.version == state.version + 1
    assert new.nodes["press-1"].spec == bigger
    assert new.nodes["press-1"].spec_version == outcome.version
    # the old token is now stale; no token means unconditional
    refused(new, UpdateSpec(PRESS, token), ErrorCode.FAILED_PRECONDITION)
    same, outcome = run(new, UpdateSpec(bigger))
    assert not outcome.changed and same.digest == new.digest
    ghost = NodeSpec("ghost", "127.0.0.1:7300", ItemReq("a", 1))
    refused(state, UpdateSpec(ghost), ErrorCode.NOT_FOUND)
    cyclic = NodeSpec("saw-1", SAW.address, ItemReq("wood", 3), (ItemReq("frame", 1),))
    refused(state, UpdateSpec(cyclic), ErrorCode.INVALID_ARGUMENT)


def test_liveness_and_drain_commands():
    state = chain()
    down, outcome = run(state, MarkDown("saw-1", "probe failed"))
    assert outcome.changed and not down.nodes["saw-1"].status.alive
    assert down.nodes["saw-1"].status.down_reason == "probe failed"
    assert "saw-1" not in down.flow.members
    assert all("saw-1" not in (e.supplier, e.consumer) for e in down.flow.edges)
    again, outcome = run(down, MarkDown("saw-1", "again"))
    assert not outcome.changed and again.digest == down.digest
    up, outcome = run(down, MarkUp("saw-1"))
    assert outcome.changed and up.nodes["saw-1"].status.alive
    assert up.nodes["saw-1"].status.down_reason == ""
    assert up.nodes["saw-1"].spec_version == state.nodes["saw-1"].spec_version
    moved, outcome = run(up, MarkUp("saw-1", "127.0.0.1:7999"))
    assert moved.nodes["saw-1"].spec.address == "127.0.0.1:7999"
    assert moved.nodes["saw-1"].spec_version == outcome.version
    noop, outcome = run(moved, MarkUp("saw-1", "127.0.0.1:7999"))
    assert not outcome.changed and noop.digest == moved.digest
    refused(state, MarkUp("saw-1", "bad address"), ErrorCode.INVALID_ARGUMENT)

    drained, outcome = run(state, Drain("saw-2"))
    assert outcome.changed and drained.nodes["saw-2"].status.drained
    assert "saw-2" not in drained.flow.members
    assert run(drained, Drain("saw-2"))[1].changed is False
    undrained, outcome = run(drained, Undrain("saw-2"))
    assert outcome.changed and "saw-2" in undrained.flow.members
    assert run(undrained, Undrain("saw-2"))[1].changed is False
    for command in (MarkDown("nope"), MarkUp("nope"), Drain("nope"), Undrain("nope")):
        refused(state, command, ErrorCode.NOT_FOUND)
    refused(state, Drain(""), ErrorCode.INVALID_ARGUMENT)
    refused(state, MarkDown("saw-1", "x" * 600), ErrorCode.INVALID_ARGUMENT)


def test_decommission_removes_and_allows_registering_again():
    state = chain()
    gone, outcome = run(state, Decommission("saw-1"))
    assert outcome.changed and "saw-1" not in gone.nodes and "saw-1" not in gone.flow.members
    refused(gone, Decommission("saw-1"), ErrorCode.NOT_FOUND)
    other = NodeSpec("saw-1", "127.0.0.1:7500", ItemReq("wood", 5))
    back, outcome = run(gone, Register(other))
    assert outcome.changed and back.nodes["saw-1"].spec == other


def test_suspicion_counters_and_internal_commands_keep_the_version():
    state = chain()
    refuted, _ = run(state, NoteRefuted("saw-1"), NoteRefuted("saw-1"))
    assert refuted.refuted == 2 and refuted.version == state.version
    confirmed, _ = run(refuted, MarkDown("saw-1", "gone", suspicion=True))
    assert confirmed.confirmed == 1 and confirmed.version == state.version + 1
    refused(state, NoteRefuted("ghost"), ErrorCode.NOT_FOUND)
    announced, _ = run(state, AnnounceReplica("127.0.0.1:1", "127.0.0.1:2"))
    assert announced.replicas == {"127.0.0.1:1": "127.0.0.1:2"}
    assert announced.version == state.version and announced.digest != state.digest
    forgot, _ = run(announced, ForgetReplica("127.0.0.1:1"))
    assert forgot.replicas == {} and forgot.digest == state.digest
    refused(state, AnnounceReplica("nohost", "127.0.0.1:2"), ErrorCode.INVALID_ARGUMENT)


def test_request_ids_make_retries_exactly_once():
    state = CoordinatorState()
    once, first = apply(state, "req-1", Register(SAW))
    twice, second = apply(once, "req-1", Drain("saw-1"))  # same id: the first outcome
    assert second == first and twice is once
    # refusals are not remembered: they changed nothing, a retry is judged anew
    refused_state, outcome = apply(once, "req-2", Drain("ghost"))
    assert outcome.error == ErrorCode.NOT_FOUND and refused_state is once
    assert "req-2" not in refused_state.requests
    bad_state, outcome = apply(once, "x" * 65, Drain("saw-1"))
    assert outcome.error == ErrorCode.INVALID_ARGUMENT and bad_state is once
    state = once
    for i in range(REQUEST_MEMORY + 5):
        state, _ = apply(state, f"r{i}", NoteRefuted("saw-1"))
    assert len(state.requests) == REQUEST_MEMORY and "r0" not in state.requests


def test_history_is_bounded_and_readable():
    state = chain()
    for i in range(HISTORY_LIMIT + 10):
        state, _ = apply(state, "", Drain("saw-2") if i % 2 == 0 else Undrain("saw-2"))
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1] == (state.version, state.flow)
    versions = [v for v, _ in state.history]
    assert versions == list(range(state.version - HISTORY_LIMIT + 1, state.version + 1))
    assert state.flow_at(state.version) == state.flow
    assert state.flow_at(state.version - HISTORY_LIMIT) is None
    drained_at = next(v for v, p in state.history if "saw-2" not in p.members)
    assert "saw-2" not in state.flow_at(drained_at).members


def test_unexpected_planner_failure_is_a_deterministic_refusal():
    def broken(*_args):
        raise ZeroDivisionError("boom")

    state = chain()
    new, outcome = apply(state, "", Drain("saw-1"), planner=broken)
    assert outcome.error == ErrorCode.FAILED_PRECONDITION and "ZeroDivisionError" in outcome.message
    assert new.digest == state.digest


# ------------------------------------------------------------------------- properties

NODE_IDS = [f"n{i}" for i in range(6)]
ITEMS = ["a", "b", "c", "d"]

specs = st.builds(
    lambda nid, port, item, qty, reqs, cap: NodeSpec(
        nid,
        f"127.0.0.1:{port}",
        ItemReq(item, qty),
        tuple(ItemReq(r, q) for r, q in sorted(reqs.items()) if r != item),
        cap,
    ),
    st.sampled_from(NODE_IDS),
    st.integers(1, 3),
    st.sampled_from(ITEMS),
    st.integers(-1, 3),
    st.dictionaries(st.sampled_from(ITEMS), st.integers(0, 2), max_size=2),
    st.integers(0, 3),
)
node_ids = st.sampled_from([*NODE_IDS, "", "bad id"])
commands = st.one_of(
    st.builds(Register, specs),
    st.builds(UpdateSpec, specs, st.none() | st.integers(0, 30)),
    st.builds(MarkDown, node_ids, st.sampled_from(["", "gone"]), st.booleans()),
    st.builds(MarkUp, node_ids, st.sampled_from(["", "127.0.0.1:9", "junk"])),
    st.builds(Drain, node_ids),
    st.builds(Undrain, node_ids),
    st.builds(Decommission, node_ids),
    st.builds(NoteRefuted, node_ids),
    st.builds(AnnounceReplica, st.sampled_from(["127.0.0.1:1", "127.0.0.1:2"]), st.just("h:3")),
)
scripts = st.lists(st.tuples(st.sampled_from(["", "r1", "r2", "r3"]), commands), max_size=30)


@settings(max_examples=EXAMPLES)
@given(scripts)
def test_apply_is_deterministic_monotone_and_refusals_change_nothing(script):
    a = b = CoordinatorState()
    for request_id, command in script:
        before = a
        a, outcome = apply(a, request_id, command)
        b, outcome_b = apply(b, request_id, command)
        assert outcome == outcome_b and a.digest == b.digest
        assert a.version == before.version + (1 if outcome.version > before.version else 0)
        if outcome.error is not None or not outcome.changed:
            assert a.version == before.version
            assert a.nodes == before.nodes and a.flow == before.flow
        if outcome.changed and a.version > before.version:  # P7: a fresh planner agrees
            assert a.flow == plan(a.catalog, a.status, before.flow)
        assert a.history[-1][1] == a.flow
        for entry in a.nodes.values():
            assert entry.spec_version <= entry.changed_version <= a.version


@settings(max_examples=EXAMPLES)
@given(scripts)
def test_digest_survives_a_pickle_round_trip(script):
    state = CoordinatorState()
    for request_id, command in script:
        state, _ = apply(state, request_id, command)
    _ = state.digest, state.catalog, state.edges_of("n1")  # fill the caches first
    blob = pickle.dumps(state)
    loaded = pickle.loads(blob)
    # caches never leak into snapshots: the reloaded state has none, and the cached state
    # pickles to the same bytes as an uncached one over the same objects. (Not compared with
    # pickle.dumps(loaded): a frozenset rebuilt from a pickle may iterate in another order when
    # its members' hashes collide, which depends on the process's hash seed.)
    assert loaded._cache == {}
    assert pickle.dumps(CoordinatorState(**state.__getstate__())) == blob
    assert loaded.digest == state.digest
    assert loaded.canonical() == state.canonical()
    # and the reloaded state keeps applying identically
    assert apply(loaded, "z", Drain("n1"))[0].digest == apply(state, "z", Drain("n1"))[0].digest
