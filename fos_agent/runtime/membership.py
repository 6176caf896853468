"""The agent's coordinator side: joining, following the flow, asking the catalog.

A mixin of fos_agent.agent.Agent (one job: everything the agent asks of or learns from the
coordinator cluster; never on the data path). Register or rejoin with the current address,
follow WatchFlow and apply each neighbourhood (FlowChanged to the protocol, detector,
retries, fetchers, saved flow), rejoin when the flow says we are down while running, find
the address of a former neighbour, decide whether our product is a final one, report
suspects, and forward spec changes and drains.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fos_agent.core.engine import Engine, Signal
from fos_agent.core.metrics import Metrics
from fos_agent.net.client import PeerClient
from fos_agent.net.outbox import Outbox
from fos_agent.protocol.machine import NodeConfig
from fos_agent.protocol.messages import FlowChanged, Reclaim
from fos_agent.runtime.detector import FailureDetector
from fos_agent.runtime.errors import NotInCatalog
from fos_agent.runtime.flowview import FlowView, save_flow, view_from_pb
from fos_agent.runtime.loop_thread import OnPrivateLoop
from fos_agent.runtime.report import link_faults, production_report
from fos_agent.runtime.stop_signals import LEAVE_TIMEOUT_S
from fos_pb import coordinator_pb2 as cpb
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.api.production import REPORT_EVERY_S
from fos_raft.model import ItemReq, NodeSpec
from fos_raft.runtime.health import HealthPublisher

if TYPE_CHECKING:
    from fos_agent.runtime.settings import AgentSettings

class CoordinatorSide(OnPrivateLoop):
    """Mixin of Agent: it uses the agent's state (flow, spec, engine, detector, outbox,
    metrics, coordinator client) and is not meant to be used on its own."""

    # provided by Agent
    node_id: str
    address: str
    data_dir: Path
    spec: NodeSpec | None
    flow: FlowView
    flow_changed: Signal
    settings: AgentSettings
    metrics: Metrics
    health: HealthPublisher | None
    coordinator: CoordinatorClient | None
    engine: Engine
    incarnation: int
    cycle_s: float | None
    detector: FailureDetector
    outbox: Outbox | None
    peers: PeerClient | None
    log: Any
    _given: tuple[ItemReq | None, tuple[ItemReq, ...], int]
    _tasks: dict[str, asyncio.Task[Any]]
    _started: bool
    _last_rejoin: float
    _resolved: dict[str, tuple[str, float]]
    _catalog_consumes: bool | None
    _catalog_asked: tuple[int, float]
    loop_time: Callable[[], float]
    _spawn: Callable[[str, Any], None]
    _sync_fetchers: Callable[[], None]
    _node_config: Callable[[NodeSpec], NodeConfig]

    async def _initial_spec(self, saved: cpb.Neighbourhood | None) -> NodeSpec:
        produces, requires, capacity = self._given
        if produces is not None:
            return NodeSpec(self.node_id, "127.0.0.1:1", produces, requires, capacity)
        assert self.coordinator is not None
        try:
            self.metrics.inc("flow_queries")
            hood = (await self.coordinator.get_flow(self.node_id)).neighbourhood
        except CoordinatorError:
            if saved is None or not saved.known:
                raise
            hood = saved
        if not hood.known:
            raise NotInCatalog(f"node {self.node_id!r} is not in the catalog; give its spec "
                              "(produces/requires) to register it")
        return view_from_pb(self.node_id, hood).spec  # type: ignore[return-value]

    async def _join(self, patience: float) -> None:
        """Register, or rejoin with our current address; adopt the catalog's spec. Retries
        for ``patience`` seconds while no coordinator answers."""
        coord, spec = self.coordinator, self.spec
        assert coord is not None and spec is not None
        deadline = self.loop_time() + patience

        def budget() -> float:
            left = deadline - self.loop_time()
            return max(0.5, min(self.settings.coordinator_timeout, left))

        while True:
            try:
                self.metrics.inc("flow_queries")
                hood = (await coord.get_flow(self.node_id, timeout=budget())).neighbourhood
                if not hood.known:
                    try:
                        await coord.register(spec, timeout=budget(),
                                             incarnation=self.incarnation, from_agent=True)
                        self.log.info("registered", spec=str(spec))
                        return
                    except CoordinatorError as exc:
                        if exc.code.name != "ALREADY_EXISTS":
                            raise
                        self.metrics.inc("flow_queries")
                        hood = (await coord.get_flow(self.node_id, timeout=budget())
                                ).neighbourhood
                catalog = view_from_pb(self.node_id, hood).spec
                if catalog is not None and _differs(catalog, spec):
                    self.log.warning("catalog spec differs from ours; following the catalog "
                                     "(use update_spec to change it)",
                                     catalog=str(catalog), ours=str(spec))
                    self._adopt_spec(catalog)
                if not hood.alive or hood.spec.address != self.address:
                    await coord.rejoin(self.node_id, self.address, timeout=budget(),
                                       incarnation=self.incarnation)
                    self.log.info("rejoined", address=self.address)
                return
            except CoordinatorError as exc:
                if exc.code.name in ("INVALID_ARGUMENT", "FAILED_PRECONDITION",
                                     "ALREADY_EXISTS") or self.loop_time() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _report_production(self) -> None:
        """Production figures to the coordinator every REPORT_EVERY_S (soft state there)."""
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            await self._send_report()

    async def _send_report(self, final: bool = False) -> None:
        if self.coordinator is None or self.spec is None:
            return
        # a start that failed before the detector existed still sends its final report
        seen = self.detector.links_down() if self.detector is not None else {}
        down = link_faults(self.node_id, seen, self.flow.consumers)
        report = production_report(self.node_id, self.incarnation, self.spec.produces.item,
                                   self.metrics, self.cycle_s, final, down)
        try:
            await self.coordinator.report_production(
                report, timeout=self.settings.coordinator_timeout)
        except CoordinatorError as exc:  # figures are best effort: the next report catches up
            self.log.debug("production report not taken", error=str(exc))

    async def _leave(self) -> None:
        """Tell the coordinator we stop: the node is down at once (reason ``stopped``) and
        its consumers are rerouted, instead of after their suspicion and a probe. Best
        effort within LEAVE_TIMEOUT_S: with no coordinator reachable the neighbours find
        out as after a crash. The flow watch ends first: a stopping agent must not answer
        its own ``down`` with a rejoin, nor step the flow it leaves."""
        if self.coordinator is None or self.spec is None or not self.settings.leave_on_stop:
            return
        watch = self._tasks.pop("watch", None)
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        timeout = min(LEAVE_TIMEOUT_S, self.settings.coordinator_timeout,
                      self.settings.stop_step_s)
        try:
            await self.coordinator.leave(self.node_id, timeout=timeout,
                                         incarnation=self.incarnation)
            self.log.info("left the flow: marked down as stopped")
        except CoordinatorError as exc:
            self.log.warning("could not tell the coordinator we stop; neighbours will "
                             "suspect us", error=str(exc))

    async def _join_forever(self) -> None:
        while True:
            try:
                await self._join(self.settings.start_timeout)
                return
            except CoordinatorError:
                await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        assert self.coordinator is not None
        while True:
            try:
                async for reply in self.coordinator.watch_flow(self.node_id):
                    self.metrics.inc("flow_queries")
                    await self._apply_hood(reply.neighbourhood)
            except CoordinatorError as exc:
                self.log.error("flow watch refused", error=str(exc))
                await asyncio.sleep(1.0)

    async def _apply_hood(self, hood: cpb.Neighbourhood, save: bool = True) -> None:
        view = view_from_pb(self.node_id, hood)
        if view.version < self.flow.version:
            return
        previous, self.flow = self.flow, view
        if self.health is not None:  # a first flow makes the agent serving: say so now
            self.health.poke()
        self.metrics.suppliers_changed(
            {item: [s.node_id for s in ranked] for item, ranked in view.suppliers.items()})
        if view.spec is not None and self.spec is not None and _differs(view.spec, self.spec):
            self.log.info("spec changed by the coordinator", spec=str(view.spec))
            self._adopt_spec(view.spec)
        await self.engine.step(FlowChanged(view.version, view.consumers))
        self.detector.watch({n for n, alive in view.alive_of.items() if alive})
        assert self.outbox is not None
        for consumer in view.consumers:
            if view.alive_of.get(consumer) and not previous.alive_of.get(consumer, False):
                self.outbox.kick(consumer)  # back (or new): re-offer what it may miss
        if self.peers is not None:
            for node, address in view.addresses.items():
                if view.alive_of.get(node) and not previous.alive_of.get(node, False):
                    self.peers.reconnect(address)  # back: connect now, not after a backoff
        if save:
            with contextlib.suppress(OSError):
                save_flow(self.data_dir, hood)
        if view.known and not view.alive and self._started:
            self._maybe_rejoin()
        self._sync_fetchers()
        self.flow_changed.notify()
        self.log.debug("flow", version=view.version, in_flow=view.in_flow,
                       consumers=sorted(view.consumers),
                       suppliers={k: [s.node_id for s in v] for k, v in view.suppliers.items()})

    def _adopt_spec(self, spec: NodeSpec) -> None:
        self.spec = replace(spec, address=self.address or spec.address)
        self.engine.set_config(self._node_config(self.spec))
        self._catalog_consumes, self._catalog_asked = None, (-1, 0.0)

    def _maybe_rejoin(self) -> None:
        """The flow says we are down while we run (a false death, or we were paused)."""
        now = self.loop_time()
        if now - self._last_rejoin < 1.0 or "rejoin" in self._tasks:
            return
        self._last_rejoin = now
        self.log.warning("the coordinator has us down; rejoining")

        async def rejoin() -> None:
            assert self.coordinator is not None
            try:
                await self.coordinator.rejoin(self.node_id, self.address,
                                              incarnation=self.incarnation)
            except CoordinatorError as exc:
                self.log.warning("rejoin failed", error=str(exc))
            finally:
                self._tasks.pop("rejoin", None)

        self._spawn("rejoin", rejoin())

    async def resolve(self, node: str) -> str | None:
        """A peer's address: from the neighbourhood, else asked of the coordinator (a
        former neighbour we still owe goods or confirmations to)."""
        address = self.flow.addresses.get(node)
        if address:
            return address
        cached = self._resolved.get(node)
        now = self.loop_time()
        if cached is not None and now - cached[1] < 10.0:
            return cached[0] or None
        self._resolved[node] = ("", now)  # one lookup at a time / per 10 s
        if self.coordinator is None:
            return None
        try:
            self.metrics.inc("flow_queries")
            hood = (await self.coordinator.get_flow(node, timeout=2.0)).neighbourhood
        except CoordinatorError:
            return None
        address = hood.spec.address if hood.known else ""
        self._resolved[node] = (address, now)
        return address or None

    def is_sink(self) -> bool:
        """Our product is a final product: no catalog node requires it. Asked of the
        coordinator once per flow version (again every 2 s while it cannot answer), only
        while we have no flow consumers. Unknown counts as a sink: a stage must not stop
        producing because the coordinator is unreachable."""
        if self.flow.consumers:
            return False
        version, now = self.flow.version, self.loop_time()
        asked_version, asked_at = self._catalog_asked
        stale = version != asked_version or (self._catalog_consumes is None
                                              and now - asked_at > 2.0)
        if stale and "catalog" not in self._tasks and self.coordinator is not None:
            self._catalog_asked = (version, now)
            self._spawn("catalog", self._check_catalog())
        return not self._catalog_consumes

    async def _check_catalog(self) -> None:
        assert self.coordinator is not None and self.spec is not None
        try:
            self.metrics.inc("flow_queries")
            nodes = await self.coordinator.list_nodes(timeout=2.0)
            item = self.spec.produces.item
            self._catalog_consumes = any(r.item == item for n in nodes.nodes
                                         for r in n.spec.requires)
            self.engine.outbound_changed.notify()  # a waiting stage re-checks its room
        except CoordinatorError:
            pass
        finally:
            self._tasks.pop("catalog", None)

    async def _reclaim_decommissioned(self) -> None:
        """Supplier side of a decommission: goods IN_TRANSIT to a consumer that is no longer
        a flow consumer are asked about (at most every ``reclaim_check_s`` each); once the
        catalog no longer knows that consumer (decommissioned: it will never come back to
        take them), they are reclaimed (RECLAIMED + a new QUEUED batch whose lineage is the
        old id). A consumer that is merely down keeps its goods: it may return."""
        every = self.settings.reclaim_check_s
        while True:
            changed = self.engine.outbound_changed.ticket()
            node = self.engine.node
            if node is not None and not node.outbound_in_transit():
                await changed.wait()  # nothing owed to anyone: no periodic wake-up (issue 14)
            await asyncio.sleep(every)
            node = self.engine.node
            if node is None or self.coordinator is None:
                continue
            orphans = {r.to for r in node.outbound_in_transit()} - set(self.flow.consumers)
            for consumer in sorted(orphans):
                if not await self._is_decommissioned(consumer):
                    continue
                try:
                    await self.engine.step(Reclaim(consumer))
                except Exception as exc:  # flow moved under us, or the engine recovering
                    self.log.warning("reclaim failed", consumer=consumer, error=str(exc))
                    continue
                self.log.warning("goods in transit to a decommissioned consumer reclaimed",
                                 consumer=consumer)

    async def _is_decommissioned(self, node: str) -> bool:
        """True only on a definite answer: the catalog (at least as new as the flow we
        follow) does not know ``node``."""
        assert self.coordinator is not None
        self.coordinator.observe_version(self.flow.version)
        try:
            self.metrics.inc("flow_queries")
            hood = (await self.coordinator.get_flow(node, timeout=2.0)).neighbourhood
        except CoordinatorError:
            return False
        return not hood.known

    async def _report_suspect(self, suspect: str, reason: str) -> str:
        assert self.coordinator is not None
        outcome, _ = await self.coordinator.report_suspect(self.node_id, suspect, reason)
        return outcome

    # ---- spec changes and maintenance, at the coordinator ----

    async def update_spec(self, produces: ItemReq | None = None,
                          requires: Sequence[ItemReq] | None = None,
                          capacity: int | None = None,
                          expected_version: int | None = None) -> int:
        """Change this node's spec at the coordinator (compare-and-set with
        ``expected_version``); the agent follows it when the flow arrives."""
        return await self._on_core(self._update_spec(produces, requires, capacity,
                                                     expected_version))

    async def _update_spec(self, produces: ItemReq | None, requires: Sequence[ItemReq] | None,
                           capacity: int | None, expected_version: int | None) -> int:
        assert self.coordinator is not None and self.spec is not None
        spec = replace(self.spec,
                       produces=produces or self.spec.produces,
                       requires=tuple(requires) if requires is not None else self.spec.requires,
                       capacity=capacity or self.spec.capacity, address=self.address)
        return await self.coordinator.update_spec(spec, expected_version)

    async def drain(self) -> int:
        """Ask the coordinator to drain this node (the planner routes around it)."""
        assert self.coordinator is not None
        return await self._on_core(self.coordinator.drain(self.node_id))

    async def undrain(self) -> int:
        assert self.coordinator is not None
        return await self._on_core(self.coordinator.undrain(self.node_id))

def _differs(a: NodeSpec, b: NodeSpec) -> bool:
    """Specs differ in what the stage does (the address may change freely)."""
    return (a.produces, tuple(a.requires), a.capacity) != (b.produces, tuple(b.requires),
                                                           b.capacity)
