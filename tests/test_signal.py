"""``Signal``: the agent's wake-up primitive. Every loop of the agent (stage, fetchers,
outbox, shares) waits on it, and a stop cancels those loops, so a cancel must never be lost.

On Python 3.11 ``asyncio.wait_for`` returns the result instead of raising when a cancel lands
while the awaited event fires (cpython gh-86296). Built on it, the loops below survived every
cancel that landed 0-2 loop steps after a notify; an agent's stop cancels its stage task and
waits for it, so a busy agent's stop could wait forever (CI: fos_agent.host ignored SIGTERM)."""

from __future__ import annotations

import asyncio

import pytest

from fos_agent.core.engine import Signal


async def test_notify_wakes_and_silence_times_out():
    signal = Signal()
    ticket = signal.ticket()
    assert await Signal.wait_ticket(ticket, 0.01) is False
    signal.notify()
    assert await Signal.wait_ticket(ticket, 0.01) is True  # notified since it was taken
    waiter = asyncio.ensure_future(signal.wait(5.0))
    await asyncio.sleep(0)
    signal.notify()
    assert await waiter is True
    assert await signal.wait(0.01) is False


@pytest.mark.parametrize("use_ticket", [True, False])
async def test_a_cancel_landing_as_the_signal_fires_is_never_lost(use_ticket: bool):
    lost = []
    for steps in range(200):
        signal = Signal()

        async def loop_forever(s: Signal = signal) -> None:
            while True:
                if use_ticket:
                    await Signal.wait_ticket(s.ticket(), 1.0)
                else:
                    await s.wait(1.0)

        task = asyncio.ensure_future(loop_forever())
        await asyncio.sleep(0)
        signal.notify()
        for _ in range(steps % 6):  # the cancel lands 0-5 loop steps after the notify
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        if not done:
            lost.append(steps % 6)
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    assert not lost, f"cancels lost at these loop steps after notify: {sorted(set(lost))}"
