"""What an idle agent costs: CPU and context switches per agent-second of a waiting chain.

``python -m bench.bench_idle`` runs ``fos-sim --types 30 --per-type 3 --cycle-s 1000``
(no stage finishes a cycle during the run, so every consumer waits for inputs), and from
``--settle`` seconds after the agents' start file reads /proc for every thread of
fos-sim's descendants over a ``--window`` second window: CPU (utime + stime) and
voluntary + involuntary context switches. It prints the CPU per agent-second of the agent
processes alone and of all processes (coordinators and fos-sim included), and the
messages the run sent (from fos-sim's JSON). Issue 14's goal: <= 1 ms CPU per idle
agent-second. Extra fos-sim options go after ``--`` (e.g. ``-- --agent-args "..."``).
Bad input: argparse's message, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sample:
    cpu_s: float
    switches: int


def children_of(pid: int) -> list[int]:
    """``pid``'s descendants (from /proc/*/stat parent links)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def sample(pids: list[int]) -> Sample:
    """CPU seconds and context switches of every thread of ``pids`` (gone ones: 0)."""
    cpu, switches = 0, 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cpu += int(fields[11]) + int(fields[12])  # utime, stime: all threads
            for task in Path(f"/proc/{pid}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt")):
                        switches += int(line.split()[1])
        except OSError:
            continue
    return Sample(cpu / TICKS, switches)


def is_agent_host(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"fos_agent.host" in cmd or any(c.endswith(b"fos-agent") for c in cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", type=int, default=30)
    parser.add_argument("--per-type", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after the start file before the window [20]")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured [20]")
    parser.add_argument("extra", nargs="*", help="fos-sim options (after --)")
    args = parser.parse_args(argv)
    if args.settle < 0 or args.window <= 0:
        parser.error("--settle must be >= 0 and --window > 0")
    agents = args.types * args.per_type
    duration = args.settle + args.window + 5
    with tempfile.TemporaryDirectory(prefix="fos-idle-") as tmp:
        keep, out = Path(tmp) / "run", Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "bench.sim", "--types", str(args.types), "--per-type",
               str(args.per_type), "--cycle-s", "1000", "--duration", f"{duration:g}",
               "--json", str(out), "--keep", str(keep), "--plain", *args.extra]
        with open(Path(tmp) / "fos-sim.out", "wb") as log:
            sim = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                while not (keep / "start").exists():
                    if sim.poll() is not None:
                        print((Path(tmp) / "fos-sim.out").read_text()[-2000:], file=sys.stderr)
                        return 1
                    time.sleep(0.2)
                print(f"{agents} agents up; settling {args.settle:g} s", flush=True)
                time.sleep(args.settle)
                pids = children_of(sim.pid)
                hosts = [p for p in pids if is_agent_host(p)]
                others = [p for p in pids if p not in hosts] + [sim.pid]
                a0, o0, t0 = sample(hosts), sample(others), time.monotonic()
                time.sleep(args.window)
                a1, o1, t1 = sample(hosts), sample(others), time.monotonic()
                sim.wait()
            finally:
                if sim.poll() is None:
                    sim.terminate()
                    sim.wait()
        summary = json.loads(out.read_text()) if out.exists() else {}
    per = agents * (t1 - t0)
    agent_ms = (a1.cpu_s - a0.cpu_s) / per * 1000
    all_ms = (a1.cpu_s - a0.cpu_s + o1.cpu_s - o0.cpu_s) / per * 1000
    print(f"window {t1 - t0:.1f} s, {len(hosts)} agent processes, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"CPU per idle agent-second: {agent_ms:.2f} ms (agent processes), "
          f"{all_ms:.2f} ms (all processes)")
    print(f"context switches per agent-second (agent processes): "
          f"{(a1.switches - a0.switches) / per:.1f}")
    if summary:
        print(f"messages sent in the run: {summary['messages']['sent']}; deaths false: "
              f"{summary['deaths']['false']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
