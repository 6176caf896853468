"""fos-sim's floor display: one ``fos-dashboard`` child process for the run.

Started once the coordinator cluster is up, stopped by its PID (SIGTERM, then SIGKILL) when
the run ends, whatever the reason. It runs in a session of its own, like the agents, so a
terminal Ctrl-C reaches only fos-sim, which stops it in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 30.0


def dashboard_command() -> list[str]:
    """The fos-dashboard console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "fos-dashboard"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fos_dashboard.cli"]


def parse_dashboard(text: str) -> str:
    """Check ``--dashboard HOST:PORT`` (port 0: any free one); returns it unchanged."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--dashboard {text!r} is not HOST:PORT")
    return text


@dataclass
class DashboardProcess:
    listen: str
    coordinators: Sequence[str]
    root: Path
    popen: subprocess.Popen[bytes] | None = None
    url: str = ""
    command: Sequence[str] = field(default_factory=dashboard_command)

    def start(self) -> str:
        """Start it and wait until it serves; returns the page's URL."""
        ready = self.root / "dashboard.url"
        ready.unlink(missing_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.root / "logs" / "dashboard.log", "ab") as log:
            self.popen = subprocess.Popen(
                [*self.command, "--coordinators", ",".join(self.coordinators),
                 "--listen", self.listen, "--ready-file", str(ready)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (ready.exists() and ready.read_text().strip()):
            if self.popen.poll() is not None:
                raise RuntimeError(f"fos-dashboard exited with {self.popen.returncode}; see "
                                   f"{self.root / 'logs' / 'dashboard.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fos-dashboard did not serve within {READY_TIMEOUT_S:g} s")
            time.sleep(0.1)
        self.url = ready.read_text().strip()
        return self.url

    def stop(self, grace_s: float = 5.0) -> None:
        proc = self.popen
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
