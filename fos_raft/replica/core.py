"""One coordinator replica: a pysyncobj Raft node around the pure `state`, bridged to asyncio.

pysyncobj runs its own tick thread; apply runs there. Nothing here ever blocks the asyncio
loop on Raft: writes pass pysyncobj a ``callback=`` that hops back into the loop with
``loop.call_soon_threadsafe``. Readers take `Replica.state`, one immutable
`CoordinatorState` whose reference the tick thread swaps on every apply.

The replicated object is `fos_raft.replica.machine.StateMachine`; the commit-and-retry loop
of writes is `fos_raft.replica.commit.commit_with_retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, SyncObjException
from pysyncobj.monotonic import monotonic
from pysyncobj.utility import TcpUtility, UtilityException

from fos_raft.model import ModelError
from fos_raft.replica import failstop, prevote, wire
from fos_raft.replica import journal as journal_mod
from fos_raft.replica import transport as transport_mod
from fos_raft.replica.commit import commit_with_retry
from fos_raft.replica.machine import StateMachine
from fos_raft.replica.mailbox import post_to_loop
from fos_raft.replica.read_index import ReadIndex
from fos_raft.replica.read_rounds import ReadRounds
from fos_raft.replica.storage_check import check_replica_storage
from fos_raft.runtime.logging import get_logger
from fos_raft.state.commands import AnnounceReplica, Command, ForgetReplica, Outcome
from fos_raft.state.core import CoordinatorState, validate, validate_static

log = get_logger("fos_raft.replica.core")


@dataclass(frozen=True, slots=True)
class RaftTiming:
    """pysyncobj timing. Defaults measured on a 2-core machine (docs/coordinator.md)."""

    raft_min_timeout: float = 0.2
    raft_max_timeout: float = 0.5
    append_entries_period: float = 0.05
    leader_fallback_timeout: float = 1.0
    connection_timeout: float = 2.0
    connection_retry_time: float = 0.25
    log_compaction_entries: int = 2000
    log_compaction_time: float = 300.0


class _PreVotingSyncObj(SyncObj):  # type: ignore[misc]
    """pysyncobj's node with pre-vote (fos_raft.replica.prevote) in front of its
    elections: a replica back from isolation does not depose a working leader."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.prevote = prevote.PreVote(self)
        super().__init__(*args, **kwargs)

    def transport(self) -> Any:
        return self._SyncObj__transport

    def _onTick(self, timeToWait: float = 0.0) -> None:
        self.prevote.before_tick()
        super()._onTick(timeToWait)


class Unavailable(Exception):
    """No leader or no quorum until the deadline; the message names the last known leader."""


