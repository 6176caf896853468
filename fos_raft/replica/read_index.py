"""Linearizable reads, the fallback: confirm through the Raft leader by a log entry.

Reads normally take a ReadIndex round (fos_raft.replica.read_rounds: no log entry). When a
round fails (leadership lost, a leader that does not answer read-index requests), a read
commits a *barrier*: a no-op ``@replicated`` entry
(`StateMachine.read_barrier`). A follower's barrier is forwarded to the leader; pysyncobj
resolves it once *this* replica has applied the entry. When it resolves:

* a leader of the current term appended the entry after the read arrived, so (Leader
  Completeness) every write acknowledged before the read arrived sits at a lower index;
* this replica has applied that index, so its state reflects all of those writes;
* a deposed leader (paused, partitioned) cannot commit the barrier: the read times out
  UNAVAILABLE instead of answering from an old state.

Barriers are shared: reads that arrive while one is in flight wait for it and then share
the *next* one (a barrier submitted before a read arrived proves nothing for it). Under load
that is one log entry per round trip, not per read. The barrier changes no state and no
digest; it is an ordinary log entry (compacted like the others).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class ReadIndex:
    """Coalesces linearizable-read confirmations into shared barrier rounds.

    ``commit_barrier(timeout)`` commits one barrier and returns once this replica applied it
    (raising on timeout); `confirm` returns once a barrier *submitted after the call* has.
    """

    def __init__(
        self,
        commit_barrier: Callable[[float], Awaitable[None]],
        give_up: Callable[[str], Exception],
    ) -> None:
        self._commit_barrier = commit_barrier
        self._give_up = give_up
        self._arrivals = 0  # reads seen so far; ticket of the newest
        self._covered = 0  # every ticket <= this is confirmed
        self._round: asyncio.Task[None] | None = None
        self.rounds = 0  # barriers committed (bench, tests)

    async def confirm(self, timeout: float) -> None:
        """Wait until a barrier submitted after this call is applied here; raise
        ``give_up(reason)`` if that has not happened within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._arrivals += 1
        ticket = self._arrivals
        last_error = "no barrier committed"
        while self._covered < ticket:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._give_up(last_error)
            if self._round is None or self._round.done():
                self._round = asyncio.ensure_future(self._run_round(remaining))
                # Its readers may all have given up: never log "exception never retrieved".
                self._round.add_done_callback(_retrieve)
            try:
                async with asyncio.timeout(remaining):
                    # shield: a reader that gives up must not cancel the round others share
                    await asyncio.shield(self._round)
            except TimeoutError:
                last_error = "timed out waiting for the read barrier"
            except Exception as exc:  # the round failed: retry while time remains
                last_error = str(exc) or type(exc).__name__

    async def _run_round(self, timeout: float) -> None:
        # Read when the round starts to run: ``commit_barrier`` submits the barrier before
        # its first await, so every ticket <= ``upto`` arrived before the submission.
        upto = self._arrivals
        await self._commit_barrier(timeout)
        self.rounds += 1
        self._covered = max(self._covered, upto)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
