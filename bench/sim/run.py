"""One fos-sim run: start the system, play the events, watch it, stop everything, collect.

Everything started here is stopped in `run`'s finally block (agents by PID through
`AgentSupervisor`, coordinator replicas through `LocalCluster`), also when the run is
cancelled (Ctrl-C twice, SIGTERM) or fails. A first Ctrl-C only ends the run early: the
system is stopped in order and the report covers the time run so far.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bench.sim.collect import (
    BoundCache,
    Segment,
    agent_memory,
    cpu_seconds,
    integrate_bound,
    tree_cpu_seconds,
)
from bench.sim.dashboard import DashboardProcess
from bench.sim.events import Action, Schedule, SimEvent, Timeline
from bench.sim.metrics import (
    PLAN_TAKEN_AT,
    CounterBook,
    DeathLedger,
    RerouteTracker,
    StatsSchedule,
    first_output_s,
)
from bench.sim.poll import ClusterView, StatsPoller, cluster_view_notes
from bench.sim.procs import AgentSupervisor, tail
from bench.sim.report import SUCCESSFUL, RunData
from bench.sim.topology import throughput_bound
from bench.sim.view import Snapshot, View
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.model import NodeSpec

log = structlog.get_logger("fos-sim")

STATS_EVERY_S = 5.0  # every agent's Stats(): 300 reads a second cost a fifth of a core
FINAL_STATS_EVERY_S = 1.0  # the final items' producers: products, first product
HOT_STATS_EVERY_S = 0.2  # consumers waiting for a reroute are read this often
CLUSTER_EVERY_S = 0.5
VIEW_EVERY_S = 0.5
PLAN_WAIT_S = 15.0  # the longest the clock waits for the agents' first-article plans
LEADER_KILL_WINDOW_S = 5.0  # production is reported over this window after a leader kill


@dataclass
class RunPlan:
    title: str
    config: Mapping[str, Any]  # what --json reports as "config"
    specs: tuple[NodeSpec, ...]  # with the loopback addresses the agents will listen on
    schedule: Schedule
    duration_s: float
    cycle_s: float
    replicas: int
    root: Path
    final_items: frozenset[str]
    groups: tuple[tuple[str, ...], ...]  # node ids per agent process
    ready_timeout_s: float = 60.0
    agent_args: tuple[str, ...] = ()  # extra fos-agent options (tuning)
    dashboard: str = ""  # HOST:PORT for a fos-dashboard child process; empty: none
    hold: bool = False  # after the run, keep everything (and the display) up until Ctrl-C


@dataclass
class SimRun:
    plan: RunPlan
    view: View
    # Read the run's bookkeeping (bench.sim.results): passed in, so that the module that
    # reads a run is not imported by the run it reads.
    snapshot_of: Callable[[SimRun], Snapshot]
    collect: Callable[[SimRun], RunData]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends plan.hold's wait
    holding: bool = False

    def __post_init__(self) -> None:
        p = self.plan
        self.timeline = Timeline.of(p.specs, p.replicas, allow_unviable=True, groups=p.groups)
        self.book = CounterBook()
        self.ledger = DeathLedger()
        self.reroutes = RerouteTracker()
        self.cluster_view = ClusterView()
        self.poller = StatsPoller()
        self.segments: list[Segment] = []
        self.bound_cache: BoundCache = {}
        self.followups: list[asyncio.Task[None]] = []
        self.events_log: list[tuple[float, str]] = []
        self.notes: list[str] = []
        self.dead_replicas: list[int] = []
        self.reported_exits: set[tuple[str, int]] = set()
        self.first_final_s: float | None = None
        self.final_series: list[tuple[float, int]] = []  # (t, final products) per poll
        self.start_file = self.plan.root / "start"  # the agents' signal to start cycling
        self.t0 = 0.0
        self.t0_unix = 0.0  # the same moment on the wall clock (the agents' stamps)
        self.cluster: Any = None
        self.client: CoordinatorClient | None = None
        self.agents: AgentSupervisor | None = None
        self.dashboard: DashboardProcess | None = None
        self.ended_s = 0.0
        self.confirmed_before_start = 0  # suspicions confirmed before the clock started
        self.memory: dict[str, float] = {}
        self.cpu_at_start = cpu_seconds()
        self.wall_at_start = time.monotonic()
        # the whole run's CPU when the clock started and when it ended (live processes
        # included): starting, running and stopping are reported apart
        self.cpu_at_clock: float | None = None
        self.cpu_at_end: float | None = None

    # ------------------------------------------------------------ helpers

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, text: str) -> None:
        t = self.now() if self.t0 else 0.0
        self.events_log.append((t, text))
        self.view.event(t, text)
        log.info("event", t=round(t, 2), what=text)

    def _segment(self) -> None:
        seg = Segment(
            self.now() if self.t0 else 0.0,
            self.timeline.active(),
            tuple(self.timeline.specs.values()),
        )
        self.segments.append(seg)

    def _suppliers_of_item(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for spec in self.timeline.specs.values():
            out.setdefault(spec.produces.item, []).append(spec.node_id)
        return out

    # ------------------------------------------------------------ start / stop

    async def _start_cluster(self) -> None:
        try:
            from fos_raft.cli.launcher import LocalCluster
        except ImportError as e:
            raise RuntimeError(f"the coordinator launcher is not available: {e}") from None
        self.cluster = LocalCluster(self.plan.replicas, self.plan.root / "coordinators")
        await asyncio.to_thread(self.cluster.start)
        await asyncio.to_thread(self.cluster.wait_for_leader, 30.0)
        self.client = CoordinatorClient(list(self.cluster.grpc_addresses), timeout=10.0)
        self.event(f"coordinator cluster up: {self.plan.replicas} replicas")
        if self.plan.dashboard:
            self.dashboard = DashboardProcess(self.plan.dashboard, self.cluster.grpc_addresses,
                                              self.plan.root)
            url = await asyncio.to_thread(self.dashboard.start)
            self.event(f"floor display: {url}")

    async def _apply_catalog(self) -> None:
        assert self.client is not None
        for spec in self.plan.specs:
            await self.client.register(spec)
        self.event(f"catalog applied: {len(self.plan.specs)} nodes")

    async def _start_agents(self) -> None:
        assert self.cluster is not None
        self.agents = AgentSupervisor(
            self.plan.root,
            list(self.cluster.grpc_addresses),
            self.plan.cycle_s,
            # every stage starts its cycles when the clock starts, not as it comes up
            extra_args=(*self.plan.agent_args, "--start-file", str(self.start_file)),
        )
        by_id = {s.node_id: s for s in self.plan.specs}
        for group in self.plan.groups:
            self.agents.start_group([by_id[n] for n in group])
        deadline = time.monotonic() + self.plan.ready_timeout_s
        waiting = {s.node_id: s.address for s in self.plan.specs}
        while waiting and time.monotonic() < deadline and not self.stop.is_set():
            replies = await self.poller.stats_many(waiting.items())
            for node, reply in replies.items():
                # up = joined: a flow from the coordinator (before that its health says
                # NOT_SERVING and a neighbour's suspicion of it is confirmed)
                if reply is not None and reply.flow_version > 0:
                    del waiting[node]
            self._check_exits()
            gone = sorted(n for n in waiting if not self.agents.running(n))
            if gone:
                last = tail(self.agents.log_of(gone[0]), 5)
                raise RuntimeError(f"agent {gone[0]} exited at start; its log ends:\n{last}")
            if waiting:
                await asyncio.sleep(0.2)
        if waiting:
            raise RuntimeError(
                f"{len(waiting)} agents did not answer Stats with a flow within "
                f"{self.plan.ready_timeout_s:g} s: {', '.join(sorted(waiting)[:10])}"
            )
        self.event(f"{len(self.plan.specs)} agents up")
        await self._wait_for_plans()

    async def _wait_for_plans(self) -> None:
        """Each agent takes its part of the first-article plan from the catalog once its
        flow has settled (fos_agent.runtime.fillplan); a clock started before that fills the
        chain by fair shares alone. Wait for every plan, at most ``PLAN_WAIT_S``."""
        assert self.agents is not None
        deadline = time.monotonic() + PLAN_WAIT_S
        waiting = {s.node_id: s.address for s in self.plan.specs}
        while waiting and not self.stop.is_set():
            replies = await self.poller.stats_many(waiting.items())
            for node, reply in replies.items():
                if reply is not None and dict(reply.counters).get(PLAN_TAKEN_AT, 0.0) > 0:
                    del waiting[node]
            if not waiting or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        if waiting:
            self.event(f"{len(waiting)} agents start without their first-article plan")
        else:
            self.event("first-article plans taken")

    async def _shutdown(self) -> None:
        if self.dashboard is not None:  # first: it would only log the others' going away
            await asyncio.to_thread(self.dashboard.stop)
        if self.agents is not None:
            await asyncio.to_thread(self.agents.stop_all, 5.0)
        if self.client is not None:
            await self.client.close()
        await self.poller.close()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)

    # ------------------------------------------------------------ event execution

    async def _execute(self, ev: SimEvent) -> None:
        assert self.agents is not None and self.client is not None
        a, node = ev.action, ev.node
        if a is Action.KILL:
            host = self.agents.host(node)
            await self._poll_stats(list(host.node_ids))  # their counters up to the kill
            served = {v: self.cluster_view.consumers_of(v) for v in host.node_ids}
            pid = host.pid
            died = self.agents.kill(node)
            t, wall = self.now(), time.time()
            for victim in died:
                self.ledger.killed(victim, t)
                self.reroutes.consumer_died(victim)
            for victim in died:
                consumers = {c: i for c, i in served[victim].items() if c not in died}
                counters = {c: self.book.current(c) for c in consumers}
                self.reroutes.supplier_killed(victim, wall, consumers, counters)
            consumers = sorted({c for v in died for c in served[v]} - set(died))
            what = node if died == [node] else f"{host.host_id} ({', '.join(died)})"
            self.event(
                f"SIGKILL {what} (pid {pid})" + (f", consumers {consumers}" if consumers else "")
            )
        elif a is Action.RESTART:
            host = self.agents.host(node)
            pid = self.agents.restart(node)
            for revived in host.node_ids:
                self.ledger.restarted(revived, self.now())
                self.reroutes.supplier_restarted(revived)
            what = (
                node
                if host.node_ids == (node,)
                else f"{host.host_id} ({len(host.node_ids)} agents)"
            )
            self.event(f"restart {what} on its data dir (pid {pid})")
        elif a is Action.DRAIN:
            version = await self.client.drain(node)
            self.event(f"drain {node} -> flow v{version}")
        elif a is Action.UNDRAIN:
            version = await self.client.undrain(node)
            self.event(f"undrain {node} -> flow v{version}")
        elif a is Action.UPDATE_SPEC:
            assert ev.spec is not None
            version = await self.client.update_spec(ev.spec)
            self.agents.set_spec(ev.spec)
            self.event(f"{ev.describe()} -> flow v{version}")
        elif a is Action.ADD_NODE:
            assert ev.spec is not None
            version = await self.client.register(ev.spec)
            pid = self.agents.start(ev.spec)
            self.event(f"add {node} at {ev.spec.address} (pid {pid}) -> flow v{version}")
        elif a is Action.KILL_LEADER:
            status = await self.client.cluster_status()
            addresses = list(self.cluster.grpc_addresses)
            leader = status.leader_grpc
            index = addresses.index(leader) if leader in addresses else None
            if index is None:
                index = await asyncio.to_thread(self.cluster.leader_index)
            await asyncio.to_thread(self.cluster.kill, index)
            self.dead_replicas.append(index)
            self.event(f"SIGKILL coordinator leader (replica {index}, {addresses[index]})")
            self.followups.append(asyncio.create_task(self._production_after_leader_kill()))
        elif a is Action.RESTART_REPLICA:
            index = ev.replica if ev.replica is not None else self.dead_replicas[0]
            if index in self.dead_replicas:
                self.dead_replicas.remove(index)
            await asyncio.to_thread(self.cluster.restart, index)
            self.event(f"restart coordinator replica {index}")

    async def _production_after_leader_kill(self) -> None:
        """Show whether production noticed: final products made in the window after the kill
        (the agents trade peer to peer; the coordinator is not on the data path)."""
        start_s, before = self.now(), self.final_products()
        await asyncio.sleep(LEADER_KILL_WINDOW_S)
        await self._poll_stats(list(self.agents.specs) if self.agents else [])
        made = self.final_products() - before
        bound = integrate_bound(
            self.segments, self.now(), self.plan.cycle_s, start_s, cache=self.bound_cache
        )
        self.event(
            f"{made} final products in the {self.now() - start_s:.0f} s after the leader "
            f"kill (bound {bound:.0f})"
        )

    async def _play_events(self) -> None:
        for ev in self.plan.schedule.events:
            delay = ev.at_s - self.now()
            if delay > 0:
                try:  # asyncio.timeout: on 3.11 wait_for can swallow a cancel
                    async with asyncio.timeout(delay):
                        await self.stop.wait()
                    return
                except TimeoutError:
                    pass
            if self.stop.is_set():
                return
            try:
                self.timeline.check(ev)
                await self._execute(ev)
            except (CoordinatorError, ValueError, RuntimeError, OSError) as e:
                self.event(f"{ev.describe()} failed: {e}")
                continue
            self.timeline.apply(ev)
            self._segment()

    # ------------------------------------------------------------ polling

    def _check_exits(self) -> None:
        if self.agents is None:
            return
        for host_id, rc in self.agents.exited():
            key = (host_id, self.agents.hosts[host_id].starts)  # each start may end once
            if key in self.reported_exits:
                continue
            self.reported_exits.add(key)
            for node in self.agents.hosts[host_id].node_ids:
                self.ledger.killed(node, self.now() if self.t0 else 0.0)
                if node not in self.timeline.dead:
                    self.timeline.dead.add(node)
                    self._segment()
            last = tail(self.agents.log_path(host_id), 3).replace("\n", " | ")
            self.event(f"agent {host_id} exited on its own (rc {rc}): {last}")
            self.notes.append(f"agent {host_id} exited on its own with rc {rc}")

    async def _poll_stats(self, nodes: Sequence[str]) -> None:
        assert self.agents is not None
        targets = [(n, self.agents.specs[n].address) for n in nodes if self.agents.running(n)]
        replies = await self.poller.stats_many(targets)
        t = self.now()
        suppliers = self._suppliers_of_item()
        finals = {n for n, s in self.timeline.specs.items()
                  if s.produces.item in self.plan.final_items}
        for node, reply in replies.items():
            if reply is None:
                continue
            counters = dict(reply.counters)
            first = first_output_s(counters, self.t0_unix) if self.t0 else None
            if node in finals and first is not None and first >= 0:
                self.first_final_s = min(first, self.first_final_s or first)
            self.book.record(
                node, self.agents.starts(node), int(reply.incarnation), counters, t,
                in_flow=reply.in_flow, flow_version=int(reply.flow_version),
                queued_outbound=int(reply.queued_outbound),
                queued_inbound=int(reply.queued_inbound),
            )  # fmt: skip
            receipts = [(r.supplier, r.item, r.unix_ms / 1000.0) for r in reply.recent_receipts]
            wall = reply.unix_time or time.time()
            done = self.reroutes.observe(node, counters, wall, suppliers, receipts)
            for d in done:
                self.event(f"{node} rerouted after {d:.2f} s")
        if not self.t0:
            return  # before the clock starts (counters are baselined next)
        products = self.final_products()
        if any(replies.get(n) is not None for n in finals):  # else a stale count
            self.final_series.append((t, products))
        if self.first_final_s is None and products > 0:  # an agent without the stamp
            self.first_final_s = t

    def final_products(self) -> int:
        return sum(
            int(self.book.totals(n).get(SUCCESSFUL, 0))
            for n, s in self.timeline.specs.items()
            if s.produces.item in self.plan.final_items
        )

    def _final_producers(self) -> list[str]:
        assert self.agents is not None
        return sorted(n for n, spec in self.timeline.specs.items()
                      if spec.produces.item in self.plan.final_items and n in self.agents.specs)

    async def _stats_loop(self) -> None:
        assert self.agents is not None
        schedule = StatsSchedule(STATS_EVERY_S, FINAL_STATS_EVERY_S)
        while not self.stop.is_set():
            everyone, finals = schedule.due(self.now())
            if everyone:
                await self._poll_stats(list(self.agents.specs))
            else:
                hot = {p.consumer for p in self.reroutes.pending}
                if finals:
                    hot.update(self._final_producers())
                if hot:
                    await self._poll_stats(sorted(hot))
            self._check_exits()
            await asyncio.sleep(HOT_STATS_EVERY_S)

    async def _cluster_loop(self) -> None:
        assert self.client is not None
        while not self.stop.is_set():
            await self._poll_cluster()
            await asyncio.sleep(CLUSTER_EVERY_S)

    async def _poll_cluster(self) -> bool:
        assert self.client is not None
        if not await self.cluster_view.poll(self.client):
            return False
        t = self.now()
        for node, alive in sorted(self.cluster_view.alive.items()):
            decl = self.ledger.observe(node, alive, t)
            if decl is not None:
                kind = "true" if decl.true_death else "FALSE"
                self.event(f"coordinator declared {node} dead ({kind})")
        return True

    async def _view_loop(self) -> None:
        while not self.stop.is_set():
            self.view.update(self.snapshot_of(self))
            await asyncio.sleep(VIEW_EVERY_S)

    # ------------------------------------------------------------ the run

    async def run(self) -> RunData:
        p = self.plan
        self.bound_per_s = throughput_bound(p.specs, p.cycle_s).per_s
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._start_cluster()
            await self._apply_catalog()
            await self._start_agents()
            await self._poll_stats(list(self.agents.specs))
            self.book.mark_baseline()
            self.cpu_at_clock = tree_cpu_seconds()
            self.start_file.touch()
            self.t0, self.t0_unix = time.monotonic(), time.time()
            self._segment()
            for _ in range(10):  # the baseline below needs one answer
                if await self._poll_cluster():
                    break
            # suspicions confirmed while agents were still starting (a neighbour asked one
            # that did not listen yet): reported apart, not as the run's deaths
            self.confirmed_before_start = self.cluster_view.confirmed_suspicions
            tasks = [
                asyncio.create_task(coro)
                for coro in (
                    self._play_events(), self._stats_loop(), self._cluster_loop(),
                    self._view_loop(),
                )
            ]  # fmt: skip
            try:
                async with asyncio.timeout(p.duration_s):
                    await self.stop.wait()
                self.event("stopped early")
            except TimeoutError:
                pass
            self.stop.set()
            for task in tasks + self.followups:
                task.cancel()
            await asyncio.gather(*tasks, *self.followups, return_exceptions=True)
            # The run ends when the products are counted: the final producers are read
            # first and the clock stops there. A saturated fos-sim (500 agents on 2 cores)
            # read everyone for 30 s past the duration while the chain went on making
            # products, which the ratio then set against 120 s of bound.
            finals = self._final_producers()
            await self._poll_stats(finals)
            self.ended_s = self.now()
            self.cpu_at_end = tree_cpu_seconds()
            await self._poll_stats([n for n in self.agents.specs if n not in set(finals)])
            await self._poll_cluster()
            self.notes += cluster_view_notes(self.cluster_view.polls, self.cluster_view.errors)
            self.memory = agent_memory(self.agents)
            self.view.update(self.snapshot_of(self))
            if p.hold:  # the report's figures are taken: the floor stays up to be looked at
                self.holding = True
                self.event("run over: the floor display stays up until Ctrl-C")
                await self.release.wait()
            self.event("run over: stopping agents and coordinators")
        finally:
            for task in tasks + self.followups:
                task.cancel()
            await self._shutdown()
        return await asyncio.to_thread(self.collect, self)
