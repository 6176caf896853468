"""A frame press as factory software: it imports fos_agent and does real work per cycle.

Each cycle the agent hands the press one batch of wood (held for this cycle); the press
plans how to cut the frame parts out of the planks (first-fit decreasing), logs the plan
and its waste, and emits: the wood is CONSUMED and one batch of frames QUEUED in a single
durable step. The agent does the rest: buying wood from the suppliers the coordinator
assigns (switching to a backup at once if one dies), selling frames, its WAL, recovery.

    python examples/factory_software.py                     # self-contained demo
    python examples/factory_software.py --coordinators 10.0.0.1:7000,10.0.0.2:7000 \\
        --data-dir /var/lib/fos/press-7 --cycles 0          # against a real cluster

The demo starts a one-replica coordinator and a simulated saw (the wood supplier) in
this process, then runs the press for ``--cycles`` cycles (0 = until Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
from pathlib import Path

import structlog

from fos_agent import Agent, ItemReq
from fos_raft.runtime.logging import configure_logging

PLANK_CM = 240
FRAME_PARTS_CM = [120, 120, 80, 80, 60, 60, 45, 45]  # two frames per batch of wood

log = structlog.get_logger("press")


def plank_lengths(batch_id: str, count: int) -> list[int]:
    """Planks vary a little; derive their usable lengths from the batch id (stands in
    for the measurements a real saw line would attach)."""
    digest = hashlib.sha256(batch_id.encode()).digest()
    return [PLANK_CM - digest[i] % 30 for i in range(count)]


def cut_plan(parts: list[int], planks: list[int]) -> tuple[list[list[int]], int] | None:
    """First-fit decreasing: which parts to cut from which plank, and the waste in cm.
    None when the parts do not fit (the cycle's wood is not enough)."""
    free = list(planks)
    plan: list[list[int]] = [[] for _ in planks]
    for part in sorted(parts, reverse=True):
        slot = next((i for i, room in enumerate(free) if room >= part), None)
        if slot is None:
            return None
        free[slot] -= part
        plan[slot].append(part)
    return plan, sum(free)


async def press(agent: Agent, cycles: int) -> None:
    done = 0
    async for inputs in agent.cycles():
        wood = inputs["wood"]
        result = cut_plan(FRAME_PARTS_CM, plank_lengths(wood.batch_id, wood.qty))
        if result is None:
            log.warning("wood too short for a frame set; cycle skipped", wood=wood.batch_id)
            continue  # not emitted: the agent releases the wood for the next cycle
        plan, waste = result
        frames = await agent.emit(inputs)
        done += 1
        log.info("frames made", batch=frames.batch_id, wood=wood.batch_id, plan=plan,
                 waste_cm=waste)
        if cycles and done >= cycles:
            return


async def main(args: argparse.Namespace) -> None:
    base = Path(args.data_dir or tempfile.mkdtemp(prefix="fos-press-"))
    cluster = None
    coordinators = [c for c in args.coordinators.split(",") if c]
    agents: list[Agent] = []
    if not coordinators:  # self-contained demo: a local coordinator and a simulated saw
        from fos_raft.cli.launcher import LocalCluster

        cluster = LocalCluster(1, base / "coordinator")
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        coordinators = cluster.grpc_addresses
        agents.append(Agent("saw-1", ItemReq("wood", 3), coordinators=coordinators,
                            data_dir=base / "saw-1", time_per_batch=0.2))
    press_agent = Agent("press-7", produces=ItemReq("window_frame", 2),
                        requires=[ItemReq("wood", 3)], listen=args.listen,
                        coordinators=coordinators, data_dir=base / "press-7")
    try:
        for agent in agents:
            await agent.start()
        async with press_agent:
            log.info("press ready", address=press_agent.address)
            await press(press_agent, args.cycles)
            log.info("press done", **{k: press_agent.metrics[k] for k in (
                "successful_cycles", "batches_received", "batches_consumed")})
    finally:
        for agent in agents:
            await agent.stop()
        if cluster is not None:
            cluster.stop()
        if not args.data_dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinators", default="", help="ADDR,... (default: a local demo)")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--cycles", type=int, default=5, help="0: run until Ctrl-C")
    parser.add_argument("--log-format", choices=("json", "console"), default=None,
                        help="default: console on a terminal, json otherwise")
    parsed = parser.parse_args()
    configure_logging("press", fmt=parsed.log_format)
    asyncio.run(main(parsed))
