"""grpc.aio shuts its runtime down (joining its poller thread from the event loop) when its
last channel or server is released; that join can hang for good (fos_raft.runtime.grpc_runtime).
Our channels and servers hold the runtime for the life of the process instead. Each case
runs in a fresh interpreter: this one's runtime is already held by earlier tests."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio, gc, sys, threading
import grpc.aio
from fos_raft.security.tls import aio_channel

def pollers():
    return sum(1 for t in threading.enumerate() if "_poll_wrapper" in t.name)

async def main(ours):
    channel = aio_channel("127.0.0.1:1", None) if ours else grpc.aio.insecure_channel("127.0.0.1:1")
    during = pollers()
    await channel.close()
    del channel
    gc.collect()
    print(during, pollers())

asyncio.run(main(sys.argv[1] == "ours"))
"""


def poller_threads(which: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, which], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_grpc_aio_joins_its_poller_when_the_last_channel_goes():
    assert poller_threads("plain") == (1, 0)


def test_our_channels_keep_the_runtime_and_its_poller_for_the_process():
    assert poller_threads("ours") == (1, 1)
