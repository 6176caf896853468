"""Waiting for a harness's start file without waking up for it.

A simulated stage starts its cycles when ``--start-file`` exists, so every stage of an
experiment starts at the same moment. Each agent looked every 50 ms: 20 event-loop
wake-ups a second per host process (about 5 ms CPU a second each on the test machine),
for the whole start-up of a 300-agent run, while the machine is at its busiest (issue 14).

On Linux the look is an inotify watch on the file's directory, read by the event loop:
no wake-up until something is created there; elsewhere (or without inotify) it polls.
Either way the agents of one event loop share one look. A check every ``SAFETY_S`` backs
the watch up (a file system that sends no events).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

POLL_S = 0.05  # how late a polling stage may see the file (sources start within this)
SAFETY_S = 1.0  # a watched file is also looked for this often
_IN_ATTRIB, _IN_MOVED_TO, _IN_CREATE = 0x4, 0x80, 0x100

# (event loop id, path) -> the look; an entry leaves when its look ends (found, or
# cancelled as its loop closes)
_looks: dict[tuple[int, str], asyncio.Task[None]] = {}


def _watch(directory: Path) -> int | None:
    """A non-blocking inotify descriptor watching ``directory`` for new entries, or None
    where inotify is not to be had."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(directory),
                              _IN_CREATE | _IN_MOVED_TO | _IN_ATTRIB) < 0:
        os.close(fd)
        return None
    return fd


async def _look(path: Path, poll_s: float) -> None:
    fd = _watch(path.parent)
    if fd is None:
        while not path.exists():
            await asyncio.sleep(poll_s)
        return
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 65536)  # drain: the events themselves do not matter
        event.set()

    loop.add_reader(fd, readable)
    try:
        while not path.exists():  # the watch is on before this look: nothing is missed
            event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAFETY_S):
                    await event.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def wait_for_start_file(path: str | Path, poll_s: float = POLL_S) -> None:
    """Return once ``path`` exists; the waiters on one event loop share one look."""
    loop = asyncio.get_running_loop()
    key = (id(loop), str(Path(path).absolute()))
    look = _looks.get(key)
    if look is None or look.get_loop() is not loop:
        look = _looks[key] = loop.create_task(_look(Path(key[1]), poll_s))
        look.add_done_callback(lambda done: _looks.pop(key, None) if _looks.get(key) is done
                               else None)
    # shield: a waiter cancelled (its agent stopping) must not cancel the others' look
    await asyncio.shield(look)
