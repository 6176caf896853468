"""fos-sim: the paper's experiments with the real system on one machine.

A coordinator cluster (``fos-coordinator`` processes) and one ``fos-agent`` process per node
on loopback, a seeded random layered chain (or a scenario's catalog), SIGKILLs and restarts
at the given rates or at the scenario's times, a live view, and at the end the per-node
metric table, throughput against the LP bound, death/reroute figures and the batch audit.
See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shlex
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.sim.collect import assign_addresses
from bench.sim.dashboard import parse_dashboard
from bench.sim.events import Action, ScenarioError, plan_events
from bench.sim.plot import check_path, plot_summary
from bench.sim.procs import free_ports, pack_nodes
from bench.sim.report import print_report, summarise
from bench.sim.results import collect, snapshot_of
from bench.sim.run import RunPlan, SimRun
from bench.sim.scenario import load_scenario
from bench.sim.topology import SIM_EXTRA_MISSING, final_items, generate_topology
from bench.sim.view import LiveView, PlainView
from fos_raft.runtime.config import enable_completion
from fos_raft.runtime.logging import LOG_FORMATS, configure_logging
from fos_raft.runtime.version import add_version_argument

ONE_PROCESS_PER_AGENT_UP_TO = 50
DEFAULTS: dict[str, Any] = {
    "types": 5,
    "per_type": 2,
    "duration": 60.0,
    "cycle_s": 1.0,
    "failure_rate": 0.0,
    "recover_rate": 0.0,
    "coordinator_kill_every": 0.0,
    "replicas": 3,
    "seed": 1,
    "allow_unviable": False,
    "agents_per_process": 0,  # 0: decided from the node count
    "agent_args": "",  # extra fos-agent options (tuning), one string
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fos-sim",
        description=(
            "Run factoryOS for real on this machine: a Raft coordinator cluster and one "
            "fos-agent process per stage of a seeded random supply chain (or a scenario's "
            "catalog), with SIGKILLs, restarts and coordinator leader kills, a live view, "
            "and at the end the per-node metrics, throughput against the LP bound and an "
            "audit of every batch."
        ),
        epilog=(
            "Options given here override the scenario's [sim] table. Example: fos-sim "
            "--types 5 --per-type 2 --duration 120 --failure-rate 1 --recover-rate 1 "
            "--json out.json. Ctrl-C once ends the run early (with the report), twice aborts; "
            "everything started is stopped either way."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add_version_argument(p)
    arg = p.add_argument
    arg("--log-format", choices=LOG_FORMATS,
        help="lines of the run's fos-sim.log: json (default) or console")
    arg("--types", type=int, metavar="N", help=f"item types in the chain [{DEFAULTS['types']}]")
    arg(
        "--per-type",
        type=int,
        metavar="T",
        help=f"alternative suppliers per item type [{DEFAULTS['per_type']}]",
    )
    arg("--duration", type=float, metavar="S", help=f"seconds to run [{DEFAULTS['duration']:g}]")
    arg(
        "--cycle-s",
        type=float,
        metavar="S",
        help=f"seconds per manufacture cycle of every stage [{DEFAULTS['cycle_s']:g}]",
    )
    arg(
        "--failure-rate",
        type=float,
        metavar="F",
        help="agent SIGKILLs per minute (Poisson; never starves an item) [0]",
    )
    arg(
        "--recover-rate",
        type=float,
        metavar="R",
        help="restarts of killed agents per minute (Poisson, longest-dead first) [0]",
    )
    arg(
        "--coordinator-kill-every",
        type=float,
        metavar="S",
        help="SIGKILL the coordinator leader every S seconds, restart it min(S/2, 10 s) later",
    )
    arg("--replicas", type=int, choices=(3, 5), help="coordinator replicas [3]")
    arg(
        "--agents-per-process",
        type=int,
        metavar="K",
        help=f"agents packed into one process (a kill takes them all) [1 up to "
        f"{ONE_PROCESS_PER_AGENT_UP_TO} nodes, else enough for at most "
        f"{ONE_PROCESS_PER_AGENT_UP_TO} processes]",
    )
    arg("--seed", type=int, metavar="K", help="seed of the topology and the fault schedule [1]")
    arg(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="TOML scenario: settings, catalog and timed events (docs/experiments.md)",
    )
    arg("--json", type=Path, metavar="OUT", help="write the summary figures as JSON to OUT")
    arg("--plot", type=Path, metavar="OUT",
        help="draw throughput over time against the bound (kills, deaths, reroutes marked) "
        "and every node's cycle outcomes to OUT (.png or .svg; needs matplotlib)")
    arg(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep data dirs and logs in DIR (must be empty or new) instead of a temp dir",
    )
    arg(
        "--allow-unviable",
        action="store_true",
        help="let kills/drains leave an item without a live supplier",
    )
    arg("--plain", action="store_true", help="plain log lines even on a terminal")
    arg(
        "--dashboard",
        metavar="HOST:PORT",
        help="also serve the fos-dashboard floor display for the run on HOST:PORT (port 0: a "
        "free one); its URL is printed when it serves (docs/dashboard.md)",
    )
    arg(
        "--hold",
        action="store_true",
        help="after the run (and its report's figures), keep the line and the floor display "
        "up until Ctrl-C",
    )
    arg(
        "--virtual",
        action="store_true",
        help="simulate instead: the real protocol and planner on virtual time, many seeds, "
        "each checked (fos-sim --virtual --help; docs/experiments.md)",
    )
    arg(
        "--agent-args",
        metavar="ARGS",
        help="extra fos-agent tuning options for every agent, one quoted string "
        "(e.g. \"--output-cap 1 --prefetch 1\"); recorded in the report's config",
    )
    return p  # fmt: skip


def settings_from(args: argparse.Namespace, scenario_settings: dict[str, Any]) -> dict[str, Any]:
    merged = {**DEFAULTS, **scenario_settings}
    for key in DEFAULTS:
        if hasattr(args, key):
            merged[key] = getattr(args, key)
    checks = [
        ("types", merged["types"] >= 1, "at least 1"),
        ("per_type", merged["per_type"] >= 1, "at least 1"),
        ("duration", merged["duration"] > 0, "positive"),
        ("cycle_s", merged["cycle_s"] > 0, "positive"),
        ("failure_rate", merged["failure_rate"] >= 0, ">= 0"),
        ("recover_rate", merged["recover_rate"] >= 0, ">= 0"),
        ("coordinator_kill_every", merged["coordinator_kill_every"] >= 0, ">= 0"),
        ("replicas", merged["replicas"] in (3, 5), "3 or 5"),
        ("agents_per_process", merged["agents_per_process"] >= 0, ">= 1"),
    ]
    for key, ok, need in checks:
        if not ok:
            raise ScenarioError(f"--{key.replace('_', '-')} must be {need}, got {merged[key]}")
    return merged


def build_plan(args: argparse.Namespace, root: Path) -> RunPlan:
    scenario = load_scenario(args.scenario) if hasattr(args, "scenario") else None
    cfg = settings_from(args, dict(scenario.settings) if scenario else {})
    if scenario is not None and scenario.nodes is not None:
        specs = assign_addresses(scenario.nodes)
        title = scenario.title
        cfg.pop("types")
        cfg.pop("per_type")
    else:
        specs = assign_addresses(
            generate_topology(cfg["types"], cfg["per_type"], cfg["seed"]).specs
        )
        title = scenario.title if scenario else f"{cfg['types']}x{cfg['per_type']} chain"
    scripted = scenario.resolve_events(cfg["duration"], specs) if scenario else []
    added = [e for e in scripted if e.action is Action.ADD_NODE]
    ports = iter(free_ports(len(added)))
    scripted = [
        replace(e, spec=replace(e.spec, address=f"127.0.0.1:{next(ports)}"))
        if e.action is Action.ADD_NODE and e.spec is not None else e
        for e in scripted
    ]  # fmt: skip
    per_host = cfg["agents_per_process"] or -(-len(specs) // ONE_PROCESS_PER_AGENT_UP_TO)
    cfg["agents_per_process"] = per_host
    groups = tuple(pack_nodes(specs, per_host))
    schedule = plan_events(
        specs,
        cfg["duration"],
        scripted,
        failure_rate=cfg["failure_rate"],
        recover_rate=cfg["recover_rate"],
        coordinator_kill_every=cfg["coordinator_kill_every"],
        replicas=cfg["replicas"],
        seed=cfg["seed"],
        allow_unviable=cfg["allow_unviable"],
        groups=groups,
    )
    config = {**cfg, "nodes": len(specs), "scenario": str(args.scenario) if scenario else None}
    return RunPlan(
        title=title,
        config=config,
        specs=specs,
        schedule=schedule,
        duration_s=cfg["duration"],
        cycle_s=cfg["cycle_s"],
        replicas=cfg["replicas"],
        root=root,
        final_items=final_items(specs),
        groups=groups,
        ready_timeout_s=60.0 + 1.0 * len(specs),
        agent_args=tuple(shlex.split(cfg["agent_args"])),
        dashboard=parse_dashboard(args.dashboard) if hasattr(args, "dashboard") else "",
        hold=bool(getattr(args, "hold", False)),
    )


def log_to_file(path: Path, fmt: str | None = None) -> None:
    """Send this process's log output (harness and coordinator client) to ``path``, so
    nothing but the view and the report reaches the terminal."""
    configure_logging("fos-sim", level="INFO", fmt=fmt or "json", stream=path.open("a"))


def prepare_root(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="fos-sim-"))
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise ScenarioError(
            f"--keep {keep}: must be a new or empty directory (old WALs would "
            "be recovered by the new agents)"
        )
    keep.mkdir(parents=True, exist_ok=True)
    return keep


async def _run(plan: RunPlan, view: LiveView | PlainView) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    sim = SimRun(plan, view, snapshot_of, collect)

    def on_interrupt() -> None:
        if sim.holding:  # the run is over; Ctrl-C ends the hold, then the usual stop
            sim.release.set()
        elif sim.stop.is_set():
            task.cancel()
        else:
            sim.stop.set()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        with view:
            data = await sim.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return summarise(data)


def main(argv: list[str] | None = None) -> int:
    if "--virtual" in (sys.argv[1:] if argv is None else argv):
        from bench.sim.virtual import main as virtual_main

        return virtual_main([a for a in (sys.argv[1:] if argv is None else argv)
                             if a != "--virtual"])
    cli = parser()
    enable_completion(cli)
    args = cli.parse_args(argv)
    if any(importlib.util.find_spec(m) is None for m in ("numpy", "scipy")):
        print(f"fos-sim: error: {SIM_EXTRA_MISSING}", file=sys.stderr)
        return 2
    plot_problem = check_path(args.plot) if hasattr(args, "plot") else None
    if plot_problem:
        print(f"fos-sim: error: {plot_problem}", file=sys.stderr)
        return 2
    console = Console()
    keep = getattr(args, "keep", None)
    try:
        root = prepare_root(keep)
    except ScenarioError as e:
        print(f"fos-sim: error: {e}", file=sys.stderr)
        return 2
    try:
        try:
            plan = build_plan(args, root)
        except (ScenarioError, ValueError) as e:
            print(f"fos-sim: error: {e}", file=sys.stderr)
            return 2
        log_to_file(root / "fos-sim.log", getattr(args, "log_format", None))
        plain = getattr(args, "plain", False) or not console.is_terminal
        view = PlainView(sys.stdout) if plain else LiveView(console)
        try:
            summary = asyncio.run(_run(plan, view))
        except (asyncio.CancelledError, KeyboardInterrupt):
            print("fos-sim: aborted; every process it started has been stopped", file=sys.stderr)
            return 130
        except (RuntimeError, OSError) as e:
            print(f"fos-sim: error: {e}", file=sys.stderr)
            return 1
        print_report(summary, console)
        if hasattr(args, "json"):
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            console.print(f"summary written to {args.json}", highlight=False)
        if hasattr(args, "plot"):
            plot_summary(summary, args.plot)
            console.print(f"plot written to {args.plot}", highlight=False)
        if keep is not None:
            console.print(f"data dirs and logs kept in {keep}", highlight=False)
        return 0
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
