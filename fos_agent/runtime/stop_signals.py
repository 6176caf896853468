"""SIGTERM and SIGINT end a library program with the agent's clean stop.

Without this, SIGTERM (what systemd, Docker and Kubernetes send) kills a program built on
`Agent` / `SyncAgent` at once: no EndWait for its suppliers, no flush of pending
confirmations, and its neighbours see a crash. The agent installs a handler for each stop
signal that is still at its default when it starts (a program that installed its own
keeps it, and ``handle_signals=False`` turns this off), and restores what was there when it
stops. Handlers are only installed from the main thread (Python's rule); with several
agents in one process, the first one started holds them.

What the handler does is the caller's side's business: `Agent` cancels the task that
started it, `SyncAgent` raises `StopSignal` in the main thread; either way the ``with`` /
``async with`` block ends, the held cycle is released (the inputs stay QUEUED in the WAL:
a hold is never written), the stop runs and the block's exception is swallowed, so the
program goes on after the block and exits 0.

The handler does no logging: it may run while the interrupted code holds the logging lock.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from fos_agent.runtime.settings import AgentSettings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LEAVE_TIMEOUT_S = 2.0  # a clean stop waits at most this for the coordinator to take its Leave


class StopSignal(SystemExit):
    """Raised in a `SyncAgent` program's main thread at SIGTERM/SIGINT. The ``with`` block
    swallows it after the clean stop; outside one it exits the program with status 0."""

    def __init__(self, signum: int) -> None:
        super().__init__(0)
        self.signum = signum


def _replaceable(handler: Any) -> bool:
    if handler in (signal.SIG_DFL, signal.default_int_handler):
        return True
    # asyncio.run's own Ctrl-C handler (a partial of Runner._on_sigint): it would end the
    # program with KeyboardInterrupt after cancelling the main task, not with a clean stop
    func = getattr(handler, "func", None)
    return getattr(func, "__name__", "") == "_on_sigint"


class SignalHook:
    """``on_signal(signum)`` for the stop signals still at their default, until restored.
    After the first signal (or ``stopping()``), later ones are ignored: a stop under way
    is bounded and a second SIGTERM from an impatient supervisor must not cut it short."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self.on_signal = on_signal
        self.received: int | None = None
        self._stopping = False
        self._detached = False  # restored from another thread: pass signals on
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.restore()
        self.received, self._stopping, self._detached = None, False, False
        for sig in STOP_SIGNALS:
            previous = signal.getsignal(sig)
            if _replaceable(previous):
                signal.signal(sig, self._handle)
                self._previous[sig] = previous

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def stopping(self) -> None:
        self._stopping = True

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._detached = True  # only the main thread may set handlers
            return
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._detached:  # the agent is gone: what was there before takes the signal
            previous = self._previous.get(signum, signal.SIG_DFL)
            if callable(previous):
                previous(signum, frame)
                return
            signal.signal(signum, previous)
            os.kill(os.getpid(), signum)
            return
        if self._stopping or self.received is not None:
            return
        self.received = signum
        self.on_signal(signum)


def stop_bound_s(settings: AgentSettings) -> float:
    """The longest a clean stop can take: every step is bounded by ``stop_step_s`` (closing
    the WAL by 6x, telling the coordinator we leave by LEAVE_TIMEOUT_S), the fetchers'
    grace by a request in flight. A supervisor's stop
    timeout (systemd TimeoutStopSec) should be above it."""
    grace = settings.rpc_timeout + settings.fetch.long_poll_ms / 1000 + 1
    leave = min(LEAVE_TIMEOUT_S, settings.coordinator_timeout, settings.stop_step_s)
    return grace + leave + 8 * settings.stop_step_s + 6 * settings.stop_step_s
