"""One bounded step of an agent's clean stop (``Agent.stop``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

SLOW_STEP_S = 2.0  # a step slower than this is logged at info level


async def bounded_step(work: Awaitable[Any], timeout: float, *, log: Any, step: str) -> None:
    """Await ``work`` for at most ``timeout`` s; re-raise its error. An overrun is logged,
    cancelled and NOT waited for: cancelling a gather waits for its children, and a child
    that ignores the cancel would hold the stop (a timeout context or ``wait_for`` would
    wait along with it)."""
    started = time.monotonic()
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait([task], timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        log.warning("stop step overran; going on", step=step, timeout_s=timeout)
        return
    elapsed = time.monotonic() - started
    if elapsed > SLOW_STEP_S:
        log.info("slow stop step", step=step, seconds=round(elapsed, 2))
    task.result()
