"""ReadIndex rounds (fos_raft/replica/read_rounds.py) on a stand-in for pysyncobj's SyncObj,
and on a real cluster: linearizable reads, on the leader or a follower, add no log entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coord_util import WINDOW_FACTORY, register_all

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.read_rounds import ANSWER, ASK, ReadRounds


@dataclass
class FakeTransport:
    read_seq: int = 0
    read_acks: dict[Any, int] = field(default_factory=dict)
    sent: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def send(self, node: Any, message: dict[str, Any]) -> bool:
        self.sent.append((node, message))
        return True


class FakeSyncObj:
    """The attributes ReadRounds reads, under pysyncobj's mangled names."""

    def __init__(self, others: int = 2) -> None:
        self._SyncObj__raftState = 2  # leader
        self._SyncObj__raftCurrentTerm = 3
        self._SyncObj__raftLog = [(b"", 1, 1), (b"", 2, 3), (b"", 3, 3)]
        self._SyncObj__raftCommitIndex = 2
        self._SyncObj__otherNodes = [f"n{i}" for i in range(others)]
        self._SyncObj__transport = FakeTransport()
        self.raftLastApplied = 2
        self.heartbeats = 0
        self.leader: str | None = None

    def _getLeader(self) -> str | None:
        return self.leader

    def _SyncObj__sendAppendEntries(self) -> None:
        self.heartbeats += 1


def _reads(rounds: ReadRounds, n: int) -> list[tuple[int | None, str | None]]:
    out: list[tuple[int | None, str | None]] = []
    for _ in range(n):
        rounds.request(lambda index, error: out.append((index, error)))
    return out


def test_reads_of_one_tick_share_one_heartbeat_and_answer_on_a_majority_echo() -> None:
    obj, rounds = FakeSyncObj(), ReadRounds()
    rounds.attach(obj)
    answers = _reads(rounds, 5)
    rounds.on_tick()
    assert rounds.rounds == 1 and obj.heartbeats == 1 and obj._SyncObj__transport.read_seq == 1
    assert answers == []  # no member echoed yet
    obj._SyncObj__transport.read_acks["n0"] = 0  # an echo of an older round counts nothing
    rounds.on_tick()
    assert answers == []
    obj._SyncObj__transport.read_acks["n1"] = 1  # leader + n1: a majority of three
    rounds.on_tick()
    assert answers == [(2, None)] * 5
    rounds.on_tick()
    assert rounds.rounds == 1  # nothing pending: no new round


def test_a_round_waits_for_the_index_to_be_applied() -> None:
    obj, rounds = FakeSyncObj(), ReadRounds()
    rounds.attach(obj)
    obj._SyncObj__raftCommitIndex = 3
    obj.raftLastApplied = 2
    answers = _reads(rounds, 1)
    rounds.on_tick()
    obj._SyncObj__transport.read_acks["n0"] = 1
    rounds.on_tick()
    assert answers == []
    obj.raftLastApplied = 3
    rounds.on_tick()
    assert answers == [(3, None)]


def test_no_round_before_the_leader_committed_an_entry_of_its_term() -> None:
    obj, rounds = FakeSyncObj(), ReadRounds()
    rounds.attach(obj)
    obj._SyncObj__raftCommitIndex = 1  # term 1 < current term 3: the no-op is not committed
    answers = _reads(rounds, 2)
    rounds.on_tick()
    assert rounds.rounds == 0 and answers == []
    obj._SyncObj__raftCommitIndex = 2
    rounds.on_tick()
    assert rounds.rounds == 1


def test_rounds_fail_when_leadership_or_term_changes_and_followers_refuse() -> None:
    obj, rounds = FakeSyncObj(), ReadRounds()
    rounds.attach(obj)
    answers = _reads(rounds, 1)
    rounds.on_tick()
    obj._SyncObj__raftCurrentTerm = 4  # re-elected in a newer term meanwhile
    obj._SyncObj__transport.read_acks["n0"] = 1
    rounds.on_tick()
    assert answers[0][0] is None and "term" in (answers[0][1] or "")
    obj._SyncObj__raftLog.append((b"", 4, 4))  # its no-op of term 4, committed and applied
    obj._SyncObj__raftCommitIndex = obj.raftLastApplied = 4
    answers = _reads(rounds, 1)
    rounds.on_tick()
    obj._SyncObj__raftState = 0  # deposed
    rounds.on_tick()
    assert answers[0][0] is None and "leadership" in (answers[0][1] or "")
    answers = _reads(rounds, 1)
    rounds.on_tick()
    assert answers == [(None, "no leader known")]


def test_a_follower_asks_the_leader_and_answers_once_it_applied_the_index() -> None:
    leader_obj, leader = FakeSyncObj(), ReadRounds()
    leader.attach(leader_obj)
    obj, follower = FakeSyncObj(), ReadRounds()
    follower.attach(obj)
    obj._SyncObj__raftState, obj.leader, obj.raftLastApplied = 0, "L", 1
    answers = _reads(follower, 2)
    follower.on_tick()
    asks = obj._SyncObj__transport.sent
    assert [m["type"] for _, m in asks] == [ASK, ASK] and {n for n, _ in asks} == {"L"}
    for _, message in asks:  # the leader runs one round for both
        leader.on_message("F", message)
    leader.on_tick()
    leader_obj._SyncObj__transport.read_acks["n0"] = 1
    leader.on_tick()
    replies = leader_obj._SyncObj__transport.sent
    assert leader.rounds == 1 and [m["index"] for _, m in replies] == [2, 2]
    for _, message in replies:
        follower.on_message("L", message)
    assert answers == []  # applied 1 < 2
    obj.raftLastApplied = 2
    follower.on_tick()
    assert answers == [(2, None)] * 2
    # a reply from a member that was not asked, and a leader change, never answer a read
    answers = _reads(follower, 1)
    follower.on_tick()
    stray = {"type": ANSWER, "id": obj._SyncObj__transport.sent[-1][1]["id"], "index": 9,
             "error": None}
    follower.on_message("X", stray)
    assert answers == []
    obj.leader = "M"
    follower.on_tick()
    assert answers == [(None, "the leader changed during the read")]


def test_a_single_member_answers_at_once() -> None:
    obj, rounds = FakeSyncObj(others=0), ReadRounds()
    rounds.attach(obj)
    answers = _reads(rounds, 3)
    rounds.on_tick()
    assert answers == [(2, None)] * 3 and obj.heartbeats == 0


def test_linearizable_reads_add_no_log_entry_on_leader_or_follower(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path) as cluster:
        cluster.start()
        leader = cluster.wait_ready()
        version = register_all(cluster, leader, WINDOW_FACTORY[:2])
        cluster.wait_converged()
        before = cluster.status(leader).commit_index
        for k in range(30):
            reply = cluster.stub((leader + k) % 3).ListNodes(
                pb.ListNodesRequest(consistency=pb.LINEARIZABLE), timeout=5)
            assert reply.flow_version >= version
        assert cluster.status(leader).commit_index == before
