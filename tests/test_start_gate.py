"""The start file gate shared by the agents of one event loop (fos_agent.runtime.start_gate):
a real inotify watch where Linux gives one, polling otherwise."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from fos_agent.runtime import start_gate
from fos_agent.runtime.start_gate import wait_for_start_file


async def _start_together(gate: Path, waiters: int = 6, poll_s: float = 0.01) -> float:
    """Start ``waiters`` on ``gate``, check they share one look, cancel one, create the
    file; the seconds until the rest saw it."""
    tasks = [asyncio.ensure_future(wait_for_start_file(gate, poll_s=poll_s))
             for _ in range(waiters)]
    await asyncio.sleep(0.2)
    assert not any(t.done() for t in tasks)
    assert len(start_gate._looks) == 1  # six waiters, one look
    tasks[0].cancel()  # one agent stops: the others keep waiting
    await asyncio.gather(tasks[0], return_exceptions=True)
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in tasks[1:])
    created = time.monotonic()
    gate.touch()
    await asyncio.wait_for(asyncio.gather(*tasks[1:]), 5)
    seen = time.monotonic() - created
    assert start_gate._looks == {}  # the finished look is forgotten
    await asyncio.wait_for(wait_for_start_file(gate), 1)  # an existing file: at once
    return seen


@pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")
async def test_a_watched_start_file_is_seen_at_once_without_polling(tmp_path: Path):
    assert start_gate._watch(tmp_path) is not None
    with mock.patch.object(start_gate, "SAFETY_S", 30.0):  # no safety look in this test
        seen = await _start_together(tmp_path / "start")
    assert seen < 1.0  # the watch woke the look, not a poll 30 s away


async def test_without_inotify_the_waiters_share_one_poll(tmp_path: Path):
    with mock.patch.object(start_gate, "_watch", lambda directory: None):
        seen = await _start_together(tmp_path / "start", poll_s=0.01)
    assert seen < 2.0
