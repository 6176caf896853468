"""Pre-vote for pysyncobj: a replica asks before it raises its term.

Plain Raft (pysyncobj) lets any replica whose election timer runs out raise its term and
ask for votes. A replica cut off from the others (a black-holed link, a host whose
connections look open) does this again and again; when it comes back, its higher term
makes the healthy leader step down, and the majority is without a leader for a moment
although nothing was wrong with it.

With pre-vote (Raft thesis, section 9.6; etcd-io/raft's ``PreVote``) a replica whose timer
runs out first sends ``fos_pre_vote`` (the term it would stand for and its log position)
and keeps its term. A peer grants it only if it has itself no leader it heard from within
the minimum election timeout (a leader it is connected to), is not the leader, and the
asker's log is at least as up to date as its own; granting changes nothing on the peer.
Only with grants from a majority (itself included) does the replica run pysyncobj's real
election. A cut-off replica never gets them, so its term stays where it was and it simply
follows the leader again when the link heals.

What stays fast: a leader killed outright closes its connections at once, so its followers
see no connected leader and grant at once (one round trip before the usual election); a
hung leader's followers grant once they have not heard from it for the minimum timeout,
as its election timer would. A leadership transfer (``timeout_now``) skips the pre-vote:
the leader asked for it. A mixed cluster during an upgrade still elects: an old replica
ignores ``fos_pre_vote`` but runs ordinary elections, in which new replicas vote as before.

The rules (`grant`, `Round`) are pure; `PreVote` applies them to pysyncobj's private state
from its tick thread (the only thread that touches it): ``before_tick`` at the start of
every tick, ``on_message`` for every message the transport receives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pysyncobj.monotonic import monotonic  # pysyncobj's own clock: not time.monotonic's
from pysyncobj.syncobj import _RAFT_STATE

from fos_raft.runtime.logging import get_logger

REQUEST = "fos_pre_vote"
REPLY = "fos_pre_vote_reply"
DEADLINE_MARGIN_S = 0.005

log = get_logger("fos_raft.replica.prevote")


@dataclass(frozen=True, slots=True)
class LogPosition:
    term: int  # term of the last log entry
    index: int  # index of the last log entry

    def at_least(self, other: LogPosition) -> bool:
        return (self.term, self.index) >= (other.term, other.index)


def grant(*, asked_term: int, asker_log: LogPosition, my_term: int, my_log: LogPosition,
          i_am_leader: bool, leader_heard_recently: bool) -> bool:
    """Would this replica vote for the asker in an election at ``asked_term``? (Nothing
    changes here either way: a pre-vote is only a question.)"""
    if i_am_leader or leader_heard_recently:
        return False  # there is a working leader: no election is needed
    if asked_term <= my_term:
        return False  # the asker is behind on terms: it would lose the election
    return asker_log.at_least(my_log)


@dataclass(slots=True)
class Round:
    """One replica's pre-vote round for standing at ``term + 1``."""

    term: int  # the asker's current term when the round began
    members: int  # cluster size, the asker included
    granted_by: set[str] = field(default_factory=set)

    def reply(self, peer: str, asked_term: int, granted: bool) -> None:
        if granted and asked_term == self.term + 1:
            self.granted_by.add(peer)

    @property
    def won(self) -> bool:
        return 2 * (len(self.granted_by) + 1) > self.members


