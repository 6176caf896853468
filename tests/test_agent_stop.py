"""A clean stop always ends: a step that hangs, even one that ignores its cancel, is left
behind after ``stop_step_s`` and the rest of the stop still runs (the WAL is closed and its
lock released, so the node restarts on the same data dir at once). Real agents, real
coordinator cluster, real LMDB."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from agent_util import eventually

from fos_agent import Agent, ItemReq
from fos_agent.agent import AgentSettings
from fos_raft.cli.launcher import LocalCluster


async def test_a_hung_stop_step_is_left_behind(tmp_path: Path):
    cluster = LocalCluster(3, tmp_path / "coord")
    # the hung step below is built on this test's loop: share it (private_loop=False)
    settings = replace(AgentSettings(), stop_step_s=0.5, private_loop=False)
    coords = cluster.grpc_addresses
    src = Agent("s-src", ItemReq("sa", 1), coordinators=coords, data_dir=tmp_path / "s-src",
                cycle_s=0.05, settings=settings)
    again: Agent | None = None
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.wait_for_leader, 30)
        await src.start()
        await eventually(lambda: src.metrics["successful_cycles"] >= 2, what="producing")
        assert src.peers is not None
        real_close = src.peers.close
        hung, release = asyncio.Event(), asyncio.Event()

        async def close_that_hangs() -> None:  # a step that hangs and ignores its cancel
            hung.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await release.wait()

        src.peers.close = close_that_hangs  # type: ignore[method-assign]
        started = time.monotonic()
        await asyncio.wait_for(src.stop(), 20)
        took = time.monotonic() - started
        assert hung.is_set() and src.stopped.is_set()
        assert took < 3.0, f"stop took {took:.1f} s"
        release.set()
        await real_close()
        # the WAL was closed and unlocked: the same node starts again on its data dir
        again = Agent("s-src", ItemReq("sa", 1), coordinators=coords,
                      data_dir=tmp_path / "s-src", cycle_s=0.05)
        await asyncio.wait_for(again.start(), 20)
        produced = src.metrics["successful_cycles"]
        await eventually(lambda: again.metrics["successful_cycles"] >= 1, what="restarted")
        assert again.metrics["wal_recovered_batches"] >= min(produced, 1)
    finally:
        for agent in (src, again):
            if agent is not None:
                await agent.stop()
        await asyncio.to_thread(cluster.stop)
