"""Helpers for the agent tests: polling with deadlines, raw peer stubs, process cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc.aio

from fos_pb import agent_pb2_grpc
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

# Generous: the machine has 2 cores shared with other engineers' test runs.
DEADLINE_S = 20.0


async def eventually(cond: Callable[[], Any], timeout: float = DEADLINE_S,
                     what: str = "condition", interval: float = 0.02) -> Any:
    """Poll ``cond`` (sync or async) until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def wait_until(cond: Callable[[], Any], timeout: float = DEADLINE_S, what: str = "condition",
               interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextlib.asynccontextmanager
async def peer_stub(address: str) -> Any:
    keep_grpc_aio_running()  # see fos_raft.runtime.grpc_runtime
    channel = grpc.aio.insecure_channel(address)
    try:
        yield agent_pb2_grpc.AgentStub(channel)
    finally:
        await channel.close()


def agent_command() -> list[str]:
    script = Path(sys.executable).parent / "fos-agent"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fos_agent.cli"]


class Procs:
    """Processes a test started; every one is ended by its own PID, even on failure."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1",
                                         # SIGABRT dumps every thread's stack (terminate)
                                         "PYTHONFAULTHANDLER": "1"})
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def terminate(self, name: str, timeout: float = 20.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # a stop that hangs is a bug: leave its stacks where the failure shows them
                os.kill(proc.pid, signal.SIGABRT)
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                sys.stderr.write(f"{name} ignored SIGTERM for {timeout:g} s; its log ends:\n"
                                 f"{self.log_tail(name, 120)}\n")
        return int(proc.returncode)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def __iter__(self) -> Iterator[str]:
        return iter(self.procs)

