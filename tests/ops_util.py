"""Helpers for the operator-kit tests: run the real CLIs, read the ready lines, HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from fos_raft.cli.launcher import LocalCluster


def run_cli(module: str, *args: str, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` as a real process; output captured as text."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def fosctl(cluster: LocalCluster, *args: str, indices: list[int] | None = None
           ) -> subprocess.CompletedProcess[str]:
    chosen = range(cluster.n) if indices is None else indices
    addresses = ",".join(cluster.grpc_addresses[i] for i in chosen)
    return run_cli("fos_raft.cli.fosctl", "--coordinators", addresses, "--timeout", "3",
                   *args)


def ready_line(cluster: LocalCluster, i: int) -> dict:
    """The newest ``{"event": "ready", ...}`` line replica i printed."""
    lines = Path(cluster.base_dir / f"r{i}.out").read_text().splitlines()
    return json.loads([line for line in lines if '"ready"' in line][-1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
