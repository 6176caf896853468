"""The Agent facade: one stage's node agent, for factory software and experiments.

    agent = Agent("press-7", produces=ItemReq("window_frame", 5),
                  requires=[ItemReq("wood", 3)], listen="0.0.0.0:7100",
                  advertise="10.0.0.7:7100",  # what peers dial: never a wildcard
                  coordinators=["10.0.0.1:7000", ...], data_dir="/var/lib/fos/press-7")
    async with agent:                       # recover WAL, serve, register or rejoin
        async for inputs in agent.cycles(): # one batch of every input, held for this cycle
            ...physical work...
            await agent.emit(inputs)        # inputs CONSUMED + output QUEUED, one step

``async with agent`` opens and recovers the WAL (a foreign or bad WAL refuses to start),
serves fos.v1.Agent + grpc.health.v1 (port 0 binds a free port; the bound address is what
gets registered), registers the node (or rejoins it with its current address), follows
its neighbourhood on WatchFlow and starts input fetching, the supplier's retries and the
failure detector. ``run_simulated(cycle_s)`` runs a simulated stage instead of cycles().
Several Agents can share one process: nothing here is global.

Liveness does not depend on the caller's code: by default (``settings.private_loop``) the
agent's networking and protocol run on a private event loop in a background thread
(fos_agent.runtime.loop_thread), and the public calls (``start``, ``cycles``, ``emit``,
``stop``, the coordinator calls) bridge to it, so a cycle that blocks the caller's loop
for seconds is not mistaken for a dead node. ``private_loop=False`` runs everything on the
caller's loop (the CLIs and the host, which run no user code, use it). ``SyncAgent``
(fos_agent.sync) is the same agent for synchronous code.

The coordinator is off the data path: while it is unreachable the agent keeps trading on
the last flow it saw (also across a restart: the neighbourhood is saved in the data dir).

SIGTERM and SIGINT stop the agent cleanly (fos_agent.runtime.stop_signals): the task that
called ``start()`` is cancelled, so an ``async with agent:`` block ends (the cycle in hand
is released, its inputs stay QUEUED), the clean stop runs, and the block swallows the
cancel: the program goes on after it and exits 0. ``handle_signals=False`` leaves the
signals to a program that owns them; it then calls ``await agent.stop()`` itself.

``tls=TlsConfig(cert, key, ca)`` makes every link mutual TLS (docs/security.md): the
certificate must name this node id, and peers may only act for the names they carry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc.aio

from fos_agent.core.engine import Engine, RecoveryInfo, Signal
from fos_agent.core.metrics import PLAN_TAKEN_AT, Metrics
from fos_agent.net.client import PeerClient
from fos_agent.net.outbox import Outbox
from fos_agent.net.service import PeerService, start_server
from fos_agent.protocol.limits import Attrs, AttrValue, check_reason, checked_output
from fos_agent.protocol.machine import NodeConfig
from fos_agent.protocol.messages import Arrived
from fos_agent.protocol.records import Batch
from fos_agent.runtime.detector import FailureDetector
from fos_agent.runtime.errors import (
    AdvertiseError,
    InputsAlreadyEmitted,
    ListenError,
    StartTimeout,
)
from fos_agent.runtime.fillplan import Duties, first_article_plan
from fos_agent.runtime.flowview import FlowView, load_flow
from fos_agent.runtime.health import agent_health
from fos_agent.runtime.inputs import FillState, InputFetcher
from fos_agent.runtime.membership import CoordinatorSide
from fos_agent.runtime.settings import AgentSettings
from fos_agent.runtime.shares import keep_weights
from fos_agent.runtime.stage import Stage
from fos_agent.runtime.start_gate import wait_for_start_file
from fos_agent.runtime.status import StageStatus, log_long_waits, status_of
from fos_agent.runtime.stop_signals import SignalHook
from fos_agent.runtime.stop_steps import bounded_step
from fos_agent.storage.wal import wal_path
from fos_pb import agent_pb2, coordinator_pb2
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.lineage.reader import BatchView
from fos_raft.model import ItemReq, NodeSpec
from fos_raft.runtime.advertise import AdvertiseError as RuntimeAdvertiseError
from fos_raft.runtime.advertise import advertised_host, announce
from fos_raft.runtime.health import HealthPublisher
from fos_raft.runtime.logging import get_logger
from fos_raft.security.tls import TlsConfig, client_kwargs

# an agent that wrote nothing still compacts this often (genealogy retention is in days)
IDLE_COMPACT_S = 60.0

@dataclass(slots=True)
class Inputs:
    """The batches held for one cycle (one of every required item)."""

    ids: tuple[str, ...]
    batches: tuple[Batch, ...]
    emitted: bool = False

    def __getitem__(self, item: str) -> Batch:
        for batch in self.batches:
            if batch.item == item:
                return batch
        raise KeyError(item)

    def __len__(self) -> int:
        return len(self.ids)

    def claim(self) -> None:
        """Mark these inputs used by an emit or a scrap (once: InputsAlreadyEmitted)."""
        if self.emitted:
            raise InputsAlreadyEmitted("these inputs were already emitted or released")
        self.emitted = True

    def claim_for_scrap(self, reason: str) -> str:
        """``claim`` for a scrap, after checking it can be one; returns the checked reason."""
        reason = check_reason(reason)
        if not self.ids:
            raise ValueError("a source stage's cycle has no inputs to scrap")
        self.claim()
        return reason


class Agent(CoordinatorSide):
    def __init__(self, node_id: str, produces: ItemReq | None = None,
                 requires: Sequence[ItemReq] = (), listen: str = "127.0.0.1:0",
                 coordinators: Sequence[str] = (), data_dir: str | Path = ".", *,
                 capacity: int = 1, workers: int = 1, cycle_s: float | None = None,
                 time_per_batch: float | None = None, advertise: str | None = None,
                 settings: AgentSettings | None = None, tls: TlsConfig | None = None,
                 handle_signals: bool = True) -> None:
        """``produces=None``: use the spec already in the catalog. ``cycle_s`` (alias
        ``time_per_batch``): run the simulated stage with ``workers`` workers once started.
        ``advertise``: ``HOST[:PORT]`` others reach us at (default: the listen host; on a
        wildcard listen, loopback when the coordinators are, else this machine's address
        unless that is loopback). Its port, if given, replaces the bound one (NAT). Raises
        AdvertiseError when the address would be a wildcard, or loopback while the
        coordinators are on other hosts (fos_raft.runtime.advertise). ``tls``: mutual TLS
        on every link; raises TlsError when its files are unusable or do not name
        ``node_id``. ``handle_signals``: SIGTERM/SIGINT stop the agent cleanly (module
        docstring)."""
        if not coordinators:
            raise ValueError("an agent needs at least one coordinator address")  # a bug
        try:  # before anything binds or dials: a wrong address would be registered
            self._advertise_host = advertised_host(
                listen, advertise, list(coordinators), flag="advertise=",
                bind_flag="listen=", what="the coordinators and peers")
        except RuntimeAdvertiseError as exc:
            raise AdvertiseError(str(exc)) from None
        if tls is not None:
            tls.load().require_name(node_id, "the node id")
        self.tls = tls
        self.node_id = node_id
        self._given = (produces, tuple(requires), capacity)
        self.listen = listen
        self.coordinators = list(coordinators)
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.cycle_s = cycle_s if cycle_s is not None else time_per_batch
        self.advertise = advertise
        self.settings = settings or AgentSettings()
        self.metrics = Metrics(node_id)
        self.log = get_logger("fos_agent").bind(node=node_id)
        self.address = ""
        self.spec: NodeSpec | None = None
        self.flow = FlowView(node_id)
        self.flow_changed = Signal()
        self.fill = FillState()  # the first-article plan's consumer side
        self.incarnation = 0
        self.coordinator: CoordinatorClient | None = None
        self.engine: Engine = None  # type: ignore[assignment]  # set by start()
        self.detector: FailureDetector = None  # type: ignore[assignment]
        self.stage: Stage = None  # type: ignore[assignment]
        self.peers: PeerClient | None = None
        self.outbox: Outbox | None = None
        self._server: grpc.aio.Server | None = None
        self._service: PeerService | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._fetchers: dict[str, tuple[InputFetcher, asyncio.Task[Any]]] = {}
        self._resolved: dict[str, tuple[str, float]] = {}  # non-neighbour -> (address, at)
        self._catalog_consumes: bool | None = None  # does a catalog node need our product?
        self._catalog_asked = (-1, 0.0)  # (flow version, loop time) of the last question
        self._last_rejoin = 0.0
        self._started = False
        self.health: HealthPublisher | None = None  # grpc.health.v1 + /readyz, once serving
        self.unavailable_reason = ""  # set_unavailable(): a dependency outside the agent is down
        self._runner = None  # the private loop thread (settings.private_loop), once started
        self._cycle_waits: set[asyncio.Task[Any]] = set()  # callers waiting in cycles()
        self.stopped = asyncio.Event()
        # the WAL failed mid-run and cannot be reopened: ``failure`` says why, ``failed`` is
        # set (on the caller's loop); fos-agent exits 1 on it (docs/agent.md)
        self.failure = ""
        self.failed = asyncio.Event()
        self._caller_loop: asyncio.AbstractEventLoop | None = None
        self.handle_signals = handle_signals
        self._signals = SignalHook(self._on_stop_signal)
        self._owner: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> bool:
        await self.stop()
        signalled = self._signals.received is not None and exc_type is asyncio.CancelledError
        task = asyncio.current_task()
        if signalled and self._owner is not None and task is self._owner[1]:
            task.uncancel()  # our own cancel, delivered: the program goes on after the block
            return True
        return False

    def _on_stop_signal(self, signum: int) -> None:
        # in the main thread, between two bytecodes of whatever ran there: hand over only
        if self._owner is not None:
            loop, task = self._owner
            loop.call_soon_threadsafe(task.cancel)

    def _private_loop_wanted(self) -> bool:
        return self.settings.private_loop

    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        """Recover, serve, register or rejoin (see the module docstring)."""
        self._caller_loop = asyncio.get_running_loop()
        if self.handle_signals:
            task = asyncio.current_task()
            if task is not None:
                self._owner = (asyncio.get_running_loop(), task)
                self._signals.install()
        self._open_runner()
        try:
            await self._on_core(self._start_core())
        except BaseException:
            self._close_runner()
            self._signals.restore()
            raise

    async def _start_core(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._stop_core()
            raise

    async def _start(self) -> None:
        self._started = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.coordinator = CoordinatorClient(self.coordinators,
                                             timeout=self.settings.coordinator_timeout,
                                             **client_kwargs(self.tls))
        saved = load_flow(self.data_dir)
        self.spec = await self._initial_spec(saved)
        config = self._node_config(self.spec)
        self.engine = Engine(wal_path(self.data_dir), config, self.metrics,
                             group_commit=self.settings.group_commit,
                             on_recovered=self._on_recovered)
        self.engine.on_fatal = self._wal_failed
        self.engine.retention_days = self.settings.lineage_retention_days
        self.engine.lineage_index = self.settings.lineage_index
        info = self.engine.open()  # WalError for a foreign WAL: refuse to start
        self.metrics.inc("wal_recovered_batches", info.unfinished)
        self.incarnation = info.incarnation
        self.log = self.log.bind(incarnation=info.incarnation)
        self.peers = PeerClient(self.node_id, self.resolve, self.metrics,
                                on_contact=self._contact,
                                rpc_timeout=self.settings.rpc_timeout, tls=self.tls)
        self.detector = FailureDetector(self.node_id, self._ping, self._report_suspect,
                                        self.metrics, self.settings.detector)
        self.peers.on_hold = self.detector.hold  # an open long-poll is a heartbeat
        self.peers.on_proven = self.detector.proven  # whose Pings to believe
        self.outbox = Outbox(self.engine, self.peers, retry_s=self.settings.retry_s)
        self.stage = Stage(self.engine, self.metrics, output_cap=self.settings.output_cap,
                           is_sink=self.is_sink)
        try:
            self._server, self._service, port = await start_server(self, self.listen)
        except OSError as exc:
            raise ListenError(str(exc)) from None
        self.address = announce(self._advertise_host, self.advertise, port)
        self.health = agent_health(self, self._service.health)
        self.engine.health_changed = self.health.poke
        self._spawn("health", self.health.run())
        self.spec = replace(self.spec, address=self.address)
        self.log.info("agent serving", address=self.address,
                      recovered=info.unfinished)
        if saved is not None and saved.known:
            await self._apply_hood(saved, save=False)
        try:  # with a saved flow, do not hold the start for a coordinator outage
            await self._join(1.0 if self.flow.version else self.settings.start_timeout)
        except CoordinatorError as exc:
            if self.flow.version == 0:
                if exc.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    raise StartTimeout(self.settings.start_timeout, self.coordinators,
                                       str(exc)) from None
                raise
            self.log.warning("coordinator unreachable at start; trading on the saved flow",
                             error=str(exc))
            self._spawn("join", self._join_forever())
        self.outbox.send(info.messages)
        self._spawn("watch", self._watch())
        self._spawn("retries", self.outbox.run_retries())
        self._spawn("detector", self.detector.run())
        self._spawn("reclaim", self._reclaim_decommissioned())
        self._spawn("compact", self._compact_forever())
        self._spawn("report", self._report_production())
        self._spawn("shares", keep_weights(
            self._service.fair, lambda: self.flow.consumers, lambda: self.flow.version,
            self.flow_changed, self._list_nodes,
            want_catalog=lambda: not self.fill.planned, on_catalog=self._plan_fill))
        self._sync_fetchers()
        if self.settings.wait_log_s > 0:
            self._spawn("wait-log", log_long_waits(
                lambda: self.stage.waiting_since, lambda: status_of(self), self.log,
                self.settings.wait_log_s))
        if self.cycle_s is not None:
            self._spawn("stage", self._simulate(self.cycle_s))

    async def stop(self) -> None:
        """Stop trading and serving; flush what is pending; close the WAL. Idempotent.

        Every step is bounded: a step that overruns is logged and left behind, so a stop
        always ends (the WAL is synced at every commit, so nothing durable depends on it):
        within ``stop_signals.stop_bound_s(settings)`` (95 s with the defaults; a settled
        agent stops in well under a second). A program that handles SIGTERM itself
        (``handle_signals=False``) calls this from its handler's task."""
        self._signals.stopping()  # a second signal must not cut this stop short
        try:
            if self._runner is None:
                await self._stop_core()
                return
            try:
                await self._on_core(self._stop_core())
            finally:
                self._close_runner()
                self.stopped.set()  # on the caller's loop: its waiters live there
        finally:
            self._signals.restore()

    async def _stop_core(self) -> None:
        if not self._started:
            return
        self._started = False
        for wait in self._cycle_waits:  # a caller waiting for its next cycle: the loop ends
            wait.cancel()
        bound = self.settings.stop_step_s
        # 0. neighbours stopping with us are not suspects
        if self.detector is not None:
            await self._stop_step("detector", self.detector.close(), bound)
        # 1. no new cycles; requests in flight finish and are recorded (bounded wait)
        stage = self._tasks.pop("stage", None)
        if stage is not None:
            stage.cancel()
            await self._stop_step("stage", asyncio.gather(stage, return_exceptions=True), bound)
        for fetcher, _ in self._fetchers.values():
            fetcher.stop()
        fetchers = [task for _, task in self._fetchers.values()]
        self._fetchers.clear()
        if fetchers:
            grace = self.settings.rpc_timeout + self.settings.fetch.long_poll_ms / 1000 + 1
            _, late = await asyncio.wait(fetchers, timeout=grace)
            for task in late:
                task.cancel()
            await self._stop_step(
                "fetchers", asyncio.gather(*fetchers, return_exceptions=True), bound)
        # 2. pending confirmations go out; our own long-polls answer now
        if self.outbox is not None:
            await self._stop_step("outbox", self.outbox.close(flush=True), bound)
        # 3. the coordinator marks us down now (consumers rerouted), not after a suspicion
        await self._stop_step("leave", self._leave(), bound)
        if self._service is not None:
            self._service.close()
        for task in self._tasks.values():
            task.cancel()
        await self._stop_step(
            "tasks", asyncio.gather(*self._tasks.values(), return_exceptions=True), bound)
        self._tasks.clear()
        if self._server is not None:
            await self._stop_step("server", self._server.stop(grace=1.0), bound)
        if self.engine is not None:  # pending commits finish; the WAL is closed
            await self._stop_step("wal", self.engine.close(), 6 * bound)
        if self.peers is not None:
            await self._stop_step("peer channels", self.peers.close(), bound)
        if self.coordinator is not None:
            await self._stop_step("final report", self._send_report(final=True), bound)
            await self._stop_step("coordinator channels", self.coordinator.close(), bound)
        if self._runner is None:
            self.stopped.set()
        self.log.info("agent stopped")

    async def _stop_step(self, step: str, work: Awaitable[Any], timeout: float) -> None:
        await bounded_step(work, timeout, log=self.log, step=step)

    def _spawn(self, name: str, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[name] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("agent task died", error=repr(task.exception()))

    def _node_config(self, spec: NodeSpec) -> NodeConfig:
        # in plaintext anyone may send a confirmation naming our consumer: believe only the
        # consumer's own answer to an offer we make (with TLS the certificate proves it)
        verify = self.settings.verify_confirmations
        return NodeConfig(self.node_id, spec.produces, tuple(spec.requires),
                          immediate_arrival=self.settings.immediate_arrival,
                          verify_confirmations=self.tls is None if verify is None else verify)

    def _wal_failed(self, reason: str) -> None:
        """The engine could not reopen a failed WAL: this agent can never serve again, so
        it says so loudly instead of answering NOT_SERVING for ever."""
        self.failure = reason
        self.log.error("agent failed: its WAL is unusable", error=reason)
        if self._caller_loop is not None and not self._caller_loop.is_closed():
            self._caller_loop.call_soon_threadsafe(self.failed.set)

    def _on_recovered(self, info: RecoveryInfo) -> None:
        self.incarnation = info.incarnation
        if self.outbox is not None:
            self.outbox.send(info.messages)

    def _plan_fill(self, specs: list[NodeSpec], active: set[str]) -> None:
        """Take this node's part of the first-article plan (fos_agent.runtime.fillplan) from
        the first catalog read: once, and only on a fresh start (a restarted node's chain
        has filled already; its neighbours' plans are spent)."""
        if self.fill.planned:
            return
        plan = first_article_plan(specs, active) if self.incarnation == 1 else None
        duties = plan.duties(self.node_id) if plan is not None else Duties()
        assert self._service is not None
        self._service.fair.set_plan(c for c in duties.serve if c in self.flow.consumers)
        self.fill.set_plan(duties.buy)
        self.metrics.set(PLAN_TAKEN_AT, time.time())
        self.log.debug("first-article plan", serve=duties.serve, buy=duties.buy)

    def _sync_fetchers(self) -> None:
        """One fetcher per required item (requirements may change with the spec)."""
        if not self._started or self.outbox is None or self.peers is None:
            return
        wanted = {r.item for r in self.engine.config.requires}
        for item in list(self._fetchers):
            if item not in wanted:
                self._fetchers.pop(item)[0].stop()  # finishes its request in flight
        for item in wanted - set(self._fetchers):
            fetcher = InputFetcher(item, self.engine, self.peers, self.outbox,
                                   lambda: self.flow, self.flow_changed, self.metrics,
                                   self.settings.fetch, self.detector.suspected,
                                   self._others_buffered, self.stage.input_room,
                                   self.fill)
            self._fetchers[item] = (fetcher, asyncio.ensure_future(fetcher.run()))

    async def _list_nodes(self) -> coordinator_pb2.ListNodesReply:
        assert self.coordinator is not None
        self.metrics.inc("flow_queries")
        return await self.coordinator.list_nodes(timeout=2.0)

    def _others_buffered(self, item: str) -> int | None:
        """The smallest buffer among the other required inputs (None: no other input)."""
        return min((f.buffered() for it, (f, _) in self._fetchers.items() if it != item),
                   default=None)

    async def _ping(self, node: str, timeout: float) -> None:
        assert self.peers is not None
        await self.peers.ping(node, self.flow.version, timeout, self.incarnation)

    def _contact(self, node: str, ok: bool) -> None:
        if self.detector is not None:
            self.detector.contact(node, ok)

    # ---- factory software ------------------------------------------------------------------

    async def cycles(self) -> AsyncIterator[Inputs]:
        """Yield held inputs for each cycle; ``emit(inputs)`` ends the cycle. A cycle not
        emitted when the loop comes back (or ends) is released and counted skipped. Waits
        for room in the output buffer first (backpressure), so sources are paced by their
        consumers and by their own loop."""
        while self._started:
            try:
                inputs = await self._on_core(self._next_inputs())
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._started or (task is not None and task.cancelling()):
                    raise
                return  # the agent stopped while we waited: no more cycles
            try:
                yield inputs
            finally:
                if not inputs.emitted:
                    inputs.emitted = True
                    self._core_soon(self._release, inputs.ids)

    async def _next_inputs(self) -> Inputs:
        task = asyncio.current_task()
        assert task is not None
        self._cycle_waits.add(task)
        self.fill.start()
        try:
            ids = await self.stage.next_cycle()
        finally:
            self._cycle_waits.discard(task)
        self.metrics.inc("total_cycles")
        return Inputs(ids, self.stage.batches(ids))

    def _release(self, ids: tuple[str, ...]) -> None:
        self.stage.release(ids)
        self.metrics.inc("skipped_cycles")

    async def emit(self, inputs: Inputs | None = None, *, qty: int | None = None,
                   attrs: Mapping[str, AttrValue] | None = None) -> Batch:
        """Consume ``inputs`` (from cycles(); None for a source stage outside cycles())
        and queue this stage's output, in one durable step; returns the new batch.
        ``qty`` (1..MAX_QTY; default the spec's ``produces`` quantity) and ``attrs`` (string
        keys to strings or numbers, within fos_agent.protocol.limits) go with the batch to
        its consumer; out of bounds raises LimitError and the inputs stay held."""
        qty, pairs = checked_output(qty, attrs)
        if inputs is not None:
            inputs.claim()
        return await self._on_core(self._produce(inputs.ids if inputs is not None else (),
                                                 qty, pairs))

    async def _produce(self, ids: tuple[str, ...], qty: int | None = None,
                       attrs: Attrs = ()) -> Batch:
        batch = await self.stage.produce(ids, qty, attrs)
        self.metrics.inc("successful_cycles")
        return batch

    async def scrap(self, inputs: Inputs, reason: str) -> None:
        """Consume the held ``inputs`` without an output (a bad part, a failed cycle), in
        one durable step; ``reason`` (1..MAX_SCRAP_REASON_LEN printable characters) is
        recorded with each input in the WAL and the genealogy (``fosctl trace``). Not
        emitting instead puts the inputs back for the next cycle."""
        reason = inputs.claim_for_scrap(reason)
        await self._on_core(self.stage.scrap(inputs.ids, reason))

    async def _simulate(self, cycle_s: float) -> None:
        """The simulated stage, once ``settings.start_file`` exists (a harness's start
        signal, so every stage of an experiment starts its cycles at the same moment)."""
        if self.settings.start_file is not None:
            await wait_for_start_file(self.settings.start_file)
        await self._run_stage(cycle_s, self.workers)

    async def run_simulated(self, cycle_s: float, workers: int | None = None) -> None:
        """Run the simulated stage until cancelled (see fos_agent.runtime.stage)."""
        await self._on_core(self._run_stage(cycle_s, workers or self.workers))

    async def _run_stage(self, cycle_s: float, workers: int) -> None:
        self.fill.start()  # the stage starts filling: the fill hedge may begin
        await self.stage.run_simulated(cycle_s, workers)

    async def _compact_forever(self) -> None:
        # Only a commit settles records, so an idle agent (nothing written) does not wake
        # every compact_s; it still compacts every IDLE_COMPACT_S (genealogy retention)
        written = self.engine.written
        ticket = written.ticket()
        while True:
            await Signal.wait_ticket(ticket, max(IDLE_COMPACT_S, self.settings.compact_s))
            await asyncio.sleep(self.settings.compact_s)  # a period, not a synchronisation
            ticket = written.ticket()  # before compacting: a write meanwhile is seen next
            try:
                await self.engine.compact()
            except Exception as exc:  # e.g. a full disk: the records stay live; try later
                self.log.error("wal compaction failed", error=repr(exc))

    def lineage(self, batch_id: str) -> BatchView:
        """What this node knows of ``batch_id``'s genealogy: ``.made`` (inputs with their
        suppliers, made_at, delivered_to) if it made it, ``.used`` (supplier, the output
        it went into) if it consumed it; both None if it knows nothing. A read-only LMDB
        transaction: safe from any thread, including beside the agent's private loop."""
        return self.engine.lineage([batch_id]).get(batch_id, BatchView())

    async def arrived(self, batch_id: str) -> None:
        """Physical arrival of an inbound batch (only with immediate_arrival=False)."""
        await self._on_core(self._arrived(batch_id))

    async def _arrived(self, batch_id: str) -> None:
        assert self.outbox is not None
        (effects,) = await self.engine.step(Arrived(batch_id))
        self.outbox.send(effects.messages)

    def set_unavailable(self, reason: str | None) -> None:
        """Answer NOT_SERVING with ``reason`` (something the stage's work depends on, such
        as the machine behind a gateway, is unreachable); None serves again. Any thread."""
        self.unavailable_reason = reason or ""
        if self.health is not None:
            self._core_soon(self.health.poke)

    # ---- observation -----------------------------------------------------------------------

    async def status(self) -> StageStatus:
        """Why the stage is or is not producing, in words (``.text``) and data: waiting for
        which input and what its suppliers did, output buffer full and who is not buying,
        drained, not in the flow, working, idle (fos_agent.runtime.status)."""
        async def read() -> StageStatus:
            return status_of(self)
        return await self._on_core(read())

    def gauges(self) -> dict[str, float]:
        node = self.engine.node if self.engine is not None else None
        if node is None:
            return {}
        since = self.stage.waiting_since if self.stage is not None else None
        return {"queued_outbound": float(node.queued_outbound_count),
                "queued_inbound": float(sum(node.inbound_queued_counts().values())),
                "flow_version": float(self.flow.version),
                # how long a cycle has waited for room or inputs (0: none waits)
                "stage_waiting_seconds": 0.0 if since is None else time.monotonic() - since}

    def stats_reply(self) -> agent_pb2.StatsReply:
        node = self.engine.node
        receipts = [agent_pb2.Receipt(supplier=r.supplier, item=r.item, batch_id=r.batch_id,
                                      unix_ms=r.unix_ms) for r in self.metrics.receipts]
        stage = status_of(self)
        return agent_pb2.StatsReply(
            node_id=self.node_id, flow_version=self.flow.version, in_flow=self.flow.in_flow,
            counters=self.metrics.snapshot(),
            queued_outbound=node.queued_outbound_count if node else 0,
            queued_inbound=sum(node.inbound_queued_counts().values()) if node else 0,
            incarnation=self.incarnation, recent_receipts=receipts, unix_time=time.time(),
            in_transit_outbound=len(node.outbound_in_transit()) if node else 0,
            in_transit_inbound=len(node.inbound_in_transit()) if node else 0,
            stage_state=stage.state, stage_status=stage.text,
            stage_waiting_s=stage.waiting_s or 0.0)

