"""Production during coordinator-leader kills: the same fos-sim run with and without them.

    python -m bench.bench_leader_kill [--duration 60] [--types 8] [--per-type 2]
                                      [--cycle-s 0.5] [--seed 1] [--every 10] [--rounds 1]

Each round runs ``fos-sim`` twice with the same seed (same topology, same agents, same
schedule otherwise): once undisturbed, once with ``--coordinator-kill-every EVERY`` (SIGKILL
of the current Raft leader every EVERY seconds; the harness restarts the replica after a
while). Agents trade peer to peer on the flow they have, so the coordinator's elections
should not show in production. Printed side by side: successful manufacture cycles per
minute (all stages), final products per minute, the consumer ratio, leader kills done,
deaths declared (a leader kill must not make anyone look dead) and the batch audit.
Rounds alternate which side runs first, so a load change on the machine does not favour
one side. Goal (issue 3): no measurable loss.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FOS_SIM = [sys.executable, "-m", "bench.sim.cli"]


def run_sim(args: argparse.Namespace, kill_every: float, out: Path) -> dict[str, Any]:
    cmd = [*FOS_SIM, "--types", str(args.types), "--per-type", str(args.per_type),
           "--duration", f"{args.duration:g}", "--cycle-s", f"{args.cycle_s:g}",
           "--seed", str(args.seed), "--json", str(out), "--plain"]
    if kill_every:
        cmd += ["--coordinator-kill-every", f"{kill_every:g}"]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration * 4 + 300)
    if done.returncode != 0 or not out.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(f"fos-sim failed ({done.returncode}): {' '.join(cmd)}\n{tail}")
    summary = json.loads(out.read_text())
    summary["_wall_s"] = time.monotonic() - started
    summary["_load"] = os.getloadavg()[0]
    return summary


def figures(s: dict[str, Any]) -> dict[str, Any]:
    minutes = s["duration_s"] / 60
    audit = s.get("audit") or {}
    kills = sum(1 for e in s.get("events", []) if "SIGKILL coordinator leader" in e["event"])
    return {
        "successful cycles / min": s["cycles"]["successful"] / minutes,
        "final products / min": s["throughput"]["final_products"] / minutes,
        "consumer ratio": s["cycles"]["consumer_ratio"],
        "leader kills": kills,
        "deaths declared": s["deaths"]["declared"],
        "refuted suspicions": s["deaths"]["refuted_suspicions"],
        "audit lost / duplicated": f"{audit.get('lost', '?')} / {audit.get('duplicated', '?')}",
        "load at end": round(s["_load"], 2),
    }


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--types", type=int, default=8)
    p.add_argument("--per-type", type=int, default=2)
    p.add_argument("--cycle-s", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--every", type=float, default=10.0, help="seconds between leader kills")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write both summaries' figures here")
    args = p.parse_args(argv)
    print(f"bench_leader_kill: fos-sim --types {args.types} --per-type {args.per_type} "
          f"--cycle-s {args.cycle_s:g} --duration {args.duration:g} --seed {args.seed}, "
          f"leader kill every {args.every:g} s vs none; {platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%a %b %d %H:%M:%S %Z %Y')}", flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fos-leader-kill-") as tmp:
        for r in range(args.rounds):
            order = [0.0, args.every] if r % 2 == 0 else [args.every, 0.0]
            pair: dict[str, dict[str, Any]] = {}
            for every in order:
                side = "leader kills" if every else "no kills"
                summary = run_sim(args, every, Path(tmp) / f"r{r}-{int(every)}.json")
                pair[side] = figures(summary)
                print(f"  round {r + 1}: {side} done ({summary['_wall_s']:.0f} s wall)",
                      flush=True)
            results.append(pair)
            base, kill = pair["no kills"], pair["leader kills"]
            print(f"\nround {r + 1}           {'no kills':>16} {'leader kills':>16}")
            for key in base:
                print(f"{key:24s} {fmt(base[key]):>16} {fmt(kill[key]):>16}")
            change = (kill["successful cycles / min"] / base["successful cycles / min"] - 1)
            print(f"{'change in cycles / min':24s} {change * 100:+15.1f}%\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
