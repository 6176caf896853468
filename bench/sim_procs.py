"""Agent process supervision for fos-sim: start, SIGKILL, restart on the same data dir, stop.

Only processes this module started are ever signalled, always by PID. Each process gets its
own session (so a Ctrl-C in the terminal reaches the harness, which then stops everything in
order) and writes its logs to ``<root>/logs/<node>.log`` (appended across restarts).

An `AgentHost` is one OS process; it runs one agent today. The issue's "Scale" item packs
several agents into one host process: `kill(node)` already answers with every node that died
with the host, so callers account for all of them; only `_argv` needs a multi-agent command.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from fos_raft.model import NodeSpec

log = structlog.get_logger("fos-sim")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the OS reports free now (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def agent_command() -> list[str]:
    """The fos-agent console script next to this interpreter, else the module through it."""
    script = Path(sys.executable).parent / "fos-agent"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from fos_agent.cli import main; sys.exit(main())"]


@dataclass
class AgentHost:
    """One OS process running the agents of ``node_ids``."""

    host_id: str
    node_ids: tuple[str, ...]
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class AgentSupervisor:
    root: Path
    coordinators: Sequence[str]
    cycle_s: float
    command: Sequence[str] = field(default_factory=agent_command)
    extra_args: Sequence[str] = ()
    hosts: dict[str, AgentHost] = field(default_factory=dict)  # host id -> host
    host_of: dict[str, str] = field(default_factory=dict)  # node id -> host id
    specs: dict[str, NodeSpec] = field(default_factory=dict)  # node id -> current spec

    def __post_init__(self) -> None:
        (self.root / "agents").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop_all, 0.0)  # last resort if the caller's finally never ran

    def data_dir(self, node: str) -> Path:
        return self.root / "agents" / node

    def log_path(self, node: str) -> Path:
        return self.root / "logs" / f"{node}.log"

    def wal_dirs(self) -> list[Path]:
        return [self.data_dir(n) for n in sorted(self.specs) if self.data_dir(n).exists()]

    def _argv(self, host: AgentHost) -> list[str]:
        (node,) = host.node_ids  # one agent per process (see the module docstring)
        spec = self.specs[node]
        argv = [
            *self.command,
            "--node-id", node,
            "--listen", spec.address,
            "--coordinators", ",".join(self.coordinators),
            "--data-dir", str(self.data_dir(node)),
            "--produces", f"{spec.produces.item}:{spec.produces.qty}",
            "--cycle-s", f"{self.cycle_s:g}",
        ]  # fmt: skip
        if spec.capacity != 1:
            argv += ["--capacity", str(spec.capacity)]
        if spec.requires:
            argv += ["--requires", ",".join(f"{r.item}:{r.qty}" for r in spec.requires)]
        return argv + list(self.extra_args)

    def _spawn(self, host: AgentHost) -> int:
        for node in host.node_ids:
            self.data_dir(node).mkdir(parents=True, exist_ok=True)
        if host.log_file is None:
            host.log_file = open(self.log_path(host.host_id), "ab")  # noqa: SIM115
        host.starts += 1
        header = f"--- fos-sim start #{host.starts} at {time.strftime('%H:%M:%S')} ---\n"
        host.log_file.write(header.encode())
        host.log_file.flush()
        host.popen = subprocess.Popen(
            self._argv(host),
            stdin=subprocess.DEVNULL,
            stdout=host.log_file,
            stderr=host.log_file,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.debug("agent started", host=host.host_id, pid=host.popen.pid, starts=host.starts)
        return host.popen.pid

    def start(self, spec: NodeSpec) -> int:
        """Start a new node's agent; returns its PID."""
        if spec.node_id in self.host_of:
            raise ValueError(f"{spec.node_id} was already started; use restart")
        self.specs[spec.node_id] = spec
        host = AgentHost(spec.node_id, (spec.node_id,))
        self.hosts[host.host_id] = host
        self.host_of[spec.node_id] = host.host_id
        return self._spawn(host)

    def host(self, node: str) -> AgentHost:
        return self.hosts[self.host_of[node]]

    def starts(self, node: str) -> int:
        return self.host(node).starts

    def running(self, node: str) -> bool:
        return node in self.host_of and self.host(node).running()

    def kill(self, node: str) -> list[str]:
        """SIGKILL the process hosting ``node``; returns every node that died with it."""
        host = self.host(node)
        if not host.running():
            raise ValueError(f"{node} is not running")
        assert host.popen is not None
        host.popen.send_signal(signal.SIGKILL)
        host.popen.wait()
        return list(host.node_ids)

    def restart(self, node: str, spec: NodeSpec | None = None) -> int:
        """Start ``node``'s host again on the same data dir (optionally with a new spec)."""
        host = self.host(node)
        if host.running():
            raise ValueError(f"{node} is still running")
        if spec is not None:
            self.specs[node] = spec
        return self._spawn(host)

    def set_spec(self, spec: NodeSpec) -> None:
        """Record a spec change; the agent process itself learns it from the coordinator."""
        self.specs[spec.node_id] = spec

    def exited(self) -> list[tuple[str, int]]:
        """Hosts that ended on their own (not by `kill`): (host id, return code)."""
        out = []
        for host in self.hosts.values():
            if host.popen is not None and host.popen.poll() is not None:
                rc = host.popen.returncode
                if rc != -signal.SIGKILL:
                    out.append((host.host_id, rc))
        return out

    def stop_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM every running host, wait up to ``grace_s``, SIGKILL what is left."""
        atexit.unregister(self.stop_all)
        running = [h for h in self.hosts.values() if h.running()]
        for host in running:
            assert host.popen is not None
            host.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for host in running:
            assert host.popen is not None
            try:
                host.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                host.popen.send_signal(signal.SIGKILL)
                host.popen.wait()
        for host in self.hosts.values():
            if host.log_file is not None:
                host.log_file.close()
                host.log_file = None

    def pids(self) -> dict[str, int]:
        return {h.host_id: h.popen.pid for h in self.hosts.values() if h.running() and h.popen}


def remove_tree(path: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, for error messages about an agent that exited."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def join_nodes(nodes: Iterable[str]) -> str:
    return ", ".join(sorted(nodes))
