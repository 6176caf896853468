"""The LMDB Raft journal: pysyncobj's Journal contract, persistence, and sync-before-ack.

The last test runs a real 3-node pysyncobj cluster in this process (real TCP on loopback,
real LMDB files) and records, at every fsync and every outgoing Raft message, what was on
disk: no acknowledgement of a log entry may leave a replica before the entry was fsynced.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.transport import TCPTransport

from fos_raft.cli.launcher import free_port
from fos_raft.replica import journal as journal_mod
from fos_raft.replica import transport as transport_mod
from fos_raft.replica.journal import LmdbJournal, read_journal


def test_journal_contract_and_reopen(tmp_path: Path):
    path = str(tmp_path / "j")
    j = LmdbJournal(path)
    assert len(j) == 0 and j.getCurrentTerm() == 0 and j.getVotedForNodeId() is None
    assert j.getRaftCommitIndex() == 1
    for idx in range(1, 8):
        j.add(b"cmd%d" % idx, idx, 1 if idx < 5 else 2)
    assert j[0] == (b"cmd1", 1, 1) and j[-1] == (b"cmd7", 7, 2)
    assert j[2:4] == [(b"cmd3", 3, 1), (b"cmd4", 4, 1)]
    j.deleteEntriesFrom(5)  # drop indices 6, 7 (list offsets 5, 6)
    assert [e[1] for e in j[:]] == [1, 2, 3, 4, 5]
    j.deleteEntriesTo(2)  # compaction: drop indices 1, 2
    assert [e[1] for e in j[:]] == [3, 4, 5]
    j.setCurrentTerm(3, "127.0.0.1:1")
    j.setRaftCommitIndex(4)
    j._destroy()

    reopened = LmdbJournal(path)
    assert [e[1] for e in reopened[:]] == [3, 4, 5]
    assert reopened[0] == (b"cmd3", 3, 1)
    assert reopened.getCurrentTerm() == 3 and reopened.getVotedForNodeId() == "127.0.0.1:1"
    assert reopened.getRaftCommitIndex() == 4
    reopened.setCurrentTerm(4, None)
    reopened.clear()
    reopened.add(b"x", 9, 4)
    reopened._destroy()
    entries, term, vote = read_journal(path)
    assert entries == [(b"x", 9, 4)] and term == 4 and vote is None


def test_flush_syncs_only_when_log_writes_are_pending(tmp_path: Path):
    j = LmdbJournal(str(tmp_path / "j"))
    j.flush()
    assert j.fsyncs == 0
    j.add(b"a", 1, 1)
    j.add(b"b", 2, 1)
    j.before_send()  # one fsync covers both entries
    assert j.fsyncs == 1 and j.unsynced_sends == 0
    j.before_send()
    assert j.fsyncs == 1
    j.setRaftCommitIndex(2)  # lazy: no fsync of its own ...
    j.before_send()
    assert j.fsyncs == 1
    j.onOneSecondTimer()  # ... but the timer makes it durable
    assert j.fsyncs == 2
    j.setCurrentTerm(1, "me")  # term/vote: synced immediately
    assert j.fsyncs == 3
    j._destroy()


class _Counter(SyncObj):
    def __init__(self, self_addr: str, others: list[str], conf: SyncObjConf, journal: Any):
        super().__init__(
            self_addr, others, conf, transportClass=transport_mod.transport_class(journal)
        )
        self.value = 0

    @replicated
    def incr(self) -> int:
        self.value += 1
        return self.value


class _RecordingEnv:
    """Wraps the journal's LMDB env: records how many entries were on disk at each fsync."""

    def __init__(self, env: Any, journal: LmdbJournal, events: list[tuple[str, int]]) -> None:
        self._env = env
        self._journal = journal
        self._events = events

    def sync(self, force: bool = False) -> None:
        self._env.sync(force)
        last = self._journal[-1][1] if len(self._journal) else 0
        self._events.append(("fsync", last))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def record_acks(monkeypatch: Any, addrs: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Per member, the ("ack", index) of each successful append answer, recorded where the
    message really leaves: pysyncobj's own TCPTransport.send, which the transport's release
    calls after its flush. Tests append their own events (fsyncs, applies) beside them."""
    events: dict[str, list[tuple[str, int]]] = {a: [] for a in addrs}
    original_send = TCPTransport.send

    def send(self: Any, node: Any, message: Any) -> Any:
        if message.get("type") == "next_node_idx" and message.get("success"):
            events[self._selfNode.address].append(("ack", message["next_node_idx"] - 1))
        return original_send(self, node, message)

    monkeypatch.setattr(TCPTransport, "send", send)
    return events


def test_every_acknowledged_entry_was_fsynced_first(tmp_path: Path, monkeypatch):
    journal_mod.install()
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    events = record_acks(monkeypatch, addrs)
    nodes: list[_Counter] = []
    try:
        for addr in addrs:
            j = LmdbJournal(str(tmp_path / addr.replace(":", "_")))
            j._env = _RecordingEnv(j._env, j, events[addr])
            conf = SyncObjConf(
                bindAddress=addr,
                journalFile=j,
                appendEntriesUseBatch=False,
                raftMinTimeout=0.3,
                raftMaxTimeout=0.6,
                appendEntriesPeriod=0.05,
                useFork=False,
            )
            nodes.append(_Counter(addr, [a for a in addrs if a != addr], conf, j))
        deadline = time.monotonic() + 20
        while not any(n._isLeader() for n in nodes):
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.02)
        done = threading.Event()
        results: list[int] = []
        for _ in range(30):
            done.clear()
            nodes[0].incr(callback=lambda res, err: (results.append(res), done.set()))
            assert done.wait(10)
        assert results == list(range(1, 31))
    finally:
        for node in nodes:
            node.destroy_synchronous()
    leader_term_entries = 30
    acks_seen = 0
    for addr in addrs:
        on_disk = 0
        for kind, index in events[addr]:
            if kind == "fsync":
                on_disk = max(on_disk, index)
            else:
                acks_seen += 1
                assert index <= on_disk, f"{addr} acknowledged entry {index}, synced {on_disk}"
    # Followers acknowledged every new entry (sequential writes: one append each) ...
    assert acks_seen >= leader_term_entries
    # ... and each replica's journal was synced at least once per acknowledged write.
    for addr in addrs:
        assert sum(1 for kind, _ in events[addr] if kind == "fsync") >= leader_term_entries


class _ApplyRecorder(_Counter):
    """Records ("apply", raft index) on the replica's event list as each entry applies."""

    events: list[tuple[str, int]]

    @replicated
    def incr(self) -> int:
        self.events.append(("apply", self.raftLastApplied + 1))
        self.value += 1
        return self.value


def test_concurrent_writes_share_fsyncs_and_nothing_counts_before_it_is_synced(
    tmp_path: Path, monkeypatch
):
    journal_mod.install()
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    events = record_acks(monkeypatch, addrs)
    nodes: list[_ApplyRecorder] = []
    journals: list[LmdbJournal] = []
    writes = 64
    try:
        for addr in addrs:
            j = LmdbJournal(str(tmp_path / addr.replace(":", "_")))
            j._env = _RecordingEnv(j._env, j, events[addr])
            conf = SyncObjConf(bindAddress=addr, journalFile=j, appendEntriesUseBatch=False,
                               raftMinTimeout=0.3, raftMaxTimeout=0.6,
                               appendEntriesPeriod=0.05, useFork=False)
            node = _ApplyRecorder(addr, [a for a in addrs if a != addr], conf, j)
            node.events = events[addr]
            nodes.append(node)
            journals.append(j)
        deadline = time.monotonic() + 20
        while not any(n._isLeader() for n in nodes):
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.02)
        leader = next(i for i, n in enumerate(nodes) if n._isLeader())
        results: list[int] = []
        all_done = threading.Event()

        def on_result(res: Any, err: Any) -> None:
            results.append(res)
            if len(results) == writes:
                all_done.set()

        fsyncs_before = journals[leader].fsyncs
        submitted = threading.Event()

        def submit_in_one_tick() -> None:  # runs on the leader's tick thread
            if not submitted.is_set():
                submitted.set()
                for _ in range(writes):
                    nodes[leader].incr(callback=on_result)

        nodes[leader].addOnTickCallback(submit_in_one_tick)
        assert all_done.wait(20), f"{len(results)} of {writes} writes done"
        leader_fsyncs = journals[leader].fsyncs - fsyncs_before
    finally:
        for node in nodes:
            node.destroy_synchronous()
    assert sorted(results) == list(range(1, writes + 1))
    # Group commit: 64 writes queued in one tick cost the leader a handful of fsyncs, not 64.
    assert leader_fsyncs <= 8, leader_fsyncs
    for addr in addrs:
        on_disk = 0
        for kind, index in events[addr]:
            if kind == "fsync":
                on_disk = max(on_disk, index)
            else:  # neither an ack nor an apply (the leader's reply) before the fsync
                assert index <= on_disk, f"{addr} {kind} of entry {index}, synced {on_disk}"
    assert sum(1 for kind, _ in events[addrs[leader]] if kind == "apply") == writes
