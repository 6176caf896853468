"""The protocol engine: the pure batch protocol driven over the LMDB WAL, in one place.

Every protocol event of an agent goes through ``Engine.step``: ``node.handle`` for each
event, then ONE commit of their writes, with no ``await`` in between. That keeps the
ordering rule of fos_agent.protocol.machine (writes durable in the order of the ``handle`` calls;
no reply or message before every earlier write is durable): the committer queues groups
synchronously at call time and resolves them in order, an empty group being a barrier.

If a commit fails (an InvalidTransition would be a protocol bug; an LMDB error a disk
problem), the in-memory state is ahead of the disk. The engine then does what a crash
would do: it closes the WAL, reopens it (new incarnation, so request ids stay unique),
rebuilds the Node from the durable records and hands the recovery messages to its owner.
Callers of the failed step get the exception (the RPC answers UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fos_agent.core.metrics import CONSUMED_OF, REFUSED, Metrics
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import (
    BatchSent,
    Effects,
    Event,
    FlowChanged,
    Message,
    NewRequest,
    OfferBatch,
)
from fos_agent.protocol.records import (
    DurableState,
    InState,
    OutState,
    PutInbound,
    PutOutbound,
    Write,
)
from fos_agent.protocol.validate import MAX_BATCH_ID_LEN, clip
from fos_agent.storage.group_commit import GroupCommitter
from fos_agent.storage.wal import Wal, WalError
from fos_agent.storage.wal_check import DAMAGE, LMDB_DAMAGE, damaged
from fos_raft.lineage.reader import BatchView
from fos_raft.runtime.logging import get_logger

FATAL_PACE_S = 0.05  # a step of an engine whose WAL is unusable fails after this
MAX_LOGGED_REFUSALS = 1024  # distinct (peer, reason) pairs logged; a forger can make many


class SerialCommitter:
    """The naive design, for comparison: one synced transaction per step, one at a time
    (asyncio.Lock is FIFO, so the ordering rule holds)."""

    def __init__(self, wal: Wal) -> None:
        self.wal = wal
        self._lock = asyncio.Lock()

    def commit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        """Queued at call time; a cancelled caller does not cancel the commit (its
        in-memory transition must still reach the disk)."""
        return asyncio.shield(self._commit(tuple(writes)))

    async def _commit(self, writes: tuple[Write, ...]) -> None:
        async with self._lock:
            if writes:
                await asyncio.get_running_loop().run_in_executor(
                    self.wal.executor, self.wal.commit, writes)

    async def aclose(self) -> None:
        async with self._lock:
            pass


class Signal:
    """A level-free notification: ``wait()`` returns at the next ``notify()``.

    To not miss a notification between checking a condition and waiting, take
    ``ticket = signal.ticket()`` BEFORE checking, then ``await signal.wait_ticket(ticket)``.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait_ticket(ticket: asyncio.Event, timeout: float | None = None) -> bool:
        """True if notified since the ticket was taken, False on timeout.

        Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancel that lands while the
        awaited event fires (it returns the result instead; cpython gh-86296), so a loop
        waiting here survived ``task.cancel()`` and a stop awaiting that task hung (seen in
        CI). ``asyncio.timeout`` cancels only the current task and tells its own timeout
        apart from a cancel from outside."""
        try:
            async with asyncio.timeout(timeout):
                await ticket.wait()
        except TimeoutError:
            return False
        return True

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None = None) -> bool:
        """True if notified, False on timeout."""
        return await self.wait_ticket(self._event, timeout)


@dataclass(slots=True)
class RecoveryInfo:
    """What the WAL held at (re)start."""

    incarnation: int
    unfinished: int  # outbound QUEUED/IN_TRANSIT + inbound IN_TRANSIT/QUEUED records
    messages: tuple[Message, ...] = field(default_factory=tuple)


def unfinished_records(durable: DurableState) -> int:
    out = sum(1 for r in durable.outbound.values()
              if r.state in (OutState.QUEUED, OutState.IN_TRANSIT))
    inb = sum(1 for r in durable.inbound.values()
              if r.state in (InState.IN_TRANSIT, InState.QUEUED))
    return out + inb


