"""Group commit: the asyncio front of a `Wal`.

Callers that arrive while a transaction is being synced on the WAL's thread are queued and
go together into the next transaction, in arrival order; a caller's future resolves only
after its own group and every earlier group are durable (an empty group therefore works as
a barrier: see the ordering rule in fos_agent.protocol.machine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from fos_agent.protocol.records import Write
from fos_agent.storage.wal import CommitFailed, Wal


class GroupCommitter:
    """asyncio front of a Wal: concurrent ``commit`` calls share synced transactions.

    While one transaction is being synced on the WAL's thread, new callers queue up; the next
    transaction takes all of them (up to ``max_writes`` records), so N concurrent writers
    cost far fewer than N fsyncs. Callers resolve in arrival order. After any failure
    (a refused group or an LMDB error) the committer refuses everything else with
    CommitFailed: the protocol state is then ahead of the disk and the agent must recover
    (``Node.recover`` from ``wal.load()``, new GroupCommitter), as after a crash.
    """

    def __init__(self, wal: Wal, *, max_writes: int = 4096) -> None:
        self.wal = wal
        self.max_writes = max_writes
        self._pending: list[tuple[Sequence[Write], asyncio.Future[None]]] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    def commit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        """Queue ``writes`` NOW (at call time, so the order of calls is the order of
        commits) and return a future that resolves when they and everything queued before
        are durable. It raises InvalidTransition if this group was refused, CommitFailed or
        the LMDB error if the transaction failed (then the in-memory protocol state must be
        rebuilt from the WAL). Must be called from the event loop's thread."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            fut.set_exception(CommitFailed(f"WAL committer stopped after a failure: "
                                           f"{self._failed}"))
            return fut
        self._pending.append((tuple(writes), fut))
        if not self._running:
            self._running = True
            self._task = asyncio.create_task(self._drain())
        return fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                take, count = 0, 0
                while take < len(self._pending) and (take == 0 or count < self.max_writes):
                    count += len(self._pending[take][0])
                    take += 1
                batch, self._pending = self._pending[:take], self._pending[take:]
                groups = [writes for writes, _ in batch]
                try:
                    if count:
                        results = await loop.run_in_executor(
                            self.wal.executor, self.wal.commit_groups, groups)
                    else:  # only barriers: everything earlier is already durable
                        results = [None] * len(batch)
                except Exception as e:
                    results = [e] * len(batch)
                for (_, fut), error in zip(batch, results, strict=True):
                    if error is not None and self._failed is None:
                        self._failed = error
                    if fut.done():  # the caller was cancelled; its writes are durable anyway
                        continue
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
                if self._failed is not None:  # later groups may depend on the failed one
                    rest, self._pending = self._pending, []
                    for _, fut in rest:
                        if not fut.done():
                            fut.set_exception(CommitFailed(f"not written: {self._failed}"))
        finally:
            self._running = False

    async def aclose(self) -> None:
        """Wait for every queued group to finish."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