class PreVote:
    """pysyncobj's side of pre-vote (see the module docstring). ``obj`` is the SyncObj."""

    def __init__(self, obj: Any, clock: Callable[[], float] = monotonic) -> None:
        self._obj = obj
        self._clock = clock
        self._round: Round | None = None
        # a won round lets this term's election run, until this (monotonic) time; a
        # leader heard from meanwhile cancels it
        self._won: tuple[int, float] | None = None
        self._leader_heard_at = float("-inf")
        self.rounds = 0  # rounds started (tests, metrics)
        self.elections = 0  # rounds won: real elections let through

    # pysyncobj keeps its Raft state private (name-mangled); pinned version in pyproject
    def _get(self, name: str) -> Any:
        return getattr(self._obj, f"_SyncObj__{name}")

    def _set(self, name: str, value: Any) -> None:
        setattr(self._obj, f"_SyncObj__{name}", value)

    def _call(self, name: str, *args: Any) -> Any:
        return getattr(self._obj, f"_SyncObj__{name}")(*args)

    def _log(self) -> LogPosition:
        return LogPosition(self._call("getCurrentLogTerm"), self._call("getCurrentLogIndex"))

    def before_tick(self) -> None:
        """Hold back an election pysyncobj is about to start unless a round was won."""
        state = self._get("raftState")
        if state not in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE):
            self._round = self._won = None
            return
        if self._get("selfNode") is None or self._get("transferInProgress"):
            return
        now = self._clock()
        # pysyncobj reads the clock again a moment later in this tick: a deadline that
        # falls due in between must not slip through without a pre-vote
        due = self._get("raftElectionDeadline") < now + DEADLINE_MARGIN_S
        if not due or not self._call("connectedToAnyone"):
            return
        term = self._get("raftCurrentTerm")
        if self._won is not None:
            won_term, until = self._won
            if won_term == term and now <= until:
                return  # won: pysyncobj runs the real election (this tick or the next)
            self._won = None
        others = list(self._get("otherNodes"))
        if not others:
            return  # a single-member cluster elects itself
        self._set("raftElectionDeadline", now + self._call("generateRaftTimeout"))
        if self._get("raftLeader") is not None:
            # the leader went quiet: stop naming it (status, forwarding) as pysyncobj's
            # election would, and fail the commands waiting on it
            self._set("raftLeader", None)
            self._call("onLeaderChanged")
        self._round = Round(term=term, members=len(others) + 1)
        self.rounds += 1
        log.debug("pre-vote round", term=term + 1)
        position = self._log()
        message = {"type": REQUEST, "term": term + 1, "last_log_index": position.index,
                   "last_log_term": position.term}
        transport = self._get("transport")
        for node in others:
            transport.send(node, message)

    def on_message(self, node: Any, message: Any) -> bool:
        """Handle a pre-vote message (True: it was one, pysyncobj must not see it); note
        the time of a leader's append_entries."""
        if not isinstance(message, dict):
            return False
        kind = message.get("type")
        if kind == "append_entries":
            if _int(message.get("term")) >= self._get("raftCurrentTerm"):
                self._leader_heard_at = self._clock()
                self._round = self._won = None  # there is a leader: no election
            return False
        if kind == REQUEST:
            self._answer(node, message)
            return True
        if kind == REPLY:
            self._count(node, message)
            return True
        return False

    def _leader_heard_recently(self) -> bool:
        leader = self._get("raftLeader")
        if leader is None or leader not in self._get("connectedNodes"):
            return False  # no leader, or its connection closed (a killed leader)
        conf = self._obj.conf
        return self._clock() - self._leader_heard_at < conf.raftMinTimeout

    def _answer(self, node: Any, message: dict[str, Any]) -> None:
        asked = _int(message.get("term"))
        ok = grant(asked_term=asked,
                   asker_log=LogPosition(_int(message.get("last_log_term")),
                                         _int(message.get("last_log_index"))),
                   my_term=self._get("raftCurrentTerm"), my_log=self._log(),
                   i_am_leader=self._get("raftState") == _RAFT_STATE.LEADER,
                   leader_heard_recently=self._leader_heard_recently())
        self._get("transport").send(node, {"type": REPLY, "term": asked, "granted": ok})

    def _count(self, node: Any, message: dict[str, Any]) -> None:
        r = self._round
        if r is None or self._get("raftCurrentTerm") != r.term:
            return  # an old round's answer
        r.reply(str(getattr(node, "id", node)), _int(message.get("term")),
                message.get("granted") is True)
        if r.won:
            self._round = None
            self.elections += 1
            # elect at the next tick (the rounds themselves start at staggered times: the
            # election timeouts are random, and so is the early election of a lost leader)
            now = self._clock()
            self._won = (r.term, now + self._obj.conf.raftMaxTimeout)
            self._set("raftElectionDeadline", now)
            log.debug("pre-vote won", term=r.term + 1, granted_by=sorted(r.granted_by))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