class Engine:
    """Owns the WAL, the protocol Node and the committer of one agent."""

    def __init__(self, wal_dir: Path, config: NodeConfig, metrics: Metrics, *,
                 group_commit: bool = True,
                 on_recovered: Callable[[RecoveryInfo], None] | None = None) -> None:
        self.wal_dir = Path(wal_dir)
        self.metrics = metrics
        self.group_commit = group_commit
        self.on_recovered = on_recovered
        self.log = get_logger("fos_agent.core.engine").bind(node=config.node_id)
        self._config = config
        self.wal: Wal | None = None
        self.node: Node | None = None
        self._committer: GroupCommitter | SerialCommitter | None = None
        self._restarting: asyncio.Lock | None = None
        self._flow: FlowChanged | None = None
        self.commit_error = ""  # the last commit's failure; "" once a commit succeeds
        self._refusals_logged: set[tuple[str, str]] = set()  # (peer, reason) logged once
        self.retention_days: float | None = None  # genealogy retention (None: keep all)
        self.lineage_index = True  # False: no genealogy index, no compaction (comparisons)
        self.inbound_changed = Signal()  # an inbound record changed (queued / consumed)
        self.outbound_changed = Signal()  # an outbound record changed (produced / sent)
        self.written = Signal()  # a commit with writes is durable (compaction waits for one)
        # commit_error changed or the WAL closed: the agent re-checks its health now rather
        # than at its next poll (fos_agent.runtime.health)
        self.health_changed: Callable[[], None] = lambda: None
        # the WAL failed and could not be reopened: ``fatal`` says why, and the owner is
        # told once (the agent stops and its process exits non-zero, docs/agent.md)
        self.fatal = ""
        self.on_fatal: Callable[[str], None] = lambda reason: None

    @property
    def config(self) -> NodeConfig:
        return self._config

    def open(self) -> RecoveryInfo:
        """Open (or create) the WAL and rebuild the Node; raises WalError for foreign WALs."""
        self.wal = Wal.open(self.wal_dir, self._config.node_id, lineage=self.lineage_index)
        try:
            # settled records leave the live state first, so recovery reads only the
            # goods still in flight (fos_agent.protocol.compaction)
            self.wal.compact(retention_days=self.retention_days)
            durable = self.wal.load()
            self.node, effects = Node.recover(self._config, durable, self.wal.settled)
        except (*DAMAGE, *LMDB_DAMAGE) as exc:  # damaged: one line, not a traceback
            self.wal.close()
            self.wal = None
            raise WalError(damaged(self.wal_dir, exc)) from exc
        except BaseException:
            self.wal.close()
            self.wal = None
            raise
        self._committer = (GroupCommitter(self.wal) if self.group_commit
                           else SerialCommitter(self.wal))
        if self._flow is not None:
            self.node.handle(self._flow)
        return RecoveryInfo(self.wal.incarnation, unfinished_records(durable), effects.messages)

    async def compact(self) -> int:
        """Compact the WAL (on its writer thread, between commit groups), then let the
        Node forget what moved: only once it is durable, so a crash between the two steps
        recovers either way. Returns how many records left the live state."""
        wal, node = self.wal, self.node
        if wal is None or node is None:
            return 0
        # what the WAL's own commits settled, handed over from memory (Wal.compact_recent)
        out_ids, in_ids = await asyncio.get_running_loop().run_in_executor(
            wal.executor, lambda: wal.compact_recent(retention_days=self.retention_days))
        if self.node is node:  # not replaced by a recovery meanwhile
            node.forget(out_ids, in_ids)
        return len(out_ids) + len(in_ids)

    def lineage(self, batch_ids: list[str]) -> dict[str, BatchView]:
        """What this node's genealogy index knows of ``batch_ids`` (read-only)."""
        if self.wal is None:
            raise RuntimeError("engine is not open")
        return self.wal.lineage.lookup(batch_ids)

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer.aclose()
        if self.wal is not None:
            wal, self.wal = self.wal, None
            self.health_changed()
            await asyncio.get_running_loop().run_in_executor(None, wal.close)

    def set_config(self, config: NodeConfig) -> None:
        """A spec change from the coordinator (requirements, product): the protocol reads
        its config on every event, so swapping it is enough."""
        self._config = config
        if self.node is not None:
            self.node.config = config
            stale = [b for b in self.node.held
                     if (r := self.node.inbound(b)) is None
                     or r.batch.item not in {q.item for q in config.requires}]
            self.node.release(stale)

    async def step(self, *events: Event) -> list[Effects]:
        """Handle ``events`` in order and make all their writes durable (one group);
        returns their effects once durable. Messages are the caller's to send."""
        node, committer = self.node, self._committer
        if self.fatal:  # the WAL is unusable: nothing more is tried (the agent stops);
            # paced, so a caller that retries at once (a stage) cannot starve the loop
            await asyncio.sleep(FATAL_PACE_S)
            raise WalError(self.fatal)
        if node is None or committer is None:
            raise RuntimeError("engine is not open")
        # batches offered/sent to us that are new here (receipts; ghosts if re-offered)
        fresh = {e.batch.batch_id: isinstance(e, OfferBatch) for e in events
                 if isinstance(e, BatchSent | OfferBatch) and node.inbound(e.batch.batch_id)
                 is None}
        effects: list[Effects] = []
        try:
            for e in events:
                effects.append(node.handle(e))
        except Exception:
            # a refused event changed nothing, but the ones before it did: their writes
            # must still become durable, in order, before anything else is answered
            done = [w for eff in effects for w in eff.writes]
            if done:
                await committer.commit(done)
            raise
        for eff in effects:
            if eff.refusal is not None:
                self._refused(eff)
        for e in events:
            if isinstance(e, FlowChanged) and (self._flow is None
                                               or e.version >= self._flow.version):
                self._flow = e
                # held long-polls (fos_agent.net.service) end on a new flow: wake them
                self.outbound_changed.notify()
        writes = [w for eff in effects for w in eff.writes]
        if not writes and all(isinstance(e, NewRequest) for e in events):
            # The one exception to the barrier: a RequestBatch reflects no durable state
            # (supplier, item, a request id unique per incarnation), so sending it before
            # earlier writes are durable cannot expose a non-durable transition; a crash
            # then is the same as a crash right after sending.
            return effects
        started = time.perf_counter()
        try:
            await committer.commit(writes)
        except Exception as exc:
            self.commit_error = str(exc) or type(exc).__name__  # health: WAL not writable
            self.health_changed()
            await self._recover_after(exc, committer)
            raise
        if self.commit_error:
            self.commit_error = ""
            self.health_changed()
        if writes:
            self.written.notify()
            self.metrics.observe("wal_commit_seconds", time.perf_counter() - started)
            self._account(writes, fresh)
        return effects

    def _refused(self, eff: Effects) -> None:
        """Count a refused message; log it once per peer and reason (a forger repeating
        itself must not flood the log; the counter keeps the total)."""
        refusal = eff.refusal
        assert refusal is not None
        self.metrics.inc(REFUSED + refusal.reason)
        key = (clip(eff.peer, MAX_BATCH_ID_LEN), refusal.reason)
        if key not in self._refusals_logged and len(self._refusals_logged) < MAX_LOGGED_REFUSALS:
            self._refusals_logged.add(key)
            self.log.warning("refused a peer message", peer=key[0], reason=refusal.reason,
                             detail=refusal.detail)

    def _account(self, writes: Sequence[Write], fresh: dict[str, bool]) -> None:
        """Count what became durable and wake whoever waits on it."""
        m = self.metrics
        inbound = outbound = False
        for w in writes:
            if isinstance(w, PutInbound):
                inbound = True
                rec = w.record
                if rec.state is InState.CONSUMED:
                    m.inc("batches_consumed")
                    m.inc(CONSUMED_OF + rec.batch.item)
                    if rec.scrapped:
                        m.scrapped(rec.batch.item)
                elif rec.batch_id in fresh:
                    via_offer = fresh.pop(rec.batch_id)
                    m.receipt(rec.supplier, rec.batch.item, rec.batch_id)
                    if via_offer:
                        m.inc("wal_ghost_batches")
            elif isinstance(w, PutOutbound):
                outbound = True
                out = w.record
                if out.state is OutState.DELIVERED:
                    m.inc("batches_delivered")
                elif out.state is OutState.RECLAIMED:
                    m.inc("batches_reclaimed")
                elif out.state is OutState.QUEUED and not out.reclaimed_from:
                    m.inc("batches_produced")
        if inbound:
            self.inbound_changed.notify()
        if outbound:
            self.outbound_changed.notify()

    async def _recover_after(self, exc: Exception,
                             failed: GroupCommitter | SerialCommitter) -> None:
        """Crash-restart in place after a failed commit (once, whoever sees it first)."""
        if self._restarting is None:
            self._restarting = asyncio.Lock()
        async with self._restarting:
            if self._committer is not failed or self.fatal:
                return  # another caller already recovered (or found the WAL unusable)
            self.log.error("wal commit failed; recovering from the WAL", error=str(exc))
            with contextlib.suppress(Exception):
                await failed.aclose()
            await self.close()
            try:
                info = self.open()
            except WalError as reopen:  # the WAL is gone or damaged: no way to serve
                # (a full disk is not this: its lmdb.Error is retried by the next step)
                self.fatal = str(reopen) or type(reopen).__name__
                self.log.error("wal cannot be reopened; the agent stops", error=self.fatal)
                self.on_fatal(self.fatal)
                raise
            self.inbound_changed.notify()
            self.outbound_changed.notify()
            if self.on_recovered is not None:
                self.on_recovered(info)
