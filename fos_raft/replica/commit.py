"""Committing one pysyncobj call from asyncio: submit it with a callback that hops back into
the loop, and re-submit after every failure (unexpected ones are logged) until a deadline.

Re-submitting a coordinator command is safe: it carries the same request id, so a repeat
whose first attempt did commit is deduplicated by `state.apply`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON

from fos_raft.replica.mailbox import post_to_loop
from fos_raft.runtime.logging import get_logger

# Same logger name as before the split: log consumers filter on it.
log = get_logger("fos_raft.replica.core")

# pysyncobj failures after which the same request (same id, so deduplicated) is retried.
_RETRYABLE = {
    FAIL_REASON.QUEUE_FULL,
    FAIL_REASON.MISSING_LEADER,
    FAIL_REASON.DISCARDED,
    FAIL_REASON.NOT_LEADER,
    FAIL_REASON.LEADER_CHANGED,
    FAIL_REASON.UNKNOWN_OUTCOME,
    FAIL_REASON.REQUEST_DENIED,  # membership: another change is still in progress
}
_ATTEMPT_TIMEOUT = 2.0  # re-submit (deduplicated) if pysyncobj reports nothing for this long


async def commit_with_retry(
    timeout: float, call: Callable[[Any], None], give_up: Callable[[str], Exception]
) -> Any:
    """Run ``call(callback)`` until pysyncobj reports success and return its result; when
    ``timeout`` passes, raise ``give_up(last error name)``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    last_error = "no attempt"
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise give_up(last_error)
        future: asyncio.Future[tuple[Any, Any]] = loop.create_future()

        def callback(res: Any, err: Any, future: asyncio.Future[Any] = future) -> None:
            post_to_loop(loop, _resolve, future, (res, err))  # see fos_raft.replica.mailbox

        call(callback)
        try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            async with asyncio.timeout(min(remaining, _ATTEMPT_TIMEOUT)):
                res, err = await asyncio.shield(future)
        except TimeoutError:
            last_error = "timed out waiting for commit"
            continue
        if err == FAIL_REASON.SUCCESS:
            return res
        last_error = _fail_name(err)
        if err not in _RETRYABLE:
            log.warning("unexpected pysyncobj failure; retrying", error=last_error)
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.025)  # a new leader is usable within one period


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail_name(err: Any) -> str:
    for name in dir(FAIL_REASON):
        if not name.startswith("_") and getattr(FAIL_REASON, name) == err:
            return name
    return str(err)
