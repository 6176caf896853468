"""Agent process supervision for fos-sim: start, SIGKILL, restart on the same data dir, stop.

Only processes this module started are ever signalled, always by PID. Each process gets its
own session (so a Ctrl-C in the terminal reaches the harness, which then stops everything in
order) and writes its logs to ``<root>/logs/<node>.log`` (appended across restarts).

An `AgentHost` is one OS process running one agent (``fos-agent``) or several
(``python -m fos_agent.host``, for large chains: one asyncio loop, each agent its own gRPC
server, WAL and port). `kill(node)` SIGKILLs the whole host and answers with every node that
died with it, so callers account for all of them.
"""

from __future__ import annotations

import atexit
import json
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

# gRPC's EventEngine client and listener (its default) hand every RPC event between a pool
# of threads that spin-wait with backoff before sleeping; the older poller costs an idle
# agent about a quarter less CPU on 2 cores (bench/RESULTS.md, issue 14, second round).
# Set for every agent host the run starts; a GRPC_EXPERIMENTS in the environment wins.
LEAN_GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


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


def pack_nodes(specs: Sequence[NodeSpec], per_host: int) -> list[tuple[str, ...]]:
    """Group nodes into host processes of at most ``per_host`` agents.

    Nodes are dealt in the order (supplier number within its item, item), so a host holds
    different items' suppliers where it can: killing one host then takes at most one
    supplier of most items, as a machine failure in a spread-out factory would.
    """
    if per_host < 1:
        raise ValueError(f"agents per process must be >= 1, got {per_host}")
    rank: dict[str, int] = {}
    seen: dict[str, int] = {}
    for spec in specs:
        rank[spec.node_id] = seen.get(spec.produces.item, 0)
        seen[spec.produces.item] = rank[spec.node_id] + 1
    order = sorted(range(len(specs)), key=lambda i: (rank[specs[i].node_id], i))
    ids = [specs[i].node_id for i in order]
    return [tuple(ids[k : k + per_host]) for k in range(0, len(ids), per_host)]


def host_command() -> list[str]:
    """fos_agent.host: several agents in one process (one asyncio loop, each its own gRPC
    server, WAL and port)."""
    return [sys.executable, "-m", "fos_agent.host"]


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
    host_command: Sequence[str] = field(default_factory=host_command)
    hosts: dict[str, AgentHost] = field(default_factory=dict)  # host id -> host
    host_of: dict[str, str] = field(default_factory=dict)  # node id -> host id
    specs: dict[str, NodeSpec] = field(default_factory=dict)  # node id -> current spec

    def __post_init__(self) -> None:
        (self.root / "agents").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop_all, 0.0)  # last resort if the caller's finally never ran

    def data_dir(self, node: str) -> Path:
        return self.root / "agents" / node

    def log_path(self, host_id: str) -> Path:
        return self.root / "logs" / f"{host_id}.log"

    def log_of(self, node: str) -> Path:
        return self.log_path(self.host_of[node])

    def wal_dirs(self) -> list[Path]:
        return [self.data_dir(n) for n in sorted(self.specs) if self.data_dir(n).exists()]

    def _argv(self, host: AgentHost) -> list[str]:
        if host.node_ids != (host.host_id,):
            return self._host_argv(host)
        node = host.host_id
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

    def _host_argv(self, host: AgentHost) -> list[str]:
        """A multi-agent host process; its config is rewritten on every start (specs may
        have changed)."""
        agents = []
        for node in host.node_ids:
            spec = self.specs[node]
            agents.append({
                "node_id": node, "listen": spec.address, "data_dir": str(self.data_dir(node)),
                "produces": f"{spec.produces.item}:{spec.produces.qty}",
                "requires": [f"{r.item}:{r.qty}" for r in spec.requires],
                "capacity": spec.capacity, "cycle_s": self.cycle_s,
            })  # fmt: skip
        config = self.root / "hosts" / f"{host.host_id}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"agents": agents}, indent=1))
        return [
            *self.host_command, "--config", str(config),
            "--coordinators", ",".join(self.coordinators), *self.extra_args,
        ]  # fmt: skip

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
            env={**os.environ, "PYTHONUNBUFFERED": "1",
                 "GRPC_EXPERIMENTS": os.environ.get("GRPC_EXPERIMENTS", LEAN_GRPC_EXPERIMENTS)},
        )
        log.debug("agent started", host=host.host_id, pid=host.popen.pid, starts=host.starts)
        return host.popen.pid

    def start(self, spec: NodeSpec) -> int:
        """Start a new node's agent in a process of its own; returns its PID."""
        return self.start_group([spec])

    def start_group(self, specs: Sequence[NodeSpec], host_id: str | None = None) -> int:
        """Start one process running the agents of ``specs`` (one: a plain ``fos-agent``;
        several: a ``fos_agent.host`` named ``host_id``); returns its PID."""
        if not specs:
            raise ValueError("a host process needs at least one agent")
        for spec in specs:
            if spec.node_id in self.host_of:
                raise ValueError(f"{spec.node_id} was already started; use restart")
        nodes = tuple(s.node_id for s in specs)
        host_id = host_id or (nodes[0] if len(nodes) == 1 else f"host-{len(self.hosts) + 1:03d}")
        if host_id in self.hosts:
            raise ValueError(f"host {host_id} exists already")
        host = AgentHost(host_id, nodes)
        self.hosts[host_id] = host
        for spec in specs:
            self.specs[spec.node_id] = spec
            self.host_of[spec.node_id] = host_id
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
