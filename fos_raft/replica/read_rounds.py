"""ReadIndex on the leader: a linearizable read costs one heartbeat round, no log entry.

Raft's ReadIndex (section 6.4 of Ongaro's thesis): the leader notes its commit index when
the read arrives, confirms it is still the leader by a heartbeat round that a majority
acknowledges, and answers once it has applied that index. pysyncobj has none, so this runs
on its tick thread beside it:

* `ReadRounds.request` (any thread) queues a read and wakes the tick thread;
* `ReadRounds.on_tick` (the tick thread, before the transport releases its outbox) turns
  every read queued since the last tick into one round: the commit index, and a new round
  number stamped on the append_entries sent at once to every member (the transport's
  ``read_seq``, fos_raft.replica.transport);
* a round is confirmed when a majority (the leader included) echoed its number or a later
  one; it answers when this replica has applied the round's commit index.

Why it is safe. A member acknowledges an append_entries only at a term not below its own;
the stamped messages left after every read of the round arrived. So a majority echo means
that, after the reads arrived, a majority still had a term no higher than the leader's: no
newer leader can have been elected before then (it needs a majority at its higher term), so
no write was acknowledged by one. Every write acknowledged before the reads arrived is
therefore committed at or below the noted commit index, provided that index is from the
leader's own term (Leader Completeness): a round waits until the leader has committed an
entry of its term (its election no-op). The term must not change during the round, or it
fails and the reads are retried.

Followers keep the barrier of fos_raft.replica.read_index (a no-op entry through the
leader); a failed round falls back to it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (commit index read at, None) once answered; (None, reason) when the round failed
ReadCallback = Callable[[int | None, str | None], None]

_LEADER = 2  # pysyncobj's _RAFT_STATE.LEADER


@dataclass
class _Round:
    seq: int
    term: int
    index: int
    callbacks: list[ReadCallback] = field(default_factory=list)
    confirmed: bool = False


class ReadRounds:
    """Batches linearizable reads into heartbeat rounds on pysyncobj's tick thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[ReadCallback] = []
        self._rounds: list[_Round] = []
        self._obj: Any = None
        self.rounds = 0  # rounds started (tests, bench)

    def attach(self, sync_obj: Any) -> None:
        """Start serving reads for ``sync_obj`` (a pysyncobj SyncObj with our transport)."""
        self._obj = sync_obj

    def request(self, callback: ReadCallback) -> None:
        """Queue one read (any thread); ``callback`` runs on the tick thread."""
        with self._lock:
            self._pending.append(callback)
        obj = self._obj
        notifier = getattr(obj, "_SyncObj__pipeNotifier", None) if obj is not None else None
        if notifier is not None:
            notifier.notify()  # the tick thread may be waiting in poll

    def on_tick(self) -> None:
        obj = self._obj
        if obj is None:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        leader = obj._SyncObj__raftState == _LEADER
        term = obj._SyncObj__raftCurrentTerm
        if pending:
            if not leader:
                _fail(pending, "not the leader")
            elif not self._committed_in_term(obj, term):
                with self._lock:  # the election no-op is not committed yet: next tick
                    self._pending[:0] = pending
            else:
                self._start(obj, term, pending)
        if self._rounds:
            self._advance(obj, leader, term)

    @staticmethod
    def _committed_in_term(obj: Any, term: int) -> bool:
        index = obj._SyncObj__raftCommitIndex
        log = obj._SyncObj__raftLog
        if not len(log):
            return False
        first = log[0][1]
        if index < first:
            return False
        return bool(log[index - first][2] == term)

    def _start(self, obj: Any, term: int, pending: list[ReadCallback]) -> None:
        transport = obj._SyncObj__transport
        transport.read_seq += 1
        self.rounds += 1
        self._rounds.append(
            _Round(transport.read_seq, term, obj._SyncObj__raftCommitIndex, pending))
        if obj._SyncObj__otherNodes:
            obj._SyncObj__sendAppendEntries()  # stamped with the new round; released next

    def _advance(self, obj: Any, leader: bool, term: int) -> None:
        if not leader:
            rounds, self._rounds = self._rounds, []
            for r in rounds:
                _fail(r.callbacks, "leadership lost during the read round")
            return
        transport = obj._SyncObj__transport
        others = obj._SyncObj__otherNodes
        acks = sorted((transport.read_acks.get(node, 0) for node in others), reverse=True)
        needed = (len(others) + 1) // 2  # members besides the leader for a majority
        confirmed_upto = acks[needed - 1] if needed and len(acks) >= needed else 0
        applied = obj.raftLastApplied
        keep: list[_Round] = []
        for r in self._rounds:
            if r.term != term:
                _fail(r.callbacks, "term changed during the read round")
                continue
            if needed == 0 or r.seq <= confirmed_upto:
                r.confirmed = True
            if r.confirmed and applied >= r.index:
                for callback in r.callbacks:
                    callback(r.index, None)
            else:
                keep.append(r)
        self._rounds = keep


def _fail(callbacks: list[ReadCallback], reason: str) -> None:
    for callback in callbacks:
        callback(None, reason)
