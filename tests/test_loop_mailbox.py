"""``post_to_loop``: another thread's calls into a stalled loop run in order, and a SIGTERM
sent meanwhile is still handled. With plain ``call_soon_threadsafe`` the signal is lost
(asyncio delivers it through the same self-pipe, which fills up): the baseline case shows
that the test can fail. Each case runs in its own interpreter (it signals itself)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import asyncio, os, signal, sys, threading
    from fos_raft.replica.mailbox import post_to_loop

    async def main(mode, n):
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, got.set)
        ran = []

        def flood():  # another thread, while the loop is stalled
            for i in range(n):
                if mode == "mailbox":
                    post_to_loop(loop, ran.append, i)
                else:
                    loop.call_soon_threadsafe(ran.append, i)
            os.kill(os.getpid(), signal.SIGTERM)

        def stall():
            thread = threading.Thread(target=flood)
            thread.start()
            thread.join()

        loop.call_soon(stall)
        try:
            async with asyncio.timeout(2):
                await got.wait()
        except TimeoutError:
            print("signal lost")
            return
        await asyncio.sleep(0)
        print("signal handled", "in order" if ran == list(range(n)) else f"ran {len(ran)}")

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


def run(mode: str, n: int) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(n)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("n", [10, 1000, 5000])
def test_posted_calls_run_in_order_and_the_signal_is_handled(n: int):
    assert run("mailbox", n) == "signal handled in order"


def test_plain_call_soon_threadsafe_loses_the_signal():
    assert run("plain", 20000) == "signal lost"  # far past any default socket buffer
