"""pysyncobj's TCP transport with group commit: one fsync covers every message of a turn.

`DurableTCPTransport.send` does not write to the socket. It queues the message in an
outbox; `release` fsyncs the journal once (if anything is unsynced) and only then hands the
outbox to the connections - all but the leader's append_entries, which leave before the
fsync so that the followers' fsyncs run in parallel with the leader's (they acknowledge
nothing; the leader counts its own entries only after its fsync). The tick thread releases
at two points:

* at the end of every tick, after pysyncobj has appended the queued commands and queued
  their append_entries (the leader's own entries are thus synced in the tick that appended
  them, before the next tick counts the leader towards the commit quorum);
* right after every poll, which is where a follower receives append_entries, writes the
  entries and queues its acks (one fsync for every message received in that poll).

Nothing is acknowledged before it is durable (persist-before-acknowledge, as before), but
one fsync now covers every entry appended since the last one, however many writes arrived
concurrently. Consecutive append_entries to one member merge in the outbox into one
message (contiguous entries, newest commit index), and consecutive successful acks to one
member keep only the newest, so a batch also costs one pickle and one frame per member.

The transport also carries the ReadIndex confirmation of fos_raft.replica.read_rounds:
the leader stamps its append_entries with a round number (``read_seq``), a member echoes
the newest one it received from that leader on its acks, and the leader keeps the highest
round each member acknowledged (``read_acks``). A member acks only an append_entries of a
term not below its own, so a majority of echoes of round n proves that no newer leader was
elected before round n was sent.

Every connection is a `fos_raft.replica.wire.WireConnection` (bounded frames, restricted
unpickling; rejections counted in ``guard``). The first message of an incoming connection
must name a member: pysyncobj's utility commands are refused, except ``add`` (``--join``)
over the password-authenticated channel, and ``readonly`` peers are refused (factoryOS has
none; they would receive the whole state and could submit commands).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pysyncobj.monotonic import monotonic
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from fos_raft.replica import wire
from fos_raft.replica.journal import LmdbJournal

# Entries merged into one append_entries at most (bytes of commands), as pysyncobj's own
# appendEntriesBatchSizeBytes default bounds one message.
MERGE_LIMIT_BYTES = 1 << 16
READ_MESSAGES = ("fos_read_index", "fos_read_index_reply")
# pysyncobj drops a connection nothing was read from for connectionTimeout, and checks that
# only when it next sends: between two followers nothing flows while a leader is up, so the
# first vote request after a leader hangs killed the link and was lost (a second election
# round, about 0.3 s more). Every member sends this on every link 4 times per timeout.
KEEPALIVE = "fos_keepalive"


class DurableTCPTransport(TCPTransport):
    """Pass `transport_class(journal)` as ``SyncObj(transportClass=...)``.

    ``on_node_lost(node)`` (optional) is called in the tick thread when a connection to a
    member closes, so the replica can call an election early when it was the leader's.
    ``on_tick()`` (optional) runs in the tick thread before each end-of-tick release.
    """

    journal: LmdbJournal
    on_node_lost: Callable[[Any], None] | None = None
    on_tick: Callable[[], None] | None = None
    guard: wire.FrameGuard | None = None
    # sees every message from a member first; True: handled, pysyncobj must not see it
    intercept: Callable[[Any, Any], bool] | None = None
    # a follower's read-index request or the leader's reply (fos_raft.replica.read_rounds)
    on_read_message: Callable[[Any, Any], None] | None = None

    def _init_outbox(self) -> None:
        # [node, connection, message, command bytes of its entries]
        self._outbox: list[list[Any]] = []
        # Rounds are (nonce, n): a restarted leader gets a new nonce, so an echo of its former
        # incarnation's round (from a member that missed the reconnect) never counts.
        self.read_nonce = int.from_bytes(os.urandom(8), "big")
        self.read_seq = 0  # leader: the round stamped on outgoing append_entries
        self.read_acks: dict[Any, int] = {}  # leader: highest round each member echoed
        self._read_seq_in: dict[Any, tuple[int, int]] = {}  # member: newest round per sender
        self.releases = 0
        self.merged = 0
        self._next_keepalive = 0.0

    # ------------------------------------------------------------------ group commit

    def send(self, node: Any, message: Any) -> bool:
        conn = self._connections.get(node)
        if conn is None or conn.state != CONNECTION_STATE.CONNECTED:
            return False
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            if self.read_seq:
                message["read_seq"] = (self.read_nonce, self.read_seq)
        elif kind == "next_node_idx":
            seq = self._read_seq_in.get(node)
            if seq is not None:
                message["read_seq"] = seq
        if kind is not None and self._merge(node, conn, kind, message):
            self.merged += 1
            return True
        size = _entries_size(message) if kind == "append_entries" else 0
        self._outbox.append([node, conn, message, size])
        return True

    def _merge(self, node: Any, conn: Any, kind: str, message: dict[str, Any]) -> bool:
        """Fold ``message`` into the last queued message to ``node`` when one frame can say
        both (see module docstring); True if folded."""
        for item in reversed(self._outbox):
            if item[0] is node:
                break
        else:
            return False
        if item[1] is not conn:
            return False
        last = item[2]
        if not isinstance(last, dict) or last.get("type") != kind:
            return False
        if kind == "next_node_idx":
            if not (last["success"] and message["success"]) or last["reset"] or message["reset"]:
                return False
            if message["next_node_idx"] < last["next_node_idx"]:
                return False
            item[2] = message
            return True
        if "entries" not in last or "entries" not in message or last["term"] != message["term"]:
            return False  # snapshot chunks and split entries travel as they are
        new_entries = message["entries"]
        if not last["entries"]:  # a heartbeat from the same point: superseded
            if (last["prevLogIdx"], last["prevLogTerm"]) != (
                    message["prevLogIdx"], message["prevLogTerm"]):
                return False
            item[2] = message
            item[3] = _entries_size(message)
            return True
        tail = last["entries"][-1]
        if (tail[1], tail[2]) != (message["prevLogIdx"], message["prevLogTerm"]):
            return False
        size = _entries_size(message)
        if item[3] + size > MERGE_LIMIT_BYTES:
            return False
        merged = dict(message)
        merged["entries"] = last["entries"] + new_entries
        merged["prevLogIdx"], merged["prevLogTerm"] = last["prevLogIdx"], last["prevLogTerm"]
        item[2] = merged
        item[3] += size
        return True

    def release(self) -> None:
        """Send the leader's append_entries, fsync the journal once (if anything is
        unsynced), then send everything else.

        append_entries go out before the fsync: they acknowledge nothing, and the leader
        counts its own entries towards a commit only in a later tick, after this fsync
        (Raft lets the leader write its log in parallel with replicating it). Acks, votes
        and everything else leave only after it."""
        outbox, self._outbox = self._outbox, []
        rest = []
        for item in outbox:
            message = item[2]
            if isinstance(message, dict) and message.get("type") == "append_entries":
                self._deliver(item)
            else:
                rest.append(item)
        self.journal.flush()
        if not outbox:
            return
        self.releases += 1
        if self.journal.has_unsynced():  # only the tick thread writes, so never
            self.journal.unsynced_sends += 1
        for item in rest:
            self._deliver(item)

    def _deliver(self, item: list[Any]) -> None:
        node, conn, message, _ = item
        if self._connections.get(node) is conn:  # not to a reconnection: dropped, as lost
            TCPTransport.send(self, node, message)

    def _onTick(self) -> None:
        if self.on_tick is not None:
            self.on_tick()
        self._keepalive()
        self.release()
        super()._onTick()

    def _keepalive(self) -> None:
        now = monotonic()
        if now < self._next_keepalive:
            return
        self._next_keepalive = now + self._syncObj.conf.connectionTimeout / 4
        for node in self._nodes:
            self.send(node, {"type": KEEPALIVE})

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if self.intercept is not None and self.intercept(node, message):
            return
        if isinstance(message, dict):
            if message.get("type") == KEEPALIVE:
                return  # read: that is all it is for
            if message.get("type") in READ_MESSAGES:
                if self.on_read_message is not None:
                    self.on_read_message(node, message)
                return  # ours: pysyncobj never sees them
            if message.get("type") == "append_entries":
                trim_known_entries(message, self.journal)
            stamp = message.get("read_seq")
            if isinstance(stamp, tuple) and len(stamp) == 2:
                kind = message.get("type")
                if kind == "append_entries":
                    self._read_seq_in[node] = stamp
                elif (kind == "next_node_idx" and stamp[0] == self.read_nonce
                      and isinstance(stamp[1], int) and stamp[1] > self.read_acks.get(node, 0)):
                    self.read_acks[node] = stamp[1]
        super()._onMessageReceived(node, message)

    # ------------------------------------------------------------------ membership and wire

    def _onDisconnected(self, conn: Any) -> None:
        node = self._connToNode(conn)
        super()._onDisconnected(conn)
        if node is not None:
            self._read_seq_in.pop(node, None)
            if self.on_node_lost is not None:
                self.on_node_lost(node)

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None and not isinstance(conn, wire.WireConnection):
            wire.WireConnection.adopt(conn, self.guard, wire.MAX_FRAME)

    def _onNewIncomingConnection(self, conn: Any) -> None:
        wire.WireConnection.adopt(conn, self.guard, wire.HANDSHAKE_MAX_FRAME)
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        if self._syncObj.encryptor and not conn.sendRandKey:
            super()._onIncomingMessageReceived(conn, message)  # key exchange
            return
        if isinstance(message, list):
            self._utility(conn, message)
            return
        if message == "readonly":
            self._refuse(conn, "readonly_refused", "readonly peer")
            return
        if not isinstance(message, str) or message not in self._nodeAddrToNode:
            self._refuse(conn, "unknown_peer", f"first message {message!r:.80}")
            return
        super()._onIncomingMessageReceived(conn, message)
        if isinstance(conn, wire.WireConnection):
            conn.max_frame = wire.MAX_FRAME  # a member now: log batches and snapshots

    def _utility(self, conn: Any, message: list[Any]) -> None:
        command = message[0] if message else None
        if self._syncObj.encryptor is not None and command == "add":
            # Past the key exchange, so the peer knows the password: a replica's --join.
            self._onUtilityMessage(conn, message)
            return
        self._refuse(conn, "utility_refused", f"utility command {command!r:.40}")

    def _refuse(self, conn: Any, reason: str, detail: str) -> None:
        if isinstance(conn, wire.WireConnection):
            conn.reject(reason, detail)
        else:
            conn.disconnect()
        self._unknownConnections.discard(conn)


def trim_known_entries(message: dict[str, Any], log: Any) -> int:
    """Drop from an append_entries the entries this member already has (same index, same
    term), moving prevLogIdx/prevLogTerm up; returns how many were dropped.

    pysyncobj truncates everything after prevLogIdx and writes the entries again whenever
    the follower has more, which happens on every resend after the leader rolled a
    member's next index back (an ack of an older message): acknowledged entries deleted and
    re-added, extra writes, and pysyncobj's "truncating already-applied log entries"
    message. Raft truncates only on a conflict. When every entry is known, the entries
    after them are kept only if they are of the message's term: those came from this very
    leader, which never changes its own entries, so they match its log (Log Matching);
    otherwise pysyncobj truncates them as before."""
    entries = message.get("entries")
    if not entries or "prevLogIdx" not in message or message.get("transmission") is not None:
        return 0
    if not len(log):
        return 0
    first, last = log[0][1], log[-1][1]
    known = 0
    for entry in entries:
        idx = entry[1]
        if idx < first or idx > last or log[idx - first][2] != entry[2]:
            break
        known += 1
    if not known:
        return 0
    upto = entries[known - 1]
    if known == len(entries) and all(
        log[i - first][2] == message["term"] for i in range(upto[1] + 1, last + 1)
    ):
        upto = log[-1]
    message["entries"] = entries[known:]
    message["prevLogIdx"], message["prevLogTerm"] = upto[1], upto[2]
    return known


def _entries_size(message: dict[str, Any]) -> int:
    return sum(len(entry[0]) for entry in message.get("entries", ()))


def _release_after_poll(transport: DurableTCPTransport) -> None:
    """Wrap the tick thread's poller so every poll ends with a release (a member's acks
    leave before the next tick applies anything)."""
    poller = transport._syncObj._poller
    original = poller.poll

    def poll(timeout: float) -> None:
        original(timeout)
        transport.release()

    poller.poll = poll


def transport_class(
    journal: LmdbJournal,
    on_node_lost: Callable[[Any], None] | None = None,
    guard: wire.FrameGuard | None = None,
    on_tick: Callable[[], None] | None = None,
    on_read_message: Callable[[Any, Any], None] | None = None,
) -> Callable[..., DurableTCPTransport]:
    def make(sync_obj: Any, self_node: Any, other_nodes: Any) -> DurableTCPTransport:
        # The journal and outbox must exist before TCPTransport.__init__ can send anything.
        transport = DurableTCPTransport.__new__(DurableTCPTransport)
        transport.journal = journal
        transport.on_node_lost = on_node_lost
        transport.on_tick = on_tick
        transport.on_read_message = on_read_message
        transport.guard = guard
        transport._init_outbox()
        DurableTCPTransport.__init__(transport, sync_obj, self_node, other_nodes)
        _release_after_poll(transport)
        return transport

    return make
