"""A source stage whose cycle code blocks its event loop (a stand-in for a PLC handshake),
run as its own process by tests/test_agent_liveness.py.

    python tests/blocking_stage.py NODE ITEM COORDS DATA_DIR MARKERS BLOCK_S

After two batches it writes MARKERS/blocking, blocks the loop with ``time.sleep(BLOCK_S)``
inside ``async for inputs in agent.cycles()``, writes MARKERS/unblocked and goes on
producing until SIGTERM (clean stop, exit 0).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from fos_agent import Agent, ItemReq


async def main(node: str, item: str, coords: str, data_dir: str, markers: Path,
               block_s: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    agent = Agent(node, ItemReq(item, 1), coordinators=coords.split(","), data_dir=data_dir)

    async def produce() -> None:
        made = 0
        async for inputs in agent.cycles():
            if made == 2:
                (markers / "blocking").write_text(str(time.time()))
                time.sleep(block_s)  # the point: user code blocks the loop
                (markers / "unblocked").write_text(str(time.time()))
            await agent.emit(inputs)
            made += 1

    async with agent:
        (markers / "ready").write_text(agent.address)
        work = asyncio.ensure_future(produce())
        await stop.wait()
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)


if __name__ == "__main__":
    node, item, coords, data_dir, markers, block_s = sys.argv[1:7]
    asyncio.run(main(node, item, coords, data_dir, Path(markers), float(block_s)))
