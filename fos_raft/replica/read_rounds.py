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

A follower asks the leader for a read index (``fos_read_index``, answered by
``fos_read_index_reply`` once the leader's round is confirmed) and answers when it has
applied that index itself: its state then holds every write the leader's index covers.
A read fails over to the barrier of fos_raft.replica.read_index (a no-op entry through the
leader) when its round fails or the leader changes meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fos_raft.replica.mailbox import post_to_loop

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
        # follower: request id -> (leader asked, callback); answered, waiting for apply
        self._asked: dict[int, tuple[Any, ReadCallback]] = {}
        self._applying: list[tuple[int, ReadCallback]] = []
        self._next_id = 0

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

    async def confirm(self, timeout: float) -> bool:
        """From the event loop: True once a round confirmed this read and this replica
        applied its index; False if it failed or ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def done(index: int | None, error: str | None) -> None:  # tick thread
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits
                post_to_loop(loop, _resolve_once, future, error)

        self.request(done)
        try:
            async with asyncio.timeout(timeout):
                return await future is None
        except TimeoutError:
            return False

    def on_tick(self) -> None:
        obj = self._obj
        if obj is None:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        leader = obj._SyncObj__raftState == _LEADER
        term = obj._SyncObj__raftCurrentTerm
        if self._asked or self._applying:
            self._follower_tick(obj, leader)
        if pending:
            if not leader:
                self._ask_leader(obj, pending)
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


    # ------------------------------------------------------------------ follower reads

    def _ask_leader(self, obj: Any, pending: list[ReadCallback]) -> None:
        leader = obj._getLeader()
        if leader is None:
            _fail(pending, "no leader known")
            return
        transport = obj._SyncObj__transport
        for callback in pending:
            self._next_id += 1
            if not transport.send(leader, {"type": ASK, "id": self._next_id}):
                callback(None, "not connected to the leader")
                continue
            self._asked[self._next_id] = (leader, callback)

    def _follower_tick(self, obj: Any, leader: bool) -> None:
        current = None if leader else obj._getLeader()
        for request_id, (asked, callback) in list(self._asked.items()):
            if asked != current:
                del self._asked[request_id]
                callback(None, "the leader changed during the read")
        if self._applying:
            applied = obj.raftLastApplied
            waiting = []
            for index, callback in self._applying:
                if applied >= index:
                    callback(index, None)
                else:
                    waiting.append((index, callback))
            self._applying = waiting

    def on_message(self, node: Any, message: dict[str, Any]) -> None:
        """Tick thread: a member's ``fos_read_index`` or the leader's reply."""
        obj = self._obj
        if obj is None:
            return
        request_id = message.get("id")
        if message.get("type") == ASK:
            transport = obj._SyncObj__transport

            def reply(index: int | None, error: str | None) -> None:
                transport.send(node, {"type": ANSWER, "id": request_id, "index": index,
                                      "error": error})

            with self._lock:
                self._pending.append(reply)
            return
        asked = self._asked.get(request_id) if isinstance(request_id, int) else None
        if asked is None or asked[0] != node:
            return  # not asked of this member (or answered already)
        del self._asked[request_id]
        index, error = message.get("index"), message.get("error")
        if isinstance(index, int) and error is None:
            self._applying.append((index, asked[1]))
            self._follower_tick(obj, False)
        else:
            asked[1](None, str(error) if error else "the leader refused the read")


ASK, ANSWER = "fos_read_index", "fos_read_index_reply"


def _resolve_once(future: asyncio.Future[str | None], error: str | None) -> None:
    if not future.done():
        future.set_result(error)


def _fail(callbacks: list[ReadCallback], reason: str) -> None:
    for callback in callbacks:
        callback(None, reason)
