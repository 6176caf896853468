"""The snapshot file format (pure): every state round-trips with its digest; any change
to the file is refused; a seed applies only to a fresh cluster."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fos_raft.model import ErrorCode, ItemReq, NodeSpec
from fos_raft.state.commands import AnnounceReplica, Drain, MarkDown, Register, SeedState
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.snapshot import SnapshotError, decode, encode

ITEMS = ["wood", "glass", "frame"]


@st.composite
def states(draw) -> CoordinatorState:
    state = CoordinatorState()
    count = draw(st.integers(1, 6))
    for n in range(count):
        item = ITEMS[n % 3]
        requires = (ItemReq(ITEMS[(n % 3) - 1], 1),) if n % 3 == 2 else ()
        spec = NodeSpec(f"n{n}", f"h:{7000 + n}", ItemReq(item, draw(st.integers(1, 3))),
                        requires, draw(st.integers(1, 3)))
        state, _ = apply(state, f"r{n}", Register(spec))
    for n in draw(st.lists(st.integers(0, count - 1), max_size=3)):
        command = draw(st.sampled_from([Drain(f"n{n}"), MarkDown(f"n{n}", "test")]))
        state, _ = apply(state, f"x{n}{type(command).__name__}", command)
    return state


@settings(max_examples=40)
@given(states())
def test_round_trip_keeps_the_digest(state: CoordinatorState):
    restored, meta = decode(encode(state, {"replica_id": "r0"}))
    assert restored.digest == state.digest and meta == {"replica_id": "r0"}
    assert restored.nodes == state.nodes and restored.version == state.version


@settings(max_examples=40)
@given(states(), st.data())
def test_any_changed_value_is_refused(state: CoordinatorState, data):
    doc = json.loads(encode(state))
    node = data.draw(st.sampled_from(doc["state"]["nodes"]))
    node[1][4] += 1  # one capacity
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode(json.dumps(doc).encode())


@pytest.mark.parametrize("blob", [b"", b"{}", b"\xff", b'{"format": "factoryos-snapshot/1"}'])
def test_not_a_snapshot(blob: bytes):
    with pytest.raises(SnapshotError):
        decode(blob)


@settings(max_examples=20)
@given(states())
def test_seed_only_a_fresh_cluster(state: CoordinatorState):
    blob = encode(state).decode()
    fresh, _ = apply(CoordinatorState(), "a", AnnounceReplica("new:1", "new:2"))
    seeded, outcome = apply(fresh, "s", SeedState(blob))
    assert outcome.error is None and seeded.version == state.version
    assert seeded.nodes == state.nodes and seeded.flow == decode(blob.encode())[0].flow
    assert seeded.replicas == {"new:1": "new:2"}  # this cluster's replicas, not the old
    again, outcome = apply(seeded, "t", SeedState(blob))
    assert outcome.error is ErrorCode.FAILED_PRECONDITION and again.digest == seeded.digest
