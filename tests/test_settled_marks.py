"""The high-water marks that let dedup look-ups skip LMDB (fos_agent.storage.settled_marks):
they must never skip an id compaction moved out, and must survive a reopen."""

from __future__ import annotations

from pathlib import Path

import lmdb
from hypothesis import given
from hypothesis import strategies as st

from fos_agent.storage.settled_marks import MARKS_KEY, SettledMarks
from fos_agent.storage.wal import Wal, wal_path
from fos_agent.testing.wal_chain import WalChain

producers = st.sampled_from(["a", "b:x", "c-1"])
batch_ids = st.builds(lambda p, n: f"{p}:{n}", producers, st.integers(1, 50))
request_ids = st.builds(lambda c, i, n: f"{c}~{i}~{n}", producers, st.integers(1, 3),
                        st.integers(1, 50))


@given(st.lists(st.tuples(st.lists(batch_ids), st.lists(request_ids)), max_size=6),
       batch_ids, request_ids)
def test_a_compacted_id_is_never_skipped(rounds, probe_in, probe_req) -> None:  # type: ignore[no-untyped-def]
    marks = SettledMarks({}, {}, known=True)
    compacted_in: set[str] = set()
    compacted_req: set[str] = set()
    for ins, reqs in rounds:
        marks.raise_to(ins, reqs)
        compacted_in.update(ins)
        compacted_req.update(reqs)
        marks = SettledMarks(*_reloaded(marks))  # what a reopen reads back
    assert all(marks.may_hold_inbound(i) for i in compacted_in)
    assert all(marks.may_hold_request(r) for r in compacted_req)
    if not any(p.rpartition(":")[0] == probe_in.rpartition(":")[0] for p in compacted_in):
        assert not marks.may_hold_inbound(probe_in)  # a stream never compacted: no look-up


def _reloaded(marks: SettledMarks) -> tuple[dict[str, int], dict[str, int], bool]:
    class _Txn:
        def get(self, key: bytes, db: object) -> bytes | None:
            return marks.encode() if key == MARKS_KEY else None

    again = SettledMarks.load(_Txn(), None, index_empty=False)  # type: ignore[arg-type]
    return again.inbound, again.requests, again.known


def test_unknown_marks_skip_nothing() -> None:
    marks = SettledMarks({}, {}, known=False)
    assert marks.may_hold_inbound("a:1") and marks.may_hold_request("c~1~1")
    assert marks.may_hold_inbound("not-a-batch-id")


def test_marks_follow_compaction_and_survive_a_reopen(tmp_path: Path) -> None:
    chain = WalChain(tmp_path, 2)
    for _ in range(3):
        chain.final_product()
    chain.compact()
    n1 = chain.wals["n1"].settled
    assert n1.marks.may_hold_inbound("n0:3") and not n1.marks.may_hold_inbound("n0:4")
    assert n1.settled_inbound("n0:4") is None and n1.settled_inbound("n0:2") == "n0"
    chain.close()
    chain = WalChain(tmp_path, 2)  # a restart reads the marks back
    try:
        n0, n1 = chain.wals["n0"].settled, chain.wals["n1"].settled
        assert n1.marks.known and n1.marks.inbound == {"n0": 3}
        assert n0.marks.requests == {"n1~1": 3}
        assert n1.settled_inbound("n0:3") == "n0"
        assert n0.settled_request("n1", "n1~1~3") is not None
    finally:
        chain.close()


def test_a_wal_compacted_without_marks_looks_everything_up(tmp_path: Path) -> None:
    chain = WalChain(tmp_path, 2)
    chain.final_product()
    chain.compact()
    chain.close()
    env = lmdb.open(str(wal_path(chain.data_dir("n1"))), max_dbs=12)
    with env.begin(write=True) as txn:  # as an agent before the marks left it
        txn.delete(MARKS_KEY, db=env.open_db(b"meta", txn=txn))
    env.close()
    with Wal.open(wal_path(chain.data_dir("n1")), "n1") as wal:
        assert not wal.settled.marks.known
        assert wal.settled.settled_inbound("n0:1") == "n0"
