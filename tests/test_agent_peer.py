"""The peer service and the Agent, in-process, against a real 3-replica coordinator cluster.

Real gRPC over loopback, real LMDB WALs, real fos-coordinator processes; agents run in the
test's event loop. Every test uses its own item names so the flows of different tests never
touch (they share one cluster to keep the suite fast).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest
from agent_util import eventually, peer_stub
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fos_agent import Agent, AgentSettings, ItemReq, WalError
from fos_agent.audit import audit
from fos_agent.protocol.records import InState, OutState
from fos_agent.runtime.inputs import FetchSettings
from fos_agent.storage.wal import read_wal, wal_path
from fos_pb import agent_pb2
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.model import NodeSpec
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCluster(3, tmp_path_factory.mktemp("agent-peer-coord"))
    try:
        c.start()
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


def make(cluster: LocalCluster, base: Path, node: str, produces: ItemReq | None,
         requires: tuple[ItemReq, ...] = (), **kw: object) -> Agent:
    return Agent(node, produces, requires, coordinators=cluster.grpc_addresses,
                 data_dir=base / node, **kw)  # type: ignore[arg-type]


def pair_audit(suppliers: list[Path], consumers: list[Path]) -> None:
    """No batch lost or duplicated between these stopped agents (fos_agent.audit)."""
    report = audit([*suppliers, *consumers])
    assert report.ok, report.summary()
    assert report.unverified == [], report.summary()


async def test_two_agents_trade_and_report_stats(cluster: LocalCluster, tmp_path: Path):
    t0 = time.time()
    wood = make(cluster, tmp_path, "t1-wood", ItemReq("t1wood", 1), cycle_s=0.05)
    frame = make(cluster, tmp_path, "t1-frame", ItemReq("t1frame", 1),
                 (ItemReq("t1wood", 2),), cycle_s=0.05)
    async with wood, frame:
        await eventually(lambda: frame.metrics["successful_cycles"] >= 5, what="5 frames")
        async with peer_stub(frame.address) as stub:
            stats = await stub.Stats(agent_pb2.StatsRequest(), timeout=5)
        assert stats.node_id == "t1-frame" and stats.in_flow and stats.incarnation == 1
        assert stats.counters["batches_received"] >= 5
        assert stats.counters["batches_received_from:t1-wood"] >= 5
        assert stats.counters["messages_sent.RequestBatch"] >= 5
        assert stats.recent_receipts[-1].supplier == "t1-wood"
        assert stats.recent_receipts[-1].item == "t1wood"
        assert t0 * 1000 <= stats.recent_receipts[-1].unix_ms <= time.time() * 1000
        # the first output's own wall time (fos-sim's precise first product), set once
        assert t0 <= stats.counters["first_output_at"] <= time.time()
        assert frame.metrics["first_output_at"] == stats.counters["first_output_at"]
        assert wood.metrics["batches_produced"] >= 5
        assert frame.metrics["batches_consumed"] == frame.metrics["batches_produced"]
        keep_grpc_aio_running()  # see fos_raft.runtime.grpc_runtime
        async with grpc.aio.insecure_channel(wood.address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    pair_audit([tmp_path / "t1-wood"], [tmp_path / "t1-frame"])
    assert read_wal(wal_path(tmp_path / "t1-frame")).inbound  # it really traded


async def _consumer_of(cluster: LocalCluster, node: str, item: str) -> None:
    """Register a consumer node that is nobody's agent: the test speaks for it."""
    spec = NodeSpec(node, f"127.0.0.1:{free_port()}", ItemReq(f"{node}-out", 1),
                    (ItemReq(item, 1),))
    async with CoordinatorClient(cluster.grpc_addresses) as client:
        await client.register(spec, from_agent=True)  # as its agent would


def _request(consumer: str, rid: str, item: str, wait_ms: int = 0, flow_version: int = 0,
             delivered: tuple[str, ...] = ()) -> agent_pb2.RequestBatchRequest:
    return agent_pb2.RequestBatchRequest(request_id=rid, consumer=consumer, item=item, qty=1,
                                         wait_ms=wait_ms, flow_version=flow_version,
                                         delivered=list(delivered))


