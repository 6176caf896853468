"""A library program (no CLI) run as its own process by tests/test_agent_signals.py: the
stop signals are left to the agent's own handling (the default).

    python tests/signal_stage.py MODE NODE PRODUCES REQUIRES COORDS DATA_DIR MARKERS

MODE is ``sync`` (SyncAgent) or ``async`` (Agent); REQUIRES is an item or ``-`` (a
source). It emits every cycle, except that a consumer's third cycle writes its held batch
ids to MARKERS/held and then works "forever" (a blocking sleep in sync mode, an await in
async mode), so a stop signal lands mid-cycle. After the agent's block it writes
MARKERS/after and returns (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from fos_agent import Agent, ItemReq, SyncAgent

HOLD_AT = 3
WORK_S = 600.0


def run_sync(node: str, produces: ItemReq, requires: list[ItemReq], coords: list[str],
             data_dir: str, markers: Path) -> None:
    with SyncAgent(node, produces, requires, coordinators=coords, data_dir=data_dir) as agent:
        (markers / "ready").write_text(agent.address)
        for n, inputs in enumerate(agent.cycles(), 1):
            if requires and n == HOLD_AT:
                (markers / "held").write_text(json.dumps(list(inputs.ids)))
                time.sleep(WORK_S)  # the physical work, interrupted by the stop signal
            elif not requires:
                time.sleep(0.05)
            agent.emit(inputs)


async def run_async(node: str, produces: ItemReq, requires: list[ItemReq],
                    coords: list[str], data_dir: str, markers: Path) -> None:
    async with Agent(node, produces, requires, coordinators=coords,
                     data_dir=data_dir) as agent:
        (markers / "ready").write_text(agent.address)
        n = 0
        async for inputs in agent.cycles():
            n += 1
            if requires and n == HOLD_AT:
                (markers / "held").write_text(json.dumps(list(inputs.ids)))
                await asyncio.sleep(WORK_S)
            elif not requires:
                await asyncio.sleep(0.05)
            await agent.emit(inputs)


def main(argv: list[str]) -> None:
    mode, node, produces, requires, coords, data_dir, markers = argv
    args = (node, ItemReq(produces, 1), [] if requires == "-" else [ItemReq(requires, 1)],
            coords.split(","), data_dir, Path(markers))
    if mode == "sync":
        run_sync(*args)
    else:
        asyncio.run(run_async(*args))
    (Path(markers) / "after").write_text("the block ended; the program goes on")


if __name__ == "__main__":
    main(sys.argv[1:])
