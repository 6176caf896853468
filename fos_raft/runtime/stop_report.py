"""Make a clean stop that hangs explain itself.

Our processes stop cleanly on SIGTERM/SIGINT within a second or two. A stop that takes far
longer is a bug, and the supervisor (systemd, the harness, a test) will end it with SIGKILL,
which leaves nothing to read. `wait_for_stop_signal` logs the signal and arms two reports,
both written to stderr if the process is still alive ``after_s`` seconds later:

- every thread's Python stack, from faulthandler's watchdog thread, which works even when
  the event loop's thread is blocked inside a C call;
- every pending asyncio task's await chain, from the loop itself, which shows where a
  stop that still runs its loop is waiting.

A process that exits in time prints neither.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys

from fos_raft.runtime.logging import get_logger

STOP_REPORT_AFTER_S = 10.0

log = get_logger("fos.stop")


async def wait_for_stop_signal(after_s: float = STOP_REPORT_AFTER_S) -> None:
    """Return at the first SIGTERM or SIGINT; from then on a slow stop is reported."""
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def _on_signal(sig: int) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)
    sig = await received
    log.info("stop signal", signal=signal.Signals(sig).name)
    arm_stop_report(after_s)


def arm_stop_report(after_s: float = STOP_REPORT_AFTER_S) -> None:
    """From now on, if the process is still running ``after_s`` seconds later, write every
    thread's stack and every pending task's await chain to stderr (once)."""
    faulthandler.dump_traceback_later(after_s, exit=False, file=sys.stderr)
    asyncio.get_running_loop().call_later(after_s, _report_tasks, after_s)


def _report_tasks(after_s: float) -> None:
    lines = [f"clean stop still running after {after_s:g} s; pending tasks:"]
    for task in asyncio.all_tasks():
        lines.append(f"  {task.get_name()}:")
        lines.extend(f"    {where}" for where in await_chain(task.get_coro()))
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def await_chain(coro: object, limit: int = 30) -> list[str]:
    """Where a suspended coroutine waits, outermost first: its frame, then the frame of what
    it awaits, and so on (Task.print_stack shows only the outermost frame)."""
    chain: list[str] = []
    while coro is not None and len(chain) < limit:
        frame = (getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                 or getattr(coro, "ag_frame", None))
        if frame is None:
            chain.append(repr(coro)[:200])
            break
        code = frame.f_code
        chain.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return chain
