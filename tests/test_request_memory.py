"""The request-id memory (`fos_raft.state.requests.RequestMemory`) behaves exactly like the
insertion-ordered dict it replaced, on every version, including versions branched from old
ones and across log compactions; and a state carrying it digests, pickles and encodes as a
state with a plain dict did."""

from __future__ import annotations

import os
import pickle
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from fos_raft.model import ItemReq, NodeSpec
from fos_raft.state import core
from fos_raft.state.commands import Command, Drain, NoteRefuted, Outcome, Register, Undrain
from fos_raft.state.core import CoordinatorState, apply
from fos_raft.state.requests import RequestMemory
from fos_raft.state.snapshot import decode, encode

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = 200 * (50 if DEEP else 1)


def reference_remember(memory: dict[str, Outcome], rid: str, outcome: Outcome,
                       limit: int) -> dict[str, Outcome]:
    """The dict code the memory replaced, verbatim."""
    requests = dict(memory)
    requests[rid] = outcome
    while len(requests) > limit:
        del requests[next(iter(requests))]
    return requests


def same(memory: RequestMemory, reference: dict[str, Outcome], probes: list[str]) -> None:
    assert memory.pairs() == list(reference.items())
    assert list(memory) == list(reference) and len(memory) == len(reference)
    assert memory == reference
    for rid in probes:
        assert (rid in memory) == (rid in reference)
        assert memory.lookup(rid) == reference.get(rid)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    limit=st.integers(1, 6),
    initial=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 9), max_size=8),
    # (which earlier version to extend: an index into the versions so far, from the newest;
    #  request id; outcome's version)
    steps=st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abcdefghij"),
                             st.integers(0, 99)), max_size=120),
)
def test_memory_matches_the_dict_model(
    limit: int, initial: dict[str, int], steps: list[tuple[int, str, int]]
) -> None:
    probes = list("abcdefghijk")
    first = {rid: Outcome(v, True) for rid, v in initial.items()}
    versions = [(RequestMemory(first.items()), first)]
    for back, rid, value in steps:
        memory, reference = versions[max(0, len(versions) - 1 - back)]
        if rid in reference:  # apply answers a known id from the memory; never re-adds it
            assert memory.lookup(rid) == reference[rid]
            continue
        outcome = Outcome(value, value % 2 == 0)
        versions.append((memory.remember(rid, outcome, limit),
                         reference_remember(reference, rid, outcome, limit)))
        same(*versions[-1], probes)
    for memory, reference in versions:  # every old version still answers as it did
        same(memory, reference, probes)
        again = pickle.loads(pickle.dumps(memory))
        same(again, reference, probes)


SPECS = [NodeSpec(f"n{i}", f"127.0.0.1:{7300 + i}", ItemReq(f"item{i % 3}", 1)) for i in range(4)]


@settings(max_examples=EXAMPLES // 4, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["drain", "undrain", "note"]), st.integers(0, 3),
                          st.sampled_from(["", "r0", "r1", "r2", "r3", "r4", "r5", "r6"])),
                max_size=60))
def test_state_requests_match_the_dict_model(steps: list[tuple[str, int, str]]) -> None:
    """Through `apply`, with a small limit: the remembered ids, the answers to repeats and
    the digest are those of the dict model; pickled and encoded states round-trip."""
    with mock.patch.object(core, "REQUEST_MEMORY", 3):
        state = CoordinatorState()
        for spec in SPECS:
            state, _ = apply(state, "", Register(spec))
        reference: dict[str, Outcome] = {}
        for kind, index, rid in steps:
            node = SPECS[index].node_id
            command: Command = (Drain(node) if kind == "drain" else
                                Undrain(node) if kind == "undrain" else NoteRefuted(node))
            before = state
            state, outcome = apply(state, rid, command)
            if rid and rid in reference:
                assert outcome == reference[rid] and state is before
            elif rid and outcome.error is None:
                reference = reference_remember(reference, rid, outcome, 3)
            assert state.requests.pairs() == list(reference.items())
            plain = CoordinatorState(**{**state.__getstate__(), "requests": dict(reference)})
            assert plain.digest == state.digest
    loaded = pickle.loads(pickle.dumps(state))
    assert type(state.__getstate__()["requests"]) is dict
    assert isinstance(loaded.requests, RequestMemory) and loaded.digest == state.digest
    decoded, _ = decode(encode(state))
    assert decoded.requests == state.requests and decoded.digest == state.digest
