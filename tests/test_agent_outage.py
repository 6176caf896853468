"""Agents keep trading while the whole coordinator cluster is down (docs/architecture.md):
on the last flow they saw, and across an agent restart (the flow saved in its data dir);
when the cluster is back, the restarted agent's new address reaches the catalog and
the suspicion of a neighbour that died meanwhile is delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_util import eventually

from fos_agent import Agent, ItemReq
from fos_agent.audit import audit
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.cli.launcher import LocalCluster


async def test_trading_goes_on_without_coordinators_and_catches_up(tmp_path: Path):
    cluster = LocalCluster(3, tmp_path / "coord")
    coords = cluster.grpc_addresses
    src = Agent("o-src", ItemReq("oa", 1), coordinators=coords, data_dir=tmp_path / "o-src",
                cycle_s=0.05)
    spare = Agent("o-spare", ItemReq("oa", 1), coordinators=coords,
                  data_dir=tmp_path / "o-spare", cycle_s=0.05)
    sink = Agent("o-sink", ItemReq("ob", 1), (ItemReq("oa", 1),), coordinators=coords,
                 data_dir=tmp_path / "o-sink", cycle_s=0.05)
    again: Agent | None = None
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.wait_for_leader, 30)
        for agent in (src, spare, sink):
            await agent.start()
        await eventually(lambda: len(sink.flow.ranked_suppliers("oa")) == 2, what="flow")
        await eventually(lambda: sink.metrics["successful_cycles"] >= 3, what="trading")
        for i in range(3):  # the whole cluster dies
            await asyncio.to_thread(cluster.kill, i)
        base = sink.metrics["batches_received"]
        await eventually(lambda: sink.metrics["batches_received"] >= base + 10,
                         what="trading with no coordinator")
        # a restart during the outage: the saved flow, a new port, trading at once
        old_address = sink.address
        await sink.stop()
        again = Agent("o-sink", ItemReq("ob", 1), (ItemReq("oa", 1),), coordinators=coords,
                      data_dir=tmp_path / "o-sink", cycle_s=0.05)
        await asyncio.wait_for(again.start(), 20)
        assert again.address != old_address and again.flow.version == sink.flow.version
        await eventually(lambda: again.metrics["batches_received"] >= 5,
                         what="the restarted agent trading on its saved flow")
        await spare.stop()  # a neighbour dies while nobody can be told
        await eventually(lambda: again.metrics["suspicions_reported"] == 0
                         and "o-spare" in again.detector.suspected(), what="suspicion")
        await asyncio.to_thread(cluster.start)  # the cluster comes back

        async def catalog_address() -> str:
            async with CoordinatorClient(coords, timeout=2.0) as client:
                try:
                    hood = (await client.get_flow("o-sink")).neighbourhood
                except CoordinatorError:
                    return ""
                return hood.spec.address

        await eventually(lambda: catalog_address(), what="cluster answering", timeout=30)
        await eventually(lambda: _equal(catalog_address(), again.address),
                         what="the new address registered", timeout=30)
        await eventually(lambda: ("o-spare", "MARKED_DOWN") in again.detector.outcomes
                         or ("o-spare", "ALREADY_DOWN") in again.detector.outcomes,
                         what="the suspicion delivered after the outage", timeout=30)
        await eventually(lambda: [s.node_id for s in again.flow.ranked_suppliers("oa")]
                         == ["o-src"], what="flow without the dead neighbour", timeout=30)
    finally:
        for agent in (again, sink, spare, src):
            if agent is not None:
                await agent.stop()
        await asyncio.to_thread(cluster.stop)
    report = audit([tmp_path / n for n in ("o-src", "o-spare", "o-sink")])
    assert report.ok, report.summary()


async def _equal(value: object, expected: str) -> bool:
    return await value == expected  # type: ignore[misc]
