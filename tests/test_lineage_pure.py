"""The pure parts of lot genealogy: the index encoding (fos_raft.lineage.index) and the
trace walk (fos_raft.lineage.trace) over generated factories, with hypothesis."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from fos_raft.lineage.index import (
    KIND_MADE,
    KIND_USED,
    MadeEntry,
    UsedEntry,
    decode_made,
    decode_used,
    encode_made,
    encode_used,
    made_value,
    split_time_key,
    time_key,
    used_value,
)
from fos_raft.lineage.trace import BACK, FORWARD, NodeAnswer, Unreachable, trace

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
ids = st.builds(lambda n, s: f"{n}:{s}", st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True),
                st.integers(1, 10**9))


@given(ids, text, text, st.integers(0, 10**6), st.integers(0, 2**40),
       st.lists(st.tuples(ids, text), max_size=4), text, text)
def test_made_entry_round_trips(bid, node, item, qty, at, inputs, to, state) -> None:  # type: ignore[no-untyped-def]
    e = MadeEntry(bid, node, item, qty, 7, at, tuple(inputs), to, "r", state, "", to)
    assert decode_made(bid, node, encode_made(e)) == e


@given(ids, text, text, st.integers(0, 10**6), ids, st.integers(0, 2**40),
       st.lists(ids, max_size=4))
def test_used_entry_round_trips(bid, sup, item, qty, into, at, lineage) -> None:  # type: ignore[no-untyped-def]
    e = UsedEntry(bid, "n", sup, item, qty, into, at, tuple(lineage))
    assert decode_used(bid, "n", encode_used(e)) == e


@given(st.lists(st.tuples(st.integers(0, 2**50), st.sampled_from([KIND_MADE, KIND_USED]),
                          ids), min_size=2, max_size=20))
def test_time_keys_sort_by_time_and_split_back(entries) -> None:  # type: ignore[no-untyped-def]
    keys = [time_key(*e) for e in entries]
    assert [split_time_key(k) for k in keys] == entries
    assert [split_time_key(k)[0] for k in sorted(keys)] == sorted(e[0] for e in entries)


@st.composite
def factories(draw):  # type: ignore[no-untyped-def]
    """A layered factory: stage k's batches are made from 1-2 batches of stage k-1, each
    input used once. Returns {batch: MadeEntry} and {batch: consumer-side into}."""
    layers = draw(st.integers(1, 5))
    made: dict[str, MadeEntry] = {}
    below: list[str] = [f"s0:{i}" for i in range(1, draw(st.integers(1, 6)) + 1)]
    for bid in below:
        made[bid] = MadeEntry(bid, "s0", "i0", 1, int(bid.split(":")[1]), 0)
    into: dict[str, str] = {}
    for k in range(1, layers + 1):
        free, here, seq = list(below), [], 0
        while free:
            take = free[:draw(st.integers(1, 2))]
            free = free[len(take):]
            seq += 1
            bid = f"s{k}:{seq}"
            made[bid] = MadeEntry(bid, f"s{k}", f"i{k}", 1, seq, k,
                                  tuple((t, f"s{k - 1}") for t in take))
            for t in take:
                into[t] = bid
                made[t] = MadeEntry(t, made[t].node, made[t].item, 1, made[t].seq,
                                    made[t].made_at_ms, made[t].inputs, f"s{k}", "",
                                    "DELIVERED", "", f"s{k}")
            here.append(bid)
        below = here
    return made, into


def fetcher(made: dict[str, MadeEntry], into: dict[str, str], down: set[str]):  # type: ignore[no-untyped-def]
    async def fetch(node: str, batch_ids: list[str]) -> dict[str, NodeAnswer]:
        if node in down:
            raise Unreachable("down")
        out = {}
        for b in batch_ids:
            m = made.get(b) if made.get(b) and made[b].node == node else None
            used = into.get(b) if b in made and made[b].to == node else None
            if m or used:
                out[b] = NodeAnswer(m, used)
        return out
    return fetch


@settings(max_examples=150)
@given(factories(), st.data())
def test_back_and_forward_traces_match_the_factory(factory, data) -> None:  # type: ignore[no-untyped-def]
    made, into = factory
    root = data.draw(st.sampled_from(sorted(made)))
    back = asyncio.run(trace(root, BACK, fetcher(made, into, set())))
    want, todo = set(), [root]
    while todo:
        b = todo.pop()
        want.add(b)
        todo.extend(made[b].input_ids)
    assert {b.batch_id for b in back.batches} == want and back.complete
    fwd = asyncio.run(trace(root, FORWARD, fetcher(made, into, set())))
    path = [root]
    while path[-1] in into:
        path.append(into[path[-1]])
    assert [b.batch_id for b in fwd.batches] == path
    depth = data.draw(st.integers(0, 3))
    short = asyncio.run(trace(root, FORWARD, fetcher(made, into, set()), depth))
    assert [b.batch_id for b in short.batches] == path[:depth + 1]


@given(factories(), st.data())
def test_unreachable_nodes_are_reported_not_skipped(factory, data) -> None:  # type: ignore[no-untyped-def]
    made, into = factory
    top = max(made, key=lambda b: (int(b[1:].split(":")[0]), b))
    nodes = sorted({m.node for m in made.values()} - {made[top].node})
    if not nodes:
        return
    down = set(data.draw(st.lists(st.sampled_from(nodes), min_size=1, unique=True)))
    got = asyncio.run(trace(top, BACK, fetcher(made, into, down)))
    reached = {b.node for b in got.batches}
    assert not reached & down
    for node, reason in got.unreachable:
        assert node in down and reason == "down"
    full = asyncio.run(trace(top, BACK, fetcher(made, into, set())))
    assert got.complete == (not ({b.node for b in full.batches} & down))


@given(text, st.integers(0, 10**6), st.integers(0, 10**9), st.integers(0, 2**40),
       st.lists(st.tuples(ids, text), max_size=4), text)
def test_trade_path_encoders_write_the_same_bytes(item, qty, seq, at, inputs, rf) -> None:  # type: ignore[no-untyped-def]
    """made_value / used_value format their JSON by hand (the trade path): byte for byte
    what the general JSON encoder writes, so every reader and tool reads them alike."""
    flat = [x for pair in inputs for x in pair]
    e = MadeEntry("b:1", "n", item, qty, seq, at, tuple(inputs), reclaimed_from=rf)
    assert made_value(item, qty, seq, at, flat, rf) == encode_made(e)
    general = json.dumps([rf, item, qty, item, at, flat], separators=(",", ":"),
                         ensure_ascii=False).encode()
    assert used_value(rf, item, qty, item, at, tuple(flat)) == general
