"""ReadIndex (fos_raft/replica/read_index.py) without Raft: barrier rounds are shared by the
reads that arrived before they were submitted, never by earlier-submitted ones, and a
failing round fails only reads whose deadline has passed."""

from __future__ import annotations

import asyncio

import pytest

from fos_raft.replica.read_index import ReadIndex


class Barriers:
    """A fake commit: each round waits until the test releases it."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[None]] = []
        self.fail = False

    async def commit(self, timeout: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started.append(done)
        async with asyncio.timeout(timeout):
            await done
        if self.fail:
            raise RuntimeError("no leader")


def give_up(reason: str) -> Exception:
    return TimeoutError(reason)


async def until(predicate, what: str) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0)


def test_concurrent_reads_share_one_round_and_late_ones_wait_for_the_next() -> None:
    async def scenario() -> None:
        barriers = Barriers()
        index = ReadIndex(barriers.commit, give_up)
        first = [asyncio.ensure_future(index.confirm(5)) for _ in range(3)]
        await until(lambda: len(barriers.started) == 1, "first round")
        # Arrives while round 1 is in flight: round 1 was submitted before it, so it must
        # not be answered by round 1.
        late = asyncio.ensure_future(index.confirm(5))
        await asyncio.sleep(0)
        barriers.started[0].set_result(None)
        await asyncio.gather(*first)
        await asyncio.sleep(0)
        assert not late.done()
        await until(lambda: len(barriers.started) == 2, "second round")
        barriers.started[1].set_result(None)
        await late
        assert index.rounds == 2

    asyncio.run(scenario())


def test_a_failed_round_is_retried_within_the_deadline_and_gives_up_after() -> None:
    async def scenario() -> None:
        barriers = Barriers()
        barriers.fail = True
        index = ReadIndex(barriers.commit, give_up)
        read = asyncio.ensure_future(index.confirm(5))
        await until(lambda: len(barriers.started) == 1, "first round")
        barriers.started[0].set_result(None)  # fails
        await until(lambda: len(barriers.started) == 2, "a retry")
        barriers.fail = False
        barriers.started[1].set_result(None)
        await read
        with pytest.raises(TimeoutError, match="read barrier"):
            await index.confirm(0.05)  # nobody releases it

    asyncio.run(scenario())
