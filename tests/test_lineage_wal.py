"""The genealogy index and compaction on real WALs (LMDB), read back offline the way
``fosctl trace --data-dirs`` and the audit do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fos_agent.audit import audit
from fos_agent.protocol.messages import NewRequest, Produce
from fos_agent.storage.wal import Wal, read_wal, wal_path
from fos_agent.testing.wal_chain import WalChain
from fos_raft.lineage.remote import IndexSources
from fos_raft.lineage.trace import BACK, FORWARD, UnknownBatch, trace


@pytest.fixture
def chain(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = WalChain(tmp_path, 4)
    yield c
    c.close()


def test_index_records_inputs_suppliers_and_outputs(chain: WalChain) -> None:
    final = chain.final_product()
    assert final == "n3:1"
    made = chain.wals["n3"].lineage.lookup(["n3:1"])["n3:1"].made
    assert made is not None and made.inputs == (("n2:1", "n2"),) and made.item == "i3"
    assert made.made_at_ms > 0
    up = chain.wals["n2"].lineage.lookup(["n2:1"])["n2:1"].made
    assert up is not None and up.delivered_to == "n3" and up.state == "DELIVERED"
    used = chain.wals["n3"].lineage.lookup(["n2:1"])["n2:1"].used
    assert used is not None and used.into == "n3:1" and used.supplier == "n2"


def test_compaction_empties_the_live_wal_and_audit_still_sees_everything(
        chain: WalChain) -> None:
    for _ in range(5):
        chain.final_product()
    chain.compact()
    for node_id in chain.ids[:-1]:  # the last stage's outputs are never delivered
        live = chain.wals[node_id].load()
        assert not live.inbound and not live.outbound and not live.requests, node_id
    dirs = [chain.data_dir(n) for n in chain.ids]
    chain.close()
    report = audit(dirs, quiescent=True)
    assert report.ok, report.summary()
    assert report.produced == 20 and report.consumed == 15 and report.delivered == 15
    assert len(read_wal(wal_path(dirs[1]), settled=True).outbound) == 5


def test_reopening_after_compaction_keeps_seq_and_dedup(tmp_path: Path) -> None:
    chain = WalChain(tmp_path, 2)
    chain.final_product()
    chain.compact()
    chain.close()
    chain = WalChain(tmp_path, 2)  # a restart: the seq counter goes on (I6)
    assert chain.final_product() == "n1:2"
    assert chain.wals["n1"].settled.settled_inbound("n0:1") == "n0"
    chain.close()


def test_offline_trace_back_and_forward(chain: WalChain) -> None:
    chain.final_product()
    final = chain.final_product()
    chain.compact()
    chain.close()
    sources = IndexSources({}, [chain.root])

    async def run() -> None:
        back = await trace(final, BACK, sources.fetch)
        assert [b.batch_id for b in back.batches] == ["n3:2", "n2:2", "n1:2", "n0:2"]
        assert back.complete and back.batches[-1].inputs == []
        assert back.batches[1].outputs == ["n3:2"]
        fwd = await trace("n0:2", FORWARD, sources.fetch)
        assert [b.batch_id for b in fwd.batches] == ["n0:2", "n1:2", "n2:2", "n3:2"]
        assert fwd.batches[0].delivered_to == "n1"
        short = await trace(final, BACK, sources.fetch, depth=1)
        assert [b.batch_id for b in short.batches] == ["n3:2", "n2:2"]
        with pytest.raises(UnknownBatch):
            await trace("n3:99", BACK, sources.fetch)
        await sources.aclose()

    asyncio.run(run())


def test_missing_node_is_reported_not_skipped(chain: WalChain) -> None:
    final = chain.final_product()
    chain.close()
    dirs = [chain.data_dir(n) for n in ("n3", "n2", "n0")]  # n1's data dir is gone
    sources = IndexSources({}, dirs, no_address_reason="no data dir and no address")

    async def run() -> None:
        back = await trace(final, BACK, sources.fetch)
        assert [b.batch_id for b in back.batches] == ["n3:1", "n2:1"]
        assert back.unreachable == [("n1", "no data dir and no address")]
        await sources.aclose()

    asyncio.run(run())


def test_retention_prunes_the_index(chain: WalChain) -> None:
    chain.final_product()
    chain.compact()
    wal: Wal = chain.wals["n1"]
    wal.compact(retention_days=1, now_ms=10**13 * 3)  # far in the future: everything is old
    assert wal.lineage.lookup(["n1:1", "n0:1"]) == {}


def test_records_written_without_the_index_keep_their_dedup_when_compacted(
        tmp_path: Path) -> None:
    """A WAL from before the index (lineage=False writes none) compacts safely: the
    compacted ids are still recognised as settled."""
    chain = WalChain(tmp_path, 2)
    for node_id in chain.ids:
        chain.wals[node_id].lineage_on = False
    chain.final_product()
    for node_id in chain.ids:
        chain.wals[node_id].lineage_on = True
    chain.compact()
    assert chain.wals["n1"].settled.settled_inbound("n0:1") == "n0"
    assert chain.wals["n0"].settled.settled_request("n1", "n1~1~1") is not None
    chain.close()


def test_compact_recent_moves_what_a_full_scan_would(chain: WalChain) -> None:
    """The agent's periodic compaction takes the records the WAL's own commits settled
    from memory (no read back); it must leave nothing settled behind and lose nothing."""
    for _ in range(5):
        chain.final_product()
    for node_id, wal in chain.wals.items():
        out_ids, in_ids = wal.compact_recent()
        node = chain.nodes[node_id]
        assert (sorted(out_ids), sorted(in_ids)) == tuple(map(sorted, node.settled_ids()))
        node.forget(out_ids, in_ids)
        assert wal.compact() == ([], []), node_id  # the scan finds nothing left to move
        live = wal.load()
        assert not live.inbound and not live.requests, node_id
        assert len(live.outbound) == (5 if node_id == chain.ids[-1] else 0), node_id
    commits = chain.wals["n1"].stats.commits
    assert chain.wals["n1"].compact_recent(retention_days=1) == ([], [])
    assert chain.wals["n1"].compact_recent(retention_days=1) == ([], [])
    assert chain.wals["n1"].stats.commits == commits + 1  # one prune, then no transaction
    assert chain.wals["n1"].settled.settled_inbound("n0:3") == "n0"
    assert chain.wals["n0"].settled.settled_request("n1", "n1~1~3") is not None
    dirs = [chain.data_dir(n) for n in chain.ids]
    chain.close()
    report = audit(dirs, quiescent=True)
    assert report.ok, report.summary()
    assert report.produced == 20 and report.consumed == 15 and report.delivered == 15


def test_settled_records_left_by_a_crash_are_moved_at_the_next_open(tmp_path: Path) -> None:
    """compact_recent only knows what this WAL object committed: records settled before a
    crash (never compacted) are moved by the full compaction the agent runs at open."""
    chain = WalChain(tmp_path, 2)
    chain.final_product()
    chain.close()  # a crash before any compaction: nothing moved
    wal = Wal.open(wal_path(chain.data_dir("n1")), "n1")
    try:
        assert wal.compact_recent() == ([], [])
        assert wal.compact() == ([], ["n0:1"])
    finally:
        wal.close()


def test_a_batch_in_transit_shows_where_it_went_before_any_compaction(
        chain: WalChain) -> None:
    """Sending writes nothing to the index: the reader joins the live outbound record."""
    chain._handle("n0", Produce(()))
    (request,) = chain._handle("n1", NewRequest("n0", "i0", flow_version=1))
    chain._handle("n0", request)  # the supplier's IN_TRANSIT is durable; no reply handled
    made = chain.wals["n0"].lineage.lookup(["n0:1"])["n0:1"].made
    assert made is not None and (made.state, made.to, made.delivered_to) == (
        "IN_TRANSIT", "n1", "")
    assert made.request_id == request.request_id