class Replica:
    """A running replica. Create and `start()` it inside the asyncio loop that serves gRPC."""

    def __init__(
        self,
        *,
        raft_address: str,
        peers: Iterable[str],
        data_dir: Path,
        grpc_address: str = "",
        timing: RaftTiming | None = None,
        join: bool = False,
        password: str | None = None,
        bind_address: str | None = None,
    ) -> None:
        """``password``: encrypt Raft traffic with it (pysyncobj; every member needs the
        same one; docs/security.md). None: plaintext Raft. ``bind_address``: listen there
        instead of ``raft_address``, which stays this replica's name that peers dial (a
        fault-injecting proxy in between; tests/faultproxy.py)."""
        self.raft_address = raft_address
        self.bind_address = bind_address or raft_address
        self.grpc_address = grpc_address
        self.peers = sorted({p for p in peers if p and p != raft_address})
        self.data_dir = Path(data_dir)
        self.timing = timing or RaftTiming()
        self.join = join
        self._password = password
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._published = CoordinatorState()
        # called on the loop with every published state, in apply order (WatchFlow's hub)
        self.state_listeners: list[Callable[[CoordinatorState], None]] = []
        self._publish_lock = threading.Lock()
        self._to_publish: CoordinatorState | None = None  # applied, not yet published
        self._obj: SyncObj | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = threading.Event()
        self.journal: journal_mod.LmdbJournal | None = None
        self.writes = {"ok": 0, "refused": 0, "unavailable": 0}
        # frames refused on the Raft port, by reason (metrics: fos_raft_rejected_frames_total)
        self.wire_guard = wire.FrameGuard()
        self.read_index = ReadIndex(self._commit_read_barrier, self._read_unavailable)
        self.read_rounds = ReadRounds()  # the leader's linearizable reads: no log entry
        # seconds from submit to the committed, applied outcome (metrics; None: not kept)
        self.commit_observer: Callable[[float], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start Raft; raises RuntimeError if the Raft address cannot be bound."""
        self._loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        journal_mod.install()
        wire.install()  # log entries and snapshots from peers: restricted unpickling
        failstop.install()  # a pysyncobj error that leaves state unknown ends the process
        dump_file = str(self.data_dir / "raft.dump")
        check_replica_storage(self.data_dir)  # StorageFault: refused in one line
        self.journal = journal_mod.LmdbJournal(str(self.data_dir / "raft.lmdb"), dump_file)
        t = self.timing
        conf = SyncObjConf(
            bindAddress=self.bind_address,  # never 0.0.0.0
            journalFile=self.journal,
            fullDumpFile=dump_file,
            useFork=False,  # grpc is not fork-safe
            # Each command wakes the tick thread at once (a batch mode would wait for the next
            # period); batching happens in the transport instead: one fsync and one merged
            # append_entries per member for all commands of a tick (replica.transport).
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            commandsWaitLeader=False,  # our own retry loop owns the deadline
            raftMinTimeout=t.raft_min_timeout,
            raftMaxTimeout=t.raft_max_timeout,
            appendEntriesPeriod=t.append_entries_period,
            leaderFallbackTimeout=t.leader_fallback_timeout,
            connectionTimeout=max(t.connection_timeout, t.raft_max_timeout),
            connectionRetryTime=t.connection_retry_time,
            logCompactionMinEntries=t.log_compaction_entries,
            logCompactionMinTime=t.log_compaction_time,
            maxBindRetries=5,
            bindRetryTime=0.2,
            password=self._password,
        )
        self._sm = StateMachine(self._on_applied_threadsafe)
        self._obj = _PreVotingSyncObj(
            self.raft_address,
            self.peers,
            conf,
            consumers=[self._sm],
            transportClass=transport_mod.transport_class(
                self.journal, self._on_node_lost, self.wire_guard,
                self.read_rounds.on_tick, self.read_rounds.on_message,
            ),
        )
        self._obj.transport().intercept = self._obj.prevote.on_message
        self.read_rounds.attach(self._obj)
        try:
            await self._loop.run_in_executor(None, self._obj.waitBinded)
        except SyncObjException as exc:
            self._obj.destroy()
            raise RuntimeError(f"cannot bind Raft address {self.bind_address}") from exc
        self._tasks.append(asyncio.ensure_future(self._announce_loop()))
        if self.join:
            self._tasks.append(asyncio.ensure_future(self._join_loop()))
        log.info("replica started", raft=self.raft_address, peers=self.peers, join=self.join)

    def _on_node_lost(self, node: Any) -> None:
        """Tick thread: the connection to ``node`` closed. If it was the leader's (a killed
        process closes its sockets at once), call an election after a short random delay
        instead of waiting out the whole election timeout. Only liveness is affected: an
        early election is an ordinary Raft election."""
        obj = self._obj
        if obj is None or obj._getLeader() != node or obj._isLeader():
            return
        soon = monotonic() + random.uniform(0.0, self.timing.raft_min_timeout / 2)
        deadline = "_SyncObj__raftElectionDeadline"  # pysyncobj keeps it private
        if getattr(obj, deadline, soon) > soon:
            setattr(obj, deadline, soon)
            log.info("leader connection lost; early election", leader=node.address)

    async def close(self) -> None:
        """Stop Raft and close the journal (waits for the tick thread)."""
        for task in self._tasks:
            task.cancel()
        if self._obj is not None and not self._closed.is_set():
            self._closed.set()
            obj = self._obj
            await asyncio.get_running_loop().run_in_executor(None, obj.destroy_synchronous)

    # ------------------------------------------------------------------ applied state

    def _on_applied_threadsafe(self, state: CoordinatorState) -> None:
        # Tick thread. Applies of one tick publish once: waiters read the newest state
        # anyway, so only the last of a batch is handed over.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._publish_lock:
            scheduled = self._to_publish is not None
            self._to_publish = state
        if not scheduled:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nobody to tell
                post_to_loop(loop, self._publish_newest)  # not one pipe byte per command

    def _publish_newest(self) -> None:
        with self._publish_lock:
            state, self._to_publish = self._to_publish, None
        if state is not None:
            self._publish(state)

    def _publish(self, state: CoordinatorState) -> None:
        # Callbacks may be scheduled out of order only across restarts of the thread: keep
        # the newest by version (internal commands keep the version, so >=).
        if state.version >= self._published.version:
            self._published = state
        for listener in self.state_listeners:
            try:
                listener(state)
            except Exception:  # a reader's bug must not stop the others being told
                log.exception("state listener failed")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def published_state(self) -> CoordinatorState:
        """The newest state handed to the loop (`state_listeners` have seen it)."""
        return self._published

    @property
    def state(self) -> CoordinatorState:
        """The newest applied state (read from the tick thread's reference)."""
        sm = getattr(self, "_sm", None)
        return sm.state if sm is not None else self._published

    def change_event(self) -> asyncio.Event:
        """An event set by the next published apply. Take it *before* reading `state`, then
        wait on it: a change in between is never missed."""
        return self._changed

    async def wait_changed(self, timeout: float | None = None) -> bool:
        """Wait until the next apply is published; False on timeout."""
        return await _wait_event(self._changed, timeout)

    async def wait_for_version(self, version: int, timeout: float) -> CoordinatorState:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self.change_event()
            state = self.state
            if state.version >= version:
                return state
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Unavailable(
                    f"replica {self.raft_address} has applied flow version {state.version}, "
                    f"not yet {version}; {self.leader_hint()}"
                )
            await _wait_event(changed, remaining)

    # ------------------------------------------------------------------ writes

    async def submit(self, command: Command, timeout: float) -> Outcome:
        """Replicate ``command`` through the leader and return its outcome.

        Raises ModelError when refused and `Unavailable` when no leader commits it before
        ``timeout``. Refusals are decided by apply, in the committed order; this replica
        answers early only where it can be sure: stateless checks anywhere, state checks
        only on the leader (a follower that lags would wrongly say NOT_FOUND), and an early
        refusal only after a read barrier showed the leader's state is current.
        """
        validate_static(command)
        if self.is_leader:
            try:
                validate(self.state, command)
            except ModelError:
                # A deposed leader that does not know it yet would refuse from an old state
                # (e.g. a CAS against a version a newer leader has moved past): confirm the
                # state is current first, and refuse only from that (linearizable refusals).
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                validate(await self.confirm_read(timeout), command)
                timeout = max(0.0, deadline - loop.time())
        started = monotonic()
        outcome = await self._replicate(command, timeout)
        if self.commit_observer is not None:
            self.commit_observer(monotonic() - started)
        if outcome.error is not None:
            self.writes["refused"] += 1
        else:
            self.writes["ok"] += 1
        return outcome.raise_for_error()

    async def _replicate(self, command: Command, timeout: float) -> Outcome:
        request_id = uuid.uuid4().hex
        res = await self._retry_until(
            timeout, lambda cb: self._sm.execute(request_id, command, callback=cb)
        )
        assert isinstance(res, Outcome)
        return res

    async def _retry_until(self, timeout: float, call: Callable[[Any], None]) -> Any:
        def give_up(last_error: str) -> Unavailable:
            self.writes["unavailable"] += 1
            return Unavailable(
                f"no leader committed the write within {timeout:.2f}s "
                f"(last error: {last_error}); {self.leader_hint()}"
            )

        return await commit_with_retry(timeout, call, give_up)

    # ------------------------------------------------------------------ linearizable reads

    async def confirm_read(self, timeout: float) -> CoordinatorState:
        """The applied state once it reflects every write acknowledged before the call: a
        ReadIndex round of the leader (replica.read_rounds; a follower asks the leader and
        applies up to its index), or if that fails a read barrier committed by a current
        leader and applied here (replica.read_index); `Unavailable` when neither succeeds
        within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A round needs members that echo rounds and a leader that answers read-index
        # requests; with older versions (a rolling upgrade) the barrier gets half the time.
        if self.leader and await self.read_rounds.confirm(timeout / 2):
            return self.state
        await self.read_index.confirm(max(0.0, deadline - loop.time()))
        return self.state

    async def _commit_read_barrier(self, timeout: float) -> None:
        await commit_with_retry(
            timeout, lambda cb: self._sm.read_barrier(callback=cb), self._read_unavailable
        )

    def _read_unavailable(self, last_error: str) -> Unavailable:
        return Unavailable(
            f"no leader confirmed the linearizable read in time (last error: {last_error}); "
            f"{self.leader_hint()}"
        )

    # ------------------------------------------------------------------ raft status

    def raft_status(self) -> dict[str, Any]:
        assert self._obj is not None
        for _ in range(5):  # getStatus iterates dicts the tick thread may be changing
            try:
                return self._obj.getStatus()
            except RuntimeError:
                continue
        return self._obj.getStatus()

    @property
    def leader(self) -> str:
        leader = self._obj._getLeader() if self._obj is not None else None
        return leader.address if leader is not None else ""

    @property
    def has_quorum(self) -> bool:
        """This replica is connected to a majority of the members (itself included)."""
        return self._obj is not None and bool(self._obj.hasQuorum)

    @property
    def is_leader(self) -> bool:
        return self._obj is not None and self._obj._isLeader()

    def members(self) -> list[tuple[str, bool]]:
        """(raft address, connected) of every voting member, self included (connected)."""
        assert self._obj is not None
        out = [(self.raft_address, True)]
        for node in self._obj.otherNodes:
            out.append((node.address, self._obj.isNodeConnected(node)))
        return sorted(out)

    def leader_hint(self) -> str:
        leader = self.leader
        if not leader:
            return "no leader known"
        grpc = self.state.replicas.get(leader, "")
        return f"last known leader raft {leader} grpc {grpc or 'unknown'}"

    # ------------------------------------------------------------------ membership

    async def add_member(self, raft_address: str, grpc_address: str, timeout: float) -> None:
        if raft_address not in {a for a, _ in self.members()}:
            await self._retry_until(
                timeout, lambda cb: self._obj.addNodeToCluster(raft_address, callback=cb)
            )
        if grpc_address:
            await self.submit(AnnounceReplica(raft_address, grpc_address), timeout)

    async def remove_member(self, raft_address: str, timeout: float) -> None:
        if raft_address in {a for a, _ in self.members()}:
            await self._retry_until(
                timeout, lambda cb: self._obj.removeNodeFromCluster(raft_address, callback=cb)
            )
        if raft_address in self.state.replicas:
            await self.submit(ForgetReplica(raft_address), timeout)

    async def _announce_loop(self) -> None:
        """Keep this replica's gRPC address in the replicated state (followers name the
        leader's gRPC address from it)."""
        while True:
            try:
                known = self.state.replicas.get(self.raft_address)
                if self.grpc_address and self.leader and known != self.grpc_address:
                    announce = AnnounceReplica(self.raft_address, self.grpc_address)
                    await self.submit(announce, timeout=5.0)
                    log.info("announced grpc address", grpc=self.grpc_address)
                await self.wait_changed(1.0)  # (a missed change only delays the next check)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("announce failed; retrying", error=str(exc))
                await asyncio.sleep(0.5)

    async def _join_loop(self) -> None:
        """--join: ask the current members to add this replica until a leader talks to us.
        The request travels over the password-authenticated channel; members refuse it
        without a password (the Raft port has no other way to tell who asks), so a
        plaintext replica waits to be added with AddMember (``fosctl members add``)."""
        loop = asyncio.get_running_loop()
        if self._password is None:
            log.warning("plaintext Raft: --join cannot ask the members; add this replica with "
                        "fosctl members add", raft=self.raft_address, grpc=self.grpc_address)
        while not self.leader and self._password is None:
            await asyncio.sleep(0.2)
        while not self.leader:
            for peer in self.peers:
                result = await loop.run_in_executor(
                    None, _utility_add, peer, self.raft_address, self._password
                )
                log.info("join request", peer=peer, result=result)
                if self.leader or result.startswith("SUCCESS"):
                    break
            for _ in range(20):
                if self.leader:
                    break
                await asyncio.sleep(0.1)
        log.info("joined", leader=self.leader)


def _utility_add(peer: str, self_address: str, password: str | None) -> str:
    try:
        utility = TcpUtility(password=password, timeout=3.0)
        return str(utility.executeCommand(peer, ["add", self_address]))
    except (UtilityException, OSError) as exc:
        return f"error {exc}"


async def _wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel (engine.py)
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


def data_dir_lock(data_dir: Path) -> int:
    """Refuse to run two replicas on one data dir: an exclusive lock held for the process."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "replica.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise RuntimeError(f"data dir {data_dir} is in use by another replica") from exc
    return fd
