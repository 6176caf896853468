"""The simulated stage over a real LMDB WAL (no gRPC): pacing, slot accounting,
backpressure and the input room its fetchers buy for; the fetchers' target rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from agent_util import eventually

from fos_agent.core.engine import Engine
from fos_agent.core.metrics import Metrics
from fos_agent.protocol.machine import NodeConfig
from fos_agent.protocol.messages import OfferBatch
from fos_agent.protocol.records import Batch
from fos_agent.runtime.inputs import FetchSettings, InputFetcher
from fos_agent.runtime.stage import Stage
from fos_raft.model import ItemReq

WOOD, NAILS = ItemReq("wood", 1), ItemReq("nails", 1)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    config = NodeConfig("frame-1", ItemReq("frame", 1), (WOOD, NAILS), immediate_arrival=True)
    eng = Engine(tmp_path / "wal", config, Metrics("frame-1"))
    eng.open()
    try:
        yield eng
    finally:
        await eng.close()


_seq = iter(range(1, 10_000))


async def deliver(engine: Engine, *items: str) -> None:
    """Goods arrive (a supplier's offer is always taken): one batch of each item."""
    for item in items:
        n = next(_seq)
        batch = Batch(f"{item}-s:{n}", item, 1, f"{item}-s", n)
        await engine.step(OfferBatch(f"{item}-s", "frame-1", batch))


async def run_stage(stage: Stage, cycle_s: float) -> asyncio.Task[None]:
    return asyncio.ensure_future(stage.run_simulated(cycle_s))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_work_starts_when_the_inputs_arrive_not_at_a_fixed_tick(engine: Engine):
    # with a 30 s cycle, a fixed-phase tick would look at the inputs only 30 s after the
    # start; the stage must take them as soon as they are all there
    stage = Stage(engine, engine.metrics, output_cap=2, is_sink=lambda: False)
    task = await run_stage(stage, cycle_s=30.0)
    try:
        await deliver(engine, "wood")
        await asyncio.sleep(0.05)
        assert not engine.node.held  # one input missing: nothing held
        await deliver(engine, "nails")
        await eventually(lambda: len(engine.node.held) == 2, timeout=5.0, what="work starts")
        # the cycle in progress does not count: the stage buys the next one's meanwhile
        assert stage.input_room() == 2
    finally:
        await stop(task)
    assert not engine.node.held  # cancelled mid-work: the inputs are released, not lost
    assert engine.node.inbound_queued_counts() == {"wood": 1, "nails": 1}
    assert engine.metrics["successful_cycles"] == 0


async def test_slots_without_work_count_as_skipped_and_each_cycle_produces(engine: Engine):
    cycle_s = 0.05
    stage = Stage(engine, engine.metrics, output_cap=100, is_sink=lambda: False)
    m = engine.metrics
    task = await run_stage(stage, cycle_s)
    try:
        await eventually(lambda: m["skipped_cycles"] >= 3, what="idle slots counted")
        assert m["successful_cycles"] == 0 and m["total_cycles"] == m["skipped_cycles"]
        # nothing here: each idle slot is put down to the recipe's first missing input
        assert m["cycles_waiting_for:wood"] == m["skipped_cycles"]
        await deliver(engine, "wood")
        skipped = m["skipped_cycles"]
        await eventually(lambda: m["skipped_cycles"] >= skipped + 2, what="more idle slots")
        assert m.get("cycles_waiting_for:nails", 0) >= 1  # wood is here now: nails
        await deliver(engine, "nails")
        for _ in range(2):
            await deliver(engine, "wood", "nails")
        await eventually(lambda: m["successful_cycles"] == 3, what="three cycles")
        assert engine.node.queued_outbound_count == 3
        assert engine.node.inbound_queued_counts() == {}
    finally:
        await stop(task)
    assert m["total_cycles"] == m["successful_cycles"] + m["skipped_cycles"]
    assert m["skipped_cycles"] == m.get("cycles_blocked", 0) + sum(
        v for k, v in m.items() if k.startswith("cycles_waiting_for:"))


async def test_a_full_output_blocks_work_and_the_room_limits_buying(engine: Engine):
    stage = Stage(engine, engine.metrics, output_cap=1, is_sink=lambda: False)
    assert stage.input_room() == 1
    m = engine.metrics
    task = await run_stage(stage, 0.02)
    try:
        for _ in range(2):
            await deliver(engine, "wood", "nails")
        await eventually(lambda: m["successful_cycles"] == 1, what="one cycle")
        await asyncio.sleep(0.2)  # ten slots: the full output keeps the second set unused
        assert m["successful_cycles"] == 1 and stage.input_room() == 0
        assert engine.node.inbound_queued_counts() == {"wood": 1, "nails": 1}
        assert m["cycles_blocked"] >= 5  # the idle slots say why
    finally:
        await stop(task)
    sink = Stage(engine, engine.metrics, output_cap=1, is_sink=lambda: True)
    assert sink.input_room() is None and not sink.output_full()  # a sink has no cap


@pytest.mark.parametrize(
    ("prefetch", "scarcest_other", "room", "target"),
    [
        (2, None, None, 2),  # the only input, a sink
        (2, 0, None, 1),  # another input is missing: one batch, no hoarding
        (3, 1, None, 2),
        (2, 5, 1, 1),  # one more cycle fits in the output buffer
        (2, 5, 0, 0),  # blocked output: buy nothing
        (2, None, 3, 2),
    ],
)
def test_fetch_target(prefetch: int, scarcest_other: int | None, room: int | None,
                      target: int):
    unused = SimpleNamespace(node_id="frame-1")
    fetcher = InputFetcher(
        "wood", unused, unused, unused, lambda: unused, unused, Metrics("x"),  # type: ignore[arg-type]
        FetchSettings(prefetch=prefetch), lambda: frozenset(),
        others_buffered=lambda item: scarcest_other, room=lambda: room)
    assert fetcher.target() == target
