"""Helpers for the agent tests: polling with deadlines, raw peer stubs, process cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio

from fos_agent.records import InState, OutState
from fos_agent.wal import read_wal, wal_path
from fos_pb import agent_pb2_grpc

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
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
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


@dataclass
class WalAudit:
    """Where every batch is, from the WALs of stopped agents."""

    batches: int = 0  # outbound records (every batch ever produced or reclaimed)
    at_supplier: int = 0  # QUEUED at its producer
    received: int = 0  # recorded by its consumer (IN_TRANSIT / QUEUED / CONSUMED there)
    consumed: int = 0
    in_flight: list[str] = field(default_factory=list)  # IN_TRANSIT, unknown to the consumer
    unconfirmed: list[str] = field(default_factory=list)  # consumer has it, supplier not told
    lost: list[str] = field(default_factory=list)  # DELIVERED but not at its consumer
    duplicated: list[str] = field(default_factory=list)  # in two inbound WALs
    strangers: list[str] = field(default_factory=list)  # inbound with no such outbound


def audit_wals(dirs: Iterable[Path]) -> WalAudit:
    """Every batch exactly once: the pair order of DESIGN.md section 5 across all WALs."""
    states = [read_wal(wal_path(d)) for d in dirs]
    outbound = {bid: rec for s in states for bid, rec in s.outbound.items()}
    holders: dict[str, list[tuple[str, InState]]] = {}
    for s in states:
        for bid, rec in s.inbound.items():
            holders.setdefault(bid, []).append((s.node_id, rec.state))
    report = WalAudit(batches=len(outbound))
    for bid, where in holders.items():
        if len(where) > 1:
            report.duplicated.append(bid)
        if bid not in outbound:
            report.strangers.append(bid)
        report.consumed += sum(1 for _, st in where if st is InState.CONSUMED)
    for bid, rec in outbound.items():
        at = [node for node, _ in holders.get(bid, [])]
        if rec.state is OutState.QUEUED:
            report.at_supplier += 1
        elif rec.state is OutState.IN_TRANSIT:
            if rec.to in at:
                report.received += 1
                report.unconfirmed.append(bid)
            else:
                report.in_flight.append(bid)
        elif rec.state is OutState.DELIVERED:
            if rec.to in at:
                report.received += 1
            else:
                report.lost.append(bid)
    return report
