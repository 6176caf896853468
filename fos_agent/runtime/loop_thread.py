"""A private event loop in a background thread: where an agent's networking lives.

An agent's gRPC server, health answers, failure detector, watch, fetchers and outbox run
here, not on the caller's loop, so a cycle that blocks the caller (a PLC handshake, a
``time.sleep``, a slow synchronous driver) does not silence the node: a blocking call
releases the GIL, and this thread keeps answering pings and health probes meanwhile.
The caller reaches the loop with ``submit`` (a concurrent future: ``.result()`` from
synchronous code, ``asyncio.wrap_future`` from another loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopClosed(RuntimeError):
    """Work was submitted to a loop thread that has stopped."""


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # a stop step left behind (see stop_steps) may still hold tasks: closing the loop
        # under them would only turn them into warnings, so a loop with tasks stays open
        if not asyncio.all_tasks(self.loop):
            self.loop.close()

    def is_current(self) -> bool:
        """True when called from this thread (the work can simply be awaited)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise LoopClosed(f"{self.name}: the agent is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop (fire and forget); nothing once closed."""
        if not self._closed:
            self.loop.call_soon_threadsafe(callback, *args)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for its thread (bounded: a wedged loop is left behind,
        a daemon thread, rather than hanging the caller)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.is_current():
                self._thread.join(timeout)
        elif not self.loop.is_closed():
            self.loop.close()


class OnPrivateLoop:
    """The bridge an agent facade uses: with a `LoopThread` started, its public calls run
    their coroutine there and await the result from the caller's loop; without one (or
    from the loop thread itself) they simply await it."""

    node_id: str
    _runner: LoopThread | None
    _private_loop_wanted: Callable[[], bool]

    def _open_runner(self) -> None:
        if self._runner is None and self._private_loop_wanted():
            self._runner = LoopThread(f"fos-agent-{self.node_id}")
            self._runner.start()

    def _close_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()

    async def _on_core(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the agent's own loop and await it from the caller's."""
        runner = self._runner
        if runner is None or runner.is_current():
            return await coro
        return await asyncio.wrap_future(runner.submit(coro))

    def _core_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the agent's loop soon, from any thread."""
        if self._runner is None or self._runner.is_current():
            callback(*args)
        else:
            self._runner.call_soon(callback, *args)
