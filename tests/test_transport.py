"""The Raft transport (fos_raft/replica/transport.py): what merges in the outbox, and the
keepalive that keeps links between followers usable for the next election."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.tcp_connection import CONNECTION_STATE

from fos_raft.cli.launcher import free_port
from fos_raft.replica import journal as journal_mod
from fos_raft.replica import transport as transport_mod
from fos_raft.replica.journal import LmdbJournal


class _Conn:
    state = CONNECTION_STATE.CONNECTED


def _transport() -> tuple[transport_mod.DurableTCPTransport, Any]:
    t = transport_mod.DurableTCPTransport.__new__(transport_mod.DurableTCPTransport)
    t._init_outbox()
    node = object()
    t._connections = {node: _Conn()}
    return t, node


def _append(prev: int, entries: list[int], term: int = 2, commit: int = 0) -> dict[str, Any]:
    return {"type": "append_entries", "term": term, "commit_index": commit,
            "prevLogIdx": prev, "prevLogTerm": term,
            "entries": [(b"x", i, term) for i in entries]}


def test_contiguous_append_entries_merge_and_a_heartbeat_is_superseded() -> None:
    t, node = _transport()
    t.send(node, _append(4, []))  # heartbeat from index 4
    t.send(node, _append(4, [5], commit=3))
    t.send(node, _append(5, [6, 7], commit=4))
    assert len(t._outbox) == 1
    merged = t._outbox[0][2]
    assert merged["prevLogIdx"] == 4 and [e[1] for e in merged["entries"]] == [5, 6, 7]
    assert merged["commit_index"] == 4  # the newest
    t.send(node, _append(9, [10]))  # not contiguous: its own message
    t.send(node, _append(10, [11], term=3))  # another term: its own message
    assert len(t._outbox) == 3


def test_acks_keep_the_newest_success_and_never_merge_a_reset() -> None:
    t, node = _transport()
    ack = {"type": "next_node_idx", "reset": False, "success": True}
    t.send(node, {**ack, "next_node_idx": 5})
    t.send(node, {**ack, "next_node_idx": 8})
    assert len(t._outbox) == 1 and t._outbox[0][2]["next_node_idx"] == 8
    t.send(node, {**ack, "next_node_idx": 3, "reset": True, "success": False})
    assert len(t._outbox) == 2


def test_merged_entries_stay_under_the_batch_limit() -> None:
    t, node = _transport()
    big = transport_mod.MERGE_LIMIT_BYTES // 2 + 1
    first = _append(0, [1])
    first["entries"] = [(b"x" * big, 1, 2)]
    second = _append(1, [2])
    second["entries"] = [(b"y" * big, 2, 2)]
    t.send(node, first)
    t.send(node, second)
    assert len(t._outbox) == 2


def test_links_between_followers_stay_fresh(tmp_path: Path) -> None:
    """pysyncobj drops a link it read nothing from for connectionTimeout when it next sends
    on it; without keepalives the followers' link is stale by the time a vote needs it."""
    journal_mod.install()
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    nodes: list[SyncObj] = []
    timeout = 1.0
    try:
        for addr in addrs:
            j = LmdbJournal(str(tmp_path / addr.replace(":", "_")))
            conf = SyncObjConf(bindAddress=addr, journalFile=j, appendEntriesUseBatch=False,
                               raftMinTimeout=0.3, raftMaxTimeout=0.6, appendEntriesPeriod=0.05,
                               connectionTimeout=timeout, useFork=False)
            nodes.append(SyncObj(addr, [a for a in addrs if a != addr], conf,
                                 transportClass=transport_mod.transport_class(j)))
        deadline = time.monotonic() + 20
        while not any(n._isLeader() for n in nodes):
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.02)
        time.sleep(timeout * 2.5)  # polling here would not help: staleness needs idle time
        # Every link, not only the followers' one (leadership may move on a loaded machine):
        # keepalives every timeout / 4 keep each under that, plus scheduling slack.
        for a in nodes:
            transport = a._SyncObj__transport
            for other in transport._nodes:
                conn = transport._connections[other]
                assert conn.state == CONNECTION_STATE.CONNECTED
                idle = time.monotonic() - conn._TcpConnection__lastReadTime
                assert idle < timeout * 0.75, (
                    f"{a.selfNode.address} read nothing from {other.address} for {idle:.2f}s")
    finally:
        for node in nodes:
            node.destroy_synchronous()


def _log(*terms: int, first: int = 1) -> list[tuple[bytes, int, int]]:
    return [(b"x", first + k, term) for k, term in enumerate(terms)]


def test_known_entries_are_not_written_again() -> None:
    log = _log(1, 2, 2, 2)  # indices 1..4
    message = _append(1, [2, 3, 4, 5])  # a resend after a rolled-back next index
    assert transport_mod.trim_known_entries(message, log) == 3
    assert (message["prevLogIdx"], message["prevLogTerm"]) == (4, 2)
    assert [e[1] for e in message["entries"]] == [5]


def test_all_known_keeps_a_tail_of_the_leaders_term_only() -> None:
    message = _append(1, [2, 3])  # term 2; we have 2..4 of term 2
    assert transport_mod.trim_known_entries(message, _log(1, 2, 2, 2)) == 2
    assert (message["prevLogIdx"], message["entries"]) == (4, [])
    message = _append(1, [2, 3])  # our index 4 is of an older term: pysyncobj truncates it
    assert transport_mod.trim_known_entries(message, _log(1, 2, 2, 1)) == 2
    assert (message["prevLogIdx"], message["entries"]) == (3, [])


def test_a_conflict_is_left_to_pysyncobj_to_truncate() -> None:
    log = _log(1, 1, 1)
    message = _append(1, [2, 3])  # term 2 at index 2: conflicts with our term 1
    assert transport_mod.trim_known_entries(message, log) == 0
    assert message["prevLogIdx"] == 1 and len(message["entries"]) == 2
    compacted = _log(2, 2, first=5)  # indices 5..6; the message starts before them
    message = _append(3, [4, 5])
    assert transport_mod.trim_known_entries(message, compacted) == 0
