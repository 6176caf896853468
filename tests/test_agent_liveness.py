"""Liveness does not depend on the user's cycle code: a stage process whose cycle blocks its
event loop for 10 s is not declared dead (its neighbour reports no suspicion, the
coordinator's flow never marks it down), because the agent's networking runs on its own
loop thread. Also: ``start()`` against unreachable coordinators fails after the documented
timeout with a message that says so. Real 3-replica cluster, real processes, real gRPC."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from agent_util import Procs, eventually

from fos_agent import Agent, AgentSettings, FosError, ItemReq, StartTimeout, SyncAgent
from fos_raft.cli.launcher import LocalCluster, free_port

SCRIPT = Path(__file__).with_name("blocking_stage.py")
BLOCK_S = 10.0


async def test_a_cycle_blocking_its_loop_10s_is_not_declared_dead(tmp_path: Path):
    cluster = LocalCluster(3, tmp_path / "coord")
    procs = Procs(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    consumer = Agent("lv-con", ItemReq("lvy", 1), (ItemReq("lvx", 1),),
                     coordinators=cluster.grpc_addresses, data_dir=tmp_path / "lv-con",
                     cycle_s=0.05)
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.wait_for_leader, 30)
        procs.start("lv-src", [sys.executable, str(SCRIPT), "lv-src", "lvx",
                               ",".join(cluster.grpc_addresses), str(tmp_path / "lv-src"),
                               str(markers), str(BLOCK_S)])
        await consumer.start()
        await eventually(lambda: (markers / "blocking").exists(), timeout=40,
                         what=f"the stage to block; its log:\n{procs.log_tail('lv-src')}")
        # the whole block: the neighbour keeps seeing it alive and suspects nothing
        seen_down: list[float] = []
        while not (markers / "unblocked").exists():
            if not consumer.flow.alive_of.get("lv-src", False):
                seen_down.append(time.monotonic())
            assert procs.procs["lv-src"].poll() is None, procs.log_tail("lv-src")
            await asyncio.sleep(0.1)
        blocked = float((markers / "unblocked").read_text()) - float(
            (markers / "blocking").read_text())
        assert blocked >= BLOCK_S - 0.5
        received = consumer.metrics["batches_received"]
        await eventually(lambda: consumer.metrics["batches_received"] > received,
                         what="trading after the block")
        assert not seen_down, "the blocked stage was marked down in the flow"
        assert consumer.metrics["suspicions_reported"] == 0
        assert consumer.flow.alive_of.get("lv-src") is True
        assert procs.terminate("lv-src") == 0, procs.log_tail("lv-src")
    finally:
        await consumer.stop()
        procs.stop_all()
        await asyncio.to_thread(cluster.stop)


async def test_start_with_unreachable_coordinators_fails_after_start_timeout(tmp_path: Path):
    settings = replace(AgentSettings(), start_timeout=2.0, coordinator_timeout=0.5)
    agent = Agent("lv-lost", ItemReq("lvz", 1), coordinators=[f"127.0.0.1:{free_port()}"],
                  data_dir=tmp_path / "lv-lost", settings=settings)
    started = time.monotonic()
    with pytest.raises(StartTimeout, match="no coordinator answered within 2 s") as failed:
        await asyncio.wait_for(agent.start(), 30)
    assert 1.5 <= time.monotonic() - started < 20
    assert isinstance(failed.value, FosError)


def test_sync_start_with_unreachable_coordinators_fails_too(tmp_path: Path):
    settings = replace(AgentSettings(), start_timeout=1.0, coordinator_timeout=0.5)
    agent = SyncAgent("lv-lost", ItemReq("lvz", 1), coordinators=[f"127.0.0.1:{free_port()}"],
                      data_dir=tmp_path / "lv-lost", settings=settings)
    with pytest.raises(StartTimeout, match="no coordinator answered within 1 s"):
        agent.start()
    agent.stop()  # a failed start leaves nothing to stop: a no-op
