"""fos-sim end to end: real coordinator replicas, real fos-agent processes, real SIGKILLs.

One short run with a scripted kill and restart of a middle supplier, checked through its
JSON summary; one run stopped by SIGTERM. Both check that no process fos-sim started is
left behind (every process whose command line names the run's directory).
"""

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

pytestmark = pytest.mark.slow

FOS_SIM = [str(Path(sys.executable).parent / "fos-sim")]
SCENARIO = """
title = "e2e"
[sim]
types = 3
per_type = 2
cycle_s = 0.5
seed = 2

[[event]]
at = "30%"
action = "kill"
node = "t01-s1"

[[event]]
at = "60%"
action = "restart"
node = "t01-s1"
"""


def processes_naming(text: str) -> list[int]:
    """PIDs of processes whose command line contains ``text`` (read-only scan of /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def run_dir(tmp_path):
    keep = tmp_path / "run"
    try:
        yield keep
    finally:
        # fos-sim must have stopped everything; if not, end only what names our dir, and fail
        leftovers = processes_naming(str(keep))
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert leftovers == [], f"fos-sim left processes behind: {leftovers}"


def test_short_run_with_a_kill_and_restart(tmp_path, run_dir):
    scenario = tmp_path / "e2e.toml"
    scenario.write_text(SCENARIO)
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    cmd = [*FOS_SIM, "--scenario", str(scenario), "--duration", "10", "--json", str(out),
           "--keep", str(run_dir), "--plain", "--plot", str(png)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads(out.read_text())
    assert len(s["nodes"]) == 6 and s["duration_s"] == pytest.approx(10.0, abs=0.5)
    assert s["throughput"]["final_products"] > 0, proc.stdout[-3000:]
    assert s["throughput"]["bound_per_s"] > 0
    assert s["cycles"]["successful"] > 0 and s["cycles"]["consumer_ratio"] > 0
    audit = s["audit"]
    assert audit is not None, s["audit_error"]
    assert audit["lost"] == 0 and audit["duplicated"] == 0, audit
    assert audit["ok"] and audit["inconsistent"] == 0, audit["problems"]
    assert audit["produced"] > 0 and audit["nodes"] == 6
    assert s["deaths"]["false"] == 0, s["events"]
    assert not any("coordinators' view" in n for n in s["notes"]), s["notes"]  # it was read
    res = s["resources"]
    assert res["cpu_s_starting"] > 0 and res["cpu_cores_running"] > 0, res
    assert res["cpu_s_starting"] + res["cpu_s_stopping"] < res["cpu_s"]
    assert s["throughput"]["earliest_first_product_s"] >= s["throughput"]["fill_s"]
    events = [e["event"] for e in s["events"]]
    assert any(e.startswith("SIGKILL t01-s1") for e in events), events
    assert any(e.startswith("restart t01-s1") for e in events), events
    killed = next(n for n in s["nodes"] if n["node_id"] == "t01-s1")
    assert killed["starts"] == 2 and killed["state"] == "alive"
    assert "per-node metrics" in proc.stdout and "audit:" in proc.stdout
    assert all(n["node_id"] in proc.stdout for n in s["nodes"])  # every node has its row
    assert "waiting for input: whole cycles" in proc.stdout  # the legend
    assert killed["down_s"] > 0, killed
    causes = [k for n in s["nodes"] for k in n["counters"] if k.startswith("cycles_")]
    assert any(k.startswith("cycles_waiting_for:t0") for k in causes), causes
    # the run over time: intervals that add up to the products, events with their kinds
    series = s["timeseries"]
    assert sum(iv["finished"] for iv in series["intervals"]) == s["throughput"]["final_products"]
    assert series["intervals"][-1]["to_s"] == pytest.approx(s["duration_s"], abs=0.01)
    assert series["bound_steps"] and series["cumulative"]
    assert {"kill", "restart"} <= {e["kind"] for e in s["events"]}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "out.svg"  # the same figure redrawn from the saved JSON
    redraw = subprocess.run([sys.executable, "-m", "bench.sim.plot", str(out), str(svg)],
                            capture_output=True, text=True, timeout=60)
    assert redraw.returncode == 0, redraw.stderr
    assert svg.read_text().rstrip().endswith("</svg>") and "<svg" in svg.read_text()[:2000]


def test_sigterm_stops_everything(tmp_path, run_dir):
    """Also with --dashboard: its fos-dashboard child serves the run and is stopped too."""
    cmd = [*FOS_SIM, "--types", "2", "--per-type", "2", "--duration", "60", "--keep",
           str(run_dir), "--plain", "--dashboard", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if m := re.search(r"floor display: (http://\S+)", line):
                url = m.group(1)
            if "agents up" in line or time.monotonic() > deadline:
                break
        assert url, "fos-sim printed no floor display URL"
        with urllib.request.urlopen(url + "api/state", timeout=10) as reply:
            assert reply.status == 200 and "graph" in json.loads(reply.read())
        started = processes_naming(str(run_dir))
        assert len(started) >= 4 + 3 + 1  # agents, replicas and the dashboard running
        # each in a session of its own: a terminal's Ctrl-C (SIGINT to fos-sim's process
        # group) reaches only fos-sim, which then stops them in order
        ours = os.getsid(proc.pid)
        sessions = {}
        for pid in set(started) - {proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                sessions[pid] = os.getsid(pid)
        assert ours not in sessions.values(), sessions
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "every process it started has been stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
