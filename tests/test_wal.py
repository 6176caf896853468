"""The LMDB WAL: transitions, refusals, group commit, crash recovery, foreign WALs."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from fos_agent.audit import audit_states
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import (
    Arrived,
    DeliveryConfirmed,
    FlowChanged,
    Message,
    NewRequest,
    OfferBatch,
    Produce,
    Reclaim,
    RequestBatch,
    Tick,
)
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InState,
    OutboundRecord,
    OutState,
    PutOutbound,
    SetNextSeq,
)
from fos_agent.protocol.transitions import IN_RANK, OUT_RANK, InvalidTransition, apply_writes
from fos_agent.storage.group_commit import GroupCommitter
from fos_agent.storage.wal import CommitFailed, Wal, WalError, read_wal, wal_path
from fos_raft.model import ItemReq

WOOD = NodeConfig("S", ItemReq("wood", 1))
FRAME = NodeConfig("C", ItemReq("frame", 1), (ItemReq("wood", 1),))
HELPER = Path(__file__).with_name("wal_crash_writer.py")
DEADLINE_S = 60.0


class Mirrored:
    """A node over a real WAL, with an in-memory replica of what must be durable."""

    def __init__(self, path: Path, config: NodeConfig) -> None:
        self.path, self.config = path, config
        self.wal = Wal.open(path, config.node_id)
        self.mirror = self.wal.load()
        self.node, _ = Node.recover(config, self.wal.load())

    def on(self, event: object) -> list[Message]:
        effects = self.node.handle(event)  # type: ignore[arg-type]
        self.wal.commit(effects.writes)
        apply_writes(self.mirror, effects.writes)
        return [*effects.messages, *([effects.reply] if effects.reply else [])]

    def reopen(self) -> DurableState:
        incarnation = self.wal.incarnation
        self.wal.close()
        self.wal = Wal.open(self.path, self.config.node_id)
        loaded = self.wal.load()
        assert loaded.incarnation == incarnation + 1
        self.mirror.incarnation = loaded.incarnation
        assert loaded == self.mirror
        self.node, _ = Node.recover(self.config, loaded)
        return loaded


def test_every_transition_is_durable_across_reopen(tmp_path: Path) -> None:
    s, c = Mirrored(tmp_path / "S", WOOD), Mirrored(tmp_path / "C", FRAME)
    try:
        s.on(FlowChanged(1, frozenset({"C"})))
        for _ in range(3):
            s.on(Produce())
        s.reopen()  # outbound QUEUED
        s.on(FlowChanged(1, frozenset({"C"})))
        replies = [s.on(RequestBatch("S", "C", f"r{i}", "wood", 1))[0] for i in range(2)]
        assert s.reopen().outbound["S:1"].state is OutState.IN_TRANSIT
        waiting = c.on(replies[0])
        assert c.reopen().inbound["S:1"].state is InState.IN_TRANSIT
        confirm = c.on(Arrived("S:1"))
        assert c.reopen().inbound["S:1"].state is InState.QUEUED
        s.on(confirm[0])
        assert s.reopen().outbound["S:1"].state is OutState.DELIVERED
        c.on(Produce(("S:1",)))
        loaded = c.reopen()
        assert loaded.inbound["S:1"].state is InState.CONSUMED
        assert loaded.outbound["C:1"].batch.lineage == ("S:1",) and loaded.next_seq == 2
        s.on(FlowChanged(2, frozenset()))
        s.on(Reclaim("C"))
        loaded = s.reopen()
        assert loaded.outbound["S:2"].state is OutState.RECLAIMED
        assert loaded.outbound["S:4"].reclaimed_from == "S:2" and loaded.next_seq == 5
        assert loaded.requests == {("C", "r0"): "S:1", ("C", "r1"): "S:2"}
        assert waiting and isinstance(waiting[0], type(confirm[0])) is False
    finally:
        s.wal.close()
        c.wal.close()


def test_invalid_transitions_are_refused_and_write_nothing(tmp_path: Path) -> None:
    with Wal.open(tmp_path / "S", "S") as wal:
        node, _ = Node.recover(WOOD, wal.load())
        first = node.handle(Produce()).writes
        wal.commit(first)
        before = wal.load()
        with pytest.raises(InvalidTransition, match="QUEUED -> QUEUED"):
            wal.commit(first)  # the same step again: not a transition
        reused = first[0].record.batch  # type: ignore[union-attr]
        reused = Batch("S:0", reused.item, reused.qty, "S", 0)
        with pytest.raises(InvalidTransition, match="seq reuse"):
            wal.commit([PutOutbound(OutboundRecord(reused, OutState.QUEUED)), SetNextSeq(5)])
        second, third = node.handle(Produce()).writes, node.handle(Produce()).writes
        results = wal.commit_groups([second, [SetNextSeq(1)], third])
        assert results[0] is None and isinstance(results[1], InvalidTransition)
        assert isinstance(results[2], CommitFailed)  # may depend on the refused group
        after = wal.load()
        assert set(after.outbound) == set(before.outbound) | {"S:2"}
        assert wal.stats.rejected == 4  # two single refusals, then one refused + one skipped


async def test_group_commit_shares_synced_transactions(tmp_path: Path) -> None:
    writers = 50
    with Wal.open(tmp_path / "S", "S") as wal:
        node, _ = Node.recover(WOOD, wal.load())
        committer = GroupCommitter(wal)
        commits_before = wal.stats.commits
        order: list[int] = []

        async def writer(i: int) -> None:
            await committer.commit(node.handle(Produce()).writes)
            order.append(i)

        await asyncio.gather(*(writer(i) for i in range(writers)))
        assert order == list(range(writers))  # resolved in submission order
        synced = wal.stats.commits - commits_before
        assert 1 <= synced < writers
        assert len(wal.load().outbound) == writers

        # an empty group is a barrier: it resolves only after the earlier group is durable
        durable_at_barrier: list[int] = []
        pending = committer.commit(node.handle(Produce()).writes)
        barrier = committer.commit(())
        barrier.add_done_callback(lambda _: durable_at_barrier.append(len(wal.load().outbound)))
        await asyncio.gather(pending, barrier)
        assert durable_at_barrier == [writers + 1]

        # after a refused group everything else is refused until the agent recovers
        bad = committer.commit([PutOutbound(wal.load().outbound["S:1"])])
        later = committer.commit(node.handle(Produce()).writes)
        with pytest.raises(InvalidTransition):
            await bad
        with pytest.raises(CommitFailed):
            await later
        with pytest.raises(CommitFailed):
            await committer.commit(())
        await committer.aclose()


def test_map_grows_when_full(tmp_path: Path) -> None:
    with Wal.open(tmp_path / "S", "S", map_size=64 << 10) as wal:
        node, _ = Node.recover(WOOD, wal.load())
        wal.commit_groups([node.handle(Produce()).writes for _ in range(2000)])
        assert wal.stats.resizes >= 1
    assert len(read_wal(tmp_path / "S").outbound) == 2000


def _run_writer(base: Path, seed: int, acks_wanted: int, log: Path) -> list[tuple[str, ...]]:
    """Start the helper, let it acknowledge ``acks_wanted`` records, SIGKILL it mid-write,
    and return every acknowledgement it printed (all of them were durable)."""
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, str(HELPER), str(base), str(seed)],
                                stdout=subprocess.PIPE, stderr=err)
    buf, acks = b"", 0
    try:
        deadline = time.monotonic() + DEADLINE_S
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while acks < acks_wanted:
            left = deadline - time.monotonic()
            assert left > 0, f"writer too slow: {acks} acks; {log.read_text()[-2000:]}"
            ready, _, _ = select.select([fd], [], [], left)
            chunk = os.read(fd, 65536) if ready else b""
            assert chunk or not ready, f"writer exited early: {log.read_text()[-2000:]}"
            buf += chunk
            acks = buf.count(b"\nACK ")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE_S)
        buf += proc.stdout.read()  # acks written before the kill are durable too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    lines = buf.decode().splitlines()
    assert "READY" in lines, lines[:3]  # recovery's own deliveries may come first
    return [tuple(line.split()[1:]) for line in lines if line.startswith("ACK ")]


def _settle(base: Path) -> dict[str, DurableState]:
    """Recover both nodes in-process and run retries until nothing is in transit."""
    wals = {n: Wal.open(base / n, n) for n in ("S", "C")}
    try:
        nodes: dict[str, Node] = {}
        queue: list[Message] = []
        for n, config in (("S", WOOD), ("C", FRAME)):
            nodes[n], effects = Node.recover(config, wals[n].load())
            queue.extend(effects.messages)

        def run(node_id: str, event: object) -> None:
            effects = nodes[node_id].handle(event)  # type: ignore[arg-type]
            wals[node_id].commit(effects.writes)
            queue.extend([*effects.messages, *([effects.reply] if effects.reply else [])])

        for _ in range(10):
            while queue:
                msg = queue.pop(0)
                run(msg.to, msg)
            for rec in nodes["C"].inbound_in_transit():
                run("C", Arrived(rec.batch_id))
            if not nodes["S"].outbound_in_transit() and not queue:
                break
            run("S", Tick())
        return {n: w.load() for n, w in wals.items()}
    finally:
        for w in wals.values():
            w.close()


def test_sigkill_mid_write_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for run, acks_wanted in enumerate((60, 250, 600), start=1):
        acks = _run_writer(tmp_path, run, acks_wanted, tmp_path / "writer.log")
        states = {n: read_wal(tmp_path / n) for n in ("S", "C")}
        for node, side, bid, state in acks:
            if side == "out":
                rec = states[node].outbound.get(bid)
                assert rec is not None and OUT_RANK[rec.state] >= OUT_RANK[OutState(state)], (
                    f"acknowledged {node} {bid} {state}, WAL has {rec}")
            else:
                rec_in = states[node].inbound.get(bid)
                assert rec_in is not None and IN_RANK[rec_in.state] >= IN_RANK[InState(state)], (
                    f"acknowledged {node} {bid} {state}, WAL has {rec_in}")
        for d in states.values():
            assert d.incarnation == run
            seen |= {("out", r.state.value) for r in d.outbound.values()}
            seen |= {("in", r.state.value) for r in d.inbound.values()}
        report = audit_states(states)
        assert report.ok, report.summary()  # safety holds at every crash point
    assert seen >= {("out", "QUEUED"), ("out", "IN_TRANSIT"), ("out", "DELIVERED"),
                    ("in", "IN_TRANSIT"), ("in", "QUEUED"), ("in", "CONSUMED")}, seen
    settled = _settle(tmp_path)
    report = audit_states(settled, quiescent=True)
    assert report.ok and not report.in_transit, report.summary()
    assert report.delivered > 0 and report.consumed > 0


def _garbage_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bad"
    path.mkdir()
    (path / "data.mdb").write_bytes(b"this is not an lmdb file at all" * 200)
    return path


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_refuses_non_lmdb_and_foreign_directories(tmp_path: Path) -> None:
    bad = _garbage_dir(tmp_path)
    before = _snapshot(bad)
    with pytest.raises(WalError, match="not an LMDB file"):
        Wal.open(bad, "S")
    with pytest.raises(WalError, match="not an LMDB file"):
        read_wal(bad)
    assert _snapshot(bad) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WalError, match="not a factoryOS WAL"):
        Wal.open(other, "S")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(WalError, match="not a directory"):
        Wal.open(tmp_path / "file", "S")
    with pytest.raises(WalError, match="has no WAL"):
        read_wal(tmp_path / "missing")


def test_refuses_foreign_lmdb_wrong_schema_other_node_and_second_opener(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    env = lmdb.open(str(foreign))
    with env.begin(write=True) as txn:
        txn.put(b"somebody", b"else's data")
    env.close()
    before = _snapshot(foreign)
    with pytest.raises(WalError, match="not a factoryOS WAL"):
        Wal.open(foreign, "S")
    after = _snapshot(foreign)
    assert after.pop("data.mdb") == before.pop("data.mdb")

    path = wal_path(tmp_path / "agent")
    Wal.open(path, "S").close()
    with pytest.raises(WalError, match="belongs to node 'S', not 'T'"):
        Wal.open(path, "T")
    with Wal.open(path, "S"), pytest.raises(WalError, match="in use"):
        Wal.open(path, "S")
    env = lmdb.open(str(path), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"99", db=env.open_db(b"meta", txn=txn))
    env.close()
    data = (path / "data.mdb").read_bytes()
    with pytest.raises(WalError, match="schema version 99"):
        Wal.open(path, "S")
    assert (path / "data.mdb").read_bytes() == data


def test_read_wal_works_while_the_owner_has_it_open(tmp_path: Path) -> None:
    with Wal.open(tmp_path / "S", "S") as wal:
        node, _ = Node.recover(WOOD, wal.load())
        wal.commit(node.handle(Produce()).writes)
        snapshot = read_wal(tmp_path / "S")
        assert list(snapshot.outbound) == ["S:1"] and snapshot.incarnation == 1
        wal.commit(node.handle(Produce()).writes)  # the reader did not block the writer
    assert list(read_wal(tmp_path / "S").outbound) == ["S:1", "S:2"]


def test_recovered_node_reoffers_and_reconfirms(tmp_path: Path) -> None:
    s, c = Mirrored(tmp_path / "S", WOOD), Mirrored(tmp_path / "C", FRAME)
    try:
        s.on(FlowChanged(1, frozenset({"C"})))
        s.on(Produce())
        (req,) = c.on(NewRequest("S", "wood"))
        (sent,) = s.on(req)
        c.on(sent)
        c.on(Arrived("S:1"))  # the confirmation is "lost": S still IN_TRANSIT
        s.wal.close()
        c.wal.close()
        s.wal, c.wal = Wal.open(s.path, "S"), Wal.open(c.path, "C")
        _, s_fx = Node.recover(WOOD, s.wal.load())
        _, c_fx = Node.recover(FRAME, c.wal.load())
        assert [type(m) for m in s_fx.messages] == [OfferBatch]
        assert c_fx.messages == (DeliveryConfirmed("S", "C", "S:1"),)
    finally:
        s.wal.close()
        c.wal.close()