async def test_supplier_long_poll_refusals_dedup_and_confirmations(cluster: LocalCluster,
                                                                   tmp_path: Path):
    supplier = make(cluster, tmp_path, "t2-sup", ItemReq("t2x", 1))  # no stage: emit()
    async with supplier:
        await _consumer_of(cluster, "t2-con", "t2x")
        await eventually(lambda: "t2-con" in supplier.flow.consumers, what="flow consumer")
        async with peer_stub(supplier.address) as stub:
            # long-poll: the request waits for a batch, answered as soon as one is made
            started = time.monotonic()
            task = asyncio.ensure_future(stub.RequestBatch(
                _request("t2-con", "r1", "t2x", wait_ms=8000), timeout=20))
            done, _ = await asyncio.wait({task}, timeout=0.3)
            assert not done, "an empty supplier must hold the long-poll"
            made = await supplier.emit()
            reply = await task
            assert reply.WhichOneof("result") == "sent"
            assert reply.sent.batch_id == made.batch_id
            assert time.monotonic() - started < 6.0
            # nothing queued, short wait: BatchUnavailable after the wait
            started = time.monotonic()
            reply = await stub.RequestBatch(_request("t2-con", "r2", "t2x", wait_ms=200),
                                            timeout=10)
            assert reply.WhichOneof("result") == "unavailable"
            assert time.monotonic() - started >= 0.18
            # dedup: the same request id gets the same batch, never a second one
            await supplier.emit()
            again = await stub.RequestBatch(_request("t2-con", "r1", "t2x"), timeout=10)
            assert again.sent.batch_id == made.batch_id
            fresh = await stub.RequestBatch(_request("t2-con", "r3", "t2x"), timeout=10)
            assert fresh.sent.batch_id != made.batch_id
            node = supplier.engine.node
            assert node is not None and len(node.outbound_in_transit()) == 2
            # refusals
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.RequestBatch(_request("t2-stranger", "r4", "t2x"), timeout=10)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            newer = supplier.flow.version + 1000
            with pytest.raises(grpc.aio.AioRpcError) as behind:
                await stub.RequestBatch(_request("t2-stranger", "r5", "t2x",
                                                 flow_version=newer), timeout=10)
            assert behind.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            metadata = dict(behind.value.trailing_metadata() or ())
            assert int(metadata["fos-flow-version"]) == node.flow_version
            with pytest.raises(grpc.aio.AioRpcError) as wrong:
                await stub.RequestBatch(_request("t2-con", "r6", "t2y"), timeout=10)
            assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # confirmations, piggybacked on a request and on their own, are hints in
            # plaintext (anyone may name t2-con): the supplier asks t2-con itself, at its
            # address in the catalog, with an offer, and only its answer settles a batch
            offered = supplier.metrics["messages_sent.OfferBatch"]
            await stub.RequestBatch(_request("t2-con", "r7", "t2x",
                                             delivered=(made.batch_id,)), timeout=10)
            await stub.DeliveryConfirmed(agent_pb2.BatchRef(
                batch_id=fresh.sent.batch_id, supplier="t2-sup", consumer="t2-con"),
                timeout=10)
            await eventually(lambda: supplier.metrics["messages_sent.OfferBatch"]
                             >= offered + 2, what="confirmations verified by offers")
            history = supplier.engine.wal.load(settled=True)
            assert history.outbound[made.batch_id].state is OutState.IN_TRANSIT
            assert history.outbound[fresh.sent.batch_id].state is OutState.IN_TRANSIT
            assert supplier.metrics["batches_delivered"] == 0
            assert supplier.metrics["messages_received.RequestBatch"] >= 8
    durable = read_wal(wal_path(tmp_path / "t2-sup"), settled=True)
    assert durable.outbound[made.batch_id].state is OutState.IN_TRANSIT
    assert durable.requests[("t2-con", "r1")] == made.batch_id


