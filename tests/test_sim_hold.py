"""``fos-sim --hold`` (``make demo KEEP=1``): when the run is over the floor display stays
up, serving the line, until Ctrl-C; then everything stops as usual and the report comes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_sim_e2e import processes_naming

pytestmark = pytest.mark.slow

FOS_SIM = [str(Path(sys.executable).parent / "fos-sim")]


def test_hold_keeps_the_display_up_until_ctrl_c(tmp_path: Path):
    run_dir = tmp_path / "run"
    cmd = [*FOS_SIM, "--types", "2", "--per-type", "1", "--duration", "3", "--keep",
           str(run_dir), "--plain", "--dashboard", "127.0.0.1:0", "--hold"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url, held = "", False
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if m := re.search(r"floor display: (http://\S+)", line):
                url = m.group(1)
            if "stays up until Ctrl-C" in line:
                held = True
                break
            if time.monotonic() > deadline:
                break
        assert url and held, "fos-sim did not hold after its run"
        time.sleep(1.0)  # not a synchronisation: the hold must outlast the run's end
        assert proc.poll() is None
        with urllib.request.urlopen(url + "api/state", timeout=10) as reply:
            assert reply.status == 200 and "graph" in json.loads(reply.read())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "run over: stopping agents and coordinators" in out  # then the report
        assert "per-node metrics" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftovers = processes_naming(str(run_dir))
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert leftovers == []