async def test_consumer_takes_offers_from_anyone_once_and_recovers(cluster: LocalCluster,
                                                                   tmp_path: Path):
    consumer = make(cluster, tmp_path, "t3-con", ItemReq("t3out", 1), (ItemReq("t3in", 1),))
    batch = agent_pb2.Batch(batch_id="t3-ghost:1", item="t3in", qty=1, producer="t3-ghost",
                            seq=1)
    async with consumer:
        async with peer_stub(consumer.address) as stub:
            offer = agent_pb2.OfferBatchRequest(batch=batch, supplier="t3-ghost",
                                                consumer="t3-con")
            first = await stub.OfferBatch(offer, timeout=10)
            second = await stub.OfferBatch(offer, timeout=10)
            assert first.state == second.state == agent_pb2.INBOUND_QUEUED
            forged = agent_pb2.OfferBatchRequest(batch=batch, supplier="t3-other",
                                                 consumer="t3-con")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.OfferBatch(forged, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            stats = await stub.Stats(agent_pb2.StatsRequest(), timeout=10)
        assert consumer.metrics["batches_received"] == 1
        assert consumer.metrics["wal_ghost_batches"] == 1
        assert [r.batch_id for r in stats.recent_receipts] == ["t3-ghost:1"]
    durable = read_wal(wal_path(tmp_path / "t3-con"))
    assert durable.inbound["t3-ghost:1"].state is InState.QUEUED
    # a restart recovers it, under a new incarnation
    again = make(cluster, tmp_path, "t3-con", ItemReq("t3out", 1), (ItemReq("t3in", 1),))
    async with again:
        assert again.incarnation == 2
        assert again.metrics["wal_recovered_batches"] == 1
        assert again.engine.node.inbound_queued_counts() == {"t3in": 1}
    # another node's WAL is refused, and left as it was
    intruder = Agent("t3-intruder", ItemReq("t3out", 1), coordinators=cluster.grpc_addresses,
                     data_dir=tmp_path / "t3-con")
    with pytest.raises(WalError, match="belongs to node"):
        await intruder.start()
    assert read_wal(wal_path(tmp_path / "t3-con")).inbound == durable.inbound


async def test_factory_cycles_with_two_workers_hold_each_input_once(cluster: LocalCluster,
                                                                    tmp_path: Path):
    source = make(cluster, tmp_path, "t4-src", ItemReq("t4a", 1), cycle_s=0.02)
    stage = make(cluster, tmp_path, "t4-stage", ItemReq("t4b", 1), (ItemReq("t4a", 1),),
                 settings=AgentSettings())
    consumed: list[str] = []
    lineages: list[tuple[str, ...]] = []

    async def worker(skip_first: bool) -> None:
        async for inputs in stage.cycles():
            if skip_first:  # a cycle not emitted is released, not lost
                skip_first = False
                continue
            consumed.extend(inputs.ids)
            made = await stage.emit(inputs)
            assert inputs["t4a"].item == "t4a"
            lineages.append(made.lineage)
            if len(consumed) >= 12:
                return

    async with source, stage:
        await asyncio.wait_for(asyncio.gather(worker(True), worker(False)), 30)
    assert len(consumed) == len(set(consumed)) >= 12
    assert sorted(b for lin in lineages for b in lin) == sorted(consumed)
    assert stage.metrics["skipped_cycles"] >= 1
    durable = read_wal(wal_path(tmp_path / "t4-stage"), settled=True)
    assert all(durable.inbound[b].state is InState.CONSUMED for b in consumed)


async def test_dead_supplier_is_bypassed_locally_reported_and_rejoins(cluster: LocalCluster,
                                                                      tmp_path: Path):
    fast = AgentSettings()
    crash = AgentSettings(leave_on_stop=False)  # no goodbye: its neighbours must find out
    s1 = make(cluster, tmp_path, "t5-s1", ItemReq("t5w", 1), cycle_s=0.05, settings=crash)
    s2 = make(cluster, tmp_path, "t5-s2", ItemReq("t5w", 1), cycle_s=0.05, settings=crash)
    con = make(cluster, tmp_path, "t5-con", ItemReq("t5f", 1), (ItemReq("t5w", 1),),
               cycle_s=0.05, settings=fast)
    async with s1, s2, con:
        ranked = await eventually(lambda: len(con.flow.ranked_suppliers("t5w")) == 2
                                  and con.flow.ranked_suppliers("t5w"), what="a backup")
        primary, backup = (s1, s2) if ranked[0].node_id == "t5-s1" else (s2, s1)
        key = f"batches_received_from:{backup.node_id}"
        await eventually(lambda: con.metrics.get(f"batches_received_from:{primary.node_id}",
                                                 0) >= 3, what="trading with the primary")
        before = con.metrics.get(key, 0)
        killed_at = time.time()
        await primary.stop()  # its port now refuses connections, like after a SIGKILL
        await eventually(lambda: con.metrics.get(key, 0) > before, what="reroute")
        reroute_s = con.metrics[f"last_received_from_at:{backup.node_id}"] - killed_at
        assert reroute_s < 5.0, f"reroute took {reroute_s:.2f} s"
        await eventually(lambda: (primary.node_id, "MARKED_DOWN") in con.detector.outcomes,
                         what="suspicion confirmed")
        await eventually(lambda: not con.flow.alive_of.get(primary.node_id, False),
                         what="flow without the dead supplier")
        assert con.metrics["suspicions_reported"] >= 1
        # restart on the same data dir and a new port: rejoin, and the flow says where
        back = make(cluster, tmp_path, primary.node_id, ItemReq("t5w", 1), cycle_s=0.05)
        async with back:
            assert back.incarnation == 2 and back.address != primary.address
            await eventually(lambda: con.flow.alive_of.get(back.node_id), what="rejoin")
            await eventually(lambda: back.node_id in con.flow.addresses
                             and con.flow.addresses[back.node_id] == back.address,
                             what="new address in the consumer's flow")
            node = back.engine.node
            await eventually(lambda: not node.outbound_in_transit(),
                             what="in-transit batches of the dead incarnation delivered")
        await eventually(lambda: con.metrics["successful_cycles"] >= 10, what="production")
    pair_audit([tmp_path / "t5-s1", tmp_path / "t5-s2"], [tmp_path / "t5-con"])


async def test_requirement_change_and_drain_are_followed(cluster: LocalCluster,
                                                         tmp_path: Path):
    a = make(cluster, tmp_path, "t6-a", ItemReq("t6a", 1), cycle_s=0.05)
    b = make(cluster, tmp_path, "t6-b", ItemReq("t6b", 1), cycle_s=0.05)
    con = make(cluster, tmp_path, "t6-con", ItemReq("t6out", 1), (ItemReq("t6a", 1),),
               cycle_s=0.05)
    async with a, b, con:
        await eventually(lambda: con.metrics.get("batches_received_from:t6-a", 0) >= 3,
                         what="buying t6a")
        async with CoordinatorClient(cluster.grpc_addresses) as client:
            nodes = await client.list_nodes()
        (info,) = [n for n in nodes.nodes if n.spec.node_id == "t6-con"]
        await con.update_spec(requires=[ItemReq("t6b", 1)], expected_version=info.spec_version)
        await eventually(lambda: con.engine.config.requires == (ItemReq("t6b", 1),),
                         what="the new requirement followed")
        await eventually(lambda: con.metrics.get("batches_received_from:t6-b", 0) >= 3,
                         what="buying t6b")
        with pytest.raises(CoordinatorError) as stale:  # compare-and-set on an old version
            await con.update_spec(requires=[ItemReq("t6a", 1)],
                                  expected_version=info.spec_version)
        assert stale.value.code == grpc.StatusCode.FAILED_PRECONDITION
        await b.drain()
        await eventually(lambda: not con.flow.ranked_suppliers("t6b"), what="drained away")
        assert not con.flow.in_flow  # its only input has no supplier left
        await b.undrain()
        await eventually(lambda: con.flow.ranked_suppliers("t6b"), what="undrained")
        made = con.metrics["successful_cycles"]
        await eventually(lambda: con.metrics["successful_cycles"] > made, what="production")
    pair_audit([tmp_path / "t6-a", tmp_path / "t6-b"], [tmp_path / "t6-con"])


async def test_physical_transit_waits_for_arrival(cluster: LocalCluster, tmp_path: Path):
    sup = make(cluster, tmp_path, "t7-sup", ItemReq("t7a", 1))
    con = make(cluster, tmp_path, "t7-con", ItemReq("t7b", 1), (ItemReq("t7a", 1),),
               settings=AgentSettings(immediate_arrival=False))
    async with sup, con:
        await eventually(lambda: "t7-con" in sup.flow.consumers, what="flow")
        made = await sup.emit()
        node = con.engine.node
        await eventually(lambda: node.inbound(made.batch_id) is not None, what="sent")
        assert node.inbound(made.batch_id).state is InState.IN_TRANSIT
        await eventually(lambda: sup.engine.node.is_waiting(made.batch_id),
                         what="the supplier told: goods on the way")
        assert sup.engine.node.outbound(made.batch_id).state is OutState.IN_TRANSIT
        assert con.metrics["successful_cycles"] == 0
        await con.arrived(made.batch_id)
        assert node.inbound(made.batch_id).state is InState.QUEUED
        # durable, and maybe compacted already: ask the genealogy index
        await eventually(lambda: sup.lineage(made.batch_id).made.state == "DELIVERED",
                         what="delivery confirmed after arrival")
        inputs = await asyncio.wait_for(con.cycles().__anext__(), 10)
        assert inputs.ids == (made.batch_id,)
        out = await con.emit(inputs)
        assert out.lineage == (made.batch_id,)


async def test_a_new_flow_ends_a_held_long_poll_with_an_answer(cluster: LocalCluster,
                                                               tmp_path: Path):
    """The supplier answers (BatchUnavailable, its new flow version) as soon as its flow
    changes, so the consumer, which sees the same change, need not cancel the call: a
    cancelled call can leave a batch sent in that very moment in transit."""
    supplier = make(cluster, tmp_path, "t9-sup", ItemReq("t9x", 1))  # no stage: emit()
    async with supplier:
        await _consumer_of(cluster, "t9-con", "t9x")
        await eventually(lambda: "t9-con" in supplier.flow.consumers, what="flow consumer")
        before = supplier.flow.version
        async with peer_stub(supplier.address) as stub:
            started = time.monotonic()
            task = asyncio.ensure_future(stub.RequestBatch(
                _request("t9-con", "r1", "t9x", wait_ms=8000), timeout=20))
            done, _ = await asyncio.wait({task}, timeout=0.3)
            assert not done, "an empty supplier must hold the long-poll"
            await _consumer_of(cluster, "t9-con2", "t9x")  # a new flow
            reply = await task
            assert reply.WhichOneof("result") == "unavailable"
            assert reply.flow_version > before
            assert time.monotonic() - started < 6.0, "held until its wait ran out"


async def test_end_wait_answers_a_held_long_poll_now_and_a_late_one_at_once(
        cluster: LocalCluster, tmp_path: Path):
    """A stopping consumer asks its supplier to answer its long-poll (EndWait) rather than
    cancel it; a request with an ended id that arrives later is not held."""
    supplier = make(cluster, tmp_path, "t10-sup", ItemReq("t10x", 1))  # no stage: emit()
    async with supplier:
        await _consumer_of(cluster, "t10-con", "t10x")
        await eventually(lambda: "t10-con" in supplier.flow.consumers, what="flow consumer")
        async with peer_stub(supplier.address) as stub:
            started = time.monotonic()
            held = asyncio.ensure_future(stub.RequestBatch(
                _request("t10-con", "r1", "t10x", wait_ms=30000), timeout=40))
            done, _ = await asyncio.wait({held}, timeout=0.3)
            assert not done, "an empty supplier must hold the long-poll"
            await stub.EndWait(agent_pb2.EndWaitRequest(consumer="t10-con",
                                                        request_ids=["r1", "r2"]), timeout=5)
            reply = await held
            assert reply.WhichOneof("result") == "unavailable"
            late = await stub.RequestBatch(_request("t10-con", "r2", "t10x", wait_ms=30000),
                                           timeout=40)
            assert late.WhichOneof("result") == "unavailable"
            assert time.monotonic() - started < 5.0, "held until its wait ran out"
            # other request ids still wait (and get the batch made meanwhile)
            other = asyncio.ensure_future(stub.RequestBatch(
                _request("t10-con", "r3", "t10x", wait_ms=30000), timeout=40))
            done, _ = await asyncio.wait({other}, timeout=0.3)
            assert not done
            made = await supplier.emit(None)
            assert (await other).sent.batch_id == made.batch_id


async def test_a_consumer_stops_at_once_and_quiescent_with_a_long_poll_open(
        cluster: LocalCluster, tmp_path: Path):
    """A 30 s long-poll does not hold up a clean stop, and nothing is left in transit."""
    fetch = FetchSettings(long_poll_ms=30000)
    supplier = make(cluster, tmp_path, "t11-sup", ItemReq("t11x", 1))  # no stage: emit()
    consumer = make(cluster, tmp_path, "t11-con", ItemReq("t11y", 1), (ItemReq("t11x", 1),),
                    cycle_s=0.05, settings=AgentSettings(fetch=fetch))
    async with supplier:
        async with consumer:
            # held: a request refused (the supplier's flow behind) or answered at once
            # would leave nothing for the stop to end
            await eventually(lambda: "t11-con" in supplier.detector.holding(),
                             what="a long-poll held")
            started = time.monotonic()
        stopped_in = time.monotonic() - started
        assert stopped_in < 5.0, f"the stop waited {stopped_in:.1f} s for the long-poll"
        assert supplier.metrics["messages_received.EndWait"] == 1
        assert supplier.stats_reply().in_transit_outbound == 0
    pair_audit([tmp_path / "t11-sup"], [tmp_path / "t11-con"])


HOLD_FIRST = AgentSettings(fetch=FetchSettings(long_poll_ms=60000, long_poll_min_ms=60000))


async def test_agents_follow_the_plan_across_lanes_then_fair_shares(cluster: LocalCluster,
                                                                     tmp_path: Path):
    """The first-article plan (fos_agent.runtime.fillplan) followed across lanes, then fair shares.

    The chain: ``sa`` and ``sb`` make ``w`` (only when the test says: ``emit``), ``m1`` makes
    ``m`` from ``w``, ``c`` makes ``f`` from ``w`` and ``m``. The first ``f`` takes two ``w``:
    one two stages deep (through ``m``, due first: the plan gives it to ``sa``) and one for
    ``c`` itself (``sb``). ``c`` registers first and takes ``sa``, the first supplier by id,
    as its first supplier, and ``m1`` then takes ``sb``: both planned deliveries cross the
    flow's lanes, so each consumer must ask its backup, and each supplier must serve a backup
    consumer before its own. The consumers long-poll their first supplier for a minute, so
    whatever they get from the other one came through the plan.
    """
    def agent(node: str, produces: str, *requires: str, **kw: object) -> Agent:
        return Agent(f"fp-{node}", ItemReq(produces, 1), [ItemReq(r, 1) for r in requires],
                     coordinators=cluster.grpc_addresses, data_dir=tmp_path / node,
                     **kw)  # type: ignore[arg-type]

    sa, sb = agent("sa", "fpw"), agent("sb", "fpw")  # no stage: they make batches on emit()
    m1 = agent("m1", "fpm", "fpw", cycle_s=0.05, settings=HOLD_FIRST)
    c = agent("c", "fpf", "fpw", "fpm", cycle_s=0.05, settings=HOLD_FIRST)
    async with sa, sb, c, m1:
        fair_a, fair_b = sa._service.fair, sb._service.fair  # type: ignore[union-attr]

        def first(agent: Agent) -> str:
            ranked = agent.flow.ranked_suppliers("fpw")
            return ranked[0].node_id if len(ranked) == 2 else ""

        await eventually(lambda: (first(c), first(m1)) == ("fp-sa", "fp-sb"),
                         what="the flow's lanes")
        await eventually(lambda: (fair_a.plan(), fair_b.plan()) == (("fp-m1",), ("fp-c",)),
                         what="the suppliers' plans")
        # each consumer takes its plan at its own first catalog read, which may come after
        # the suppliers' (its flow settles later: it registered later)
        await eventually(lambda: (list(c.fill.buy.get("fpw", ())),
                                  list(m1.fill.buy.get("fpw", ()))) == (["fp-sb"], ["fp-sa"]),
                         what="the consumers' plans")
        # each consumer waits at both suppliers: its first one, and the planned one
        await eventually(lambda: {"fp-c", "fp-m1"} <= fair_a.waiting().keys()
                         and {"fp-c", "fp-m1"} <= fair_b.waiting().keys(),
                         what="long-polls at both suppliers")
        # sb's own consumer m1 ranks first there by fair share (its product is further
        # from the final one), but the plan gives sb's first batch to c
        assert fair_b.priority("fp-m1") > fair_b.priority("fp-c")
        made_b = await sb.emit(None)
        await eventually(lambda: c.engine.node.inbound(made_b.batch_id), what="sb -> c")
        made_a = await sa.emit(None)
        await eventually(lambda: m1.engine.node.inbound(made_a.batch_id), what="sa -> m1")
        assert (fair_a.plan(), fair_b.plan()) == ((), ())
        # the fetcher takes the planned batch off its plan once the receipt is durable: the
        # inbound record is visible a WAL commit earlier
        await eventually(lambda: not c.fill.buy["fpw"] and not m1.fill.buy["fpw"],
                         what="the consumers' planned buys done")
        assert c.metrics["planned_requests"] >= 1 and m1.metrics["planned_requests"] >= 1
        await eventually(lambda: c.metrics.get("successful_cycles", 0) >= 1,
                         what="the first product")
        # the plan is spent: sa's next batch goes to its own consumer by fair share
        made = await sa.emit(None)
        await eventually(lambda: c.engine.node.inbound(made.batch_id), what="sa -> c")
    report = audit([tmp_path / n for n in ("sa", "sb", "m1", "c")])
    assert report.ok, report.summary()
    assert report.unverified == [], report.summary()
