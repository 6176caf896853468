"""``fos-sim --virtual``: the deterministic simulation of a whole factory, many seeds.

Each seed builds the same seeded chain and fault schedule as a real fos-sim run
(bench.sim.topology, bench.sim.events) and runs it in fos_agent.testing.factory on virtual
time: the real protocol and the real coordinator state machine and planner, a simulated
network and clock. After each run: invariants I1-I6, the audit (0 lost, 0 duplicated),
false deaths, and throughput against the LP bound over the run's alive sets
(bench.sim.collect.integrate_bound). A failing seed prints one line; ``--seed K --trace``
replays it with its event transcript. See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.sim.collect import Segment, integrate_bound
from bench.sim.events import Action, ScenarioError, plan_events
from bench.sim.topology import chain_depth, generate_topology
from fos_agent.testing.factory import AgentSettings, Factory, FactorySettings, LinkSettings

SEED_CATALOG_ABOVE = 500  # nodes; more are registered in one step (fos_agent.testing.factory)

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fos-sim --virtual",
        description=(
            "Simulate the factory on virtual time instead of running it: the real batch "
            "protocol and the real coordinator planner over a simulated network and clock, "
            "one run per seed, each checked (invariants I1-I6, the audit, false deaths) and "
            "measured against the throughput bound. Prints one line per failing seed and "
            "'N seeds: P passed, F failed'."
        ),
        epilog="Example: fos-sim --virtual --seeds 1-200 --types 20 --per-type 2 "
        "--failure-rate 4 --recover-rate 4 --duration 600",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    arg = p.add_argument
    arg("--seeds", metavar="A-B", help="a range of seeds (one run each), e.g. 1-200")
    arg("--seed", type=int, metavar="K", default=1, help="the one seed to run (without --seeds)")
    arg("--types", type=int, default=5, metavar="N", help="item types in the chain")
    arg("--per-type", type=int, default=2, metavar="T", help="alternative suppliers per type")
    arg("--duration", type=float, default=60.0, metavar="S", help="simulated seconds per run")
    arg("--cycle-s", type=float, default=1.0, metavar="S", help="seconds per stage cycle")
    arg("--failure-rate", type=float, default=0.0, metavar="F",
        help="agent kills per simulated minute (Poisson; never starves an item)")
    arg("--recover-rate", type=float, default=0.0, metavar="R",
        help="restarts of killed agents per simulated minute (longest-dead first)")
    arg("--coordinator-kill-every", type=float, default=0.0, metavar="S",
        help="a coordinator leader change every S simulated seconds (an outage)")
    arg("--allow-unviable", action="store_true",
        help="let kills leave an item without a live supplier (as for a real run; it also "
        "spares the schedule the viability check per candidate, quadratic at 10,000 nodes)")
    arg("--leader-outage", type=float, default=3.0, metavar="S",
        help="how long a leader change leaves the coordinator without a leader")
    arg("--loss", type=float, default=0.0, metavar="P",
        help="probability that an RPC's request or reply is lost (the call times out)")
    arg("--duplicate", type=float, default=0.0, metavar="P",
        help="probability that an RPC's request reaches the server twice")
    arg("--mid-step", type=float, default=0.5, metavar="P",
        help="share of kills that land right after a step that writes and sends, before "
        "its writes are durable (the others at their Poisson time)")
    arg("--check-every", type=float, default=0.0, metavar="S",
        help="also check the invariants every S simulated seconds while running (0: at "
        "the end only)")
    arg("--trace", action="store_true", help="print the event transcript of the (one) seed")
    arg("--json", type=Path, metavar="OUT", help="write per-seed figures and digests to OUT")
    arg("--jobs", type=int, default=1, metavar="J", help="seeds run in parallel processes")
    return p


def seed_range(text: str) -> list[int]:
    lo, sep, hi = text.partition("-")
    try:
        seeds = list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise ScenarioError(f"--seeds {text!r}: expected A-B, e.g. 1-200") from None
    if not seeds:
        raise ScenarioError(f"--seeds {text!r}: empty range")
    return seeds


def run_seed(seed: int, args: argparse.Namespace, keep_trace: bool = False
             ) -> tuple[dict[str, Any], list[str]]:
    """One run: the seed's chain and fault schedule on virtual time; its figures."""
    wall, cpu = time.perf_counter(), time.process_time()
    topo = generate_topology(args.types, args.per_type, seed)
    schedule = plan_events(topo.specs, args.duration, failure_rate=args.failure_rate,
                           recover_rate=args.recover_rate,
                           coordinator_kill_every=args.coordinator_kill_every, seed=seed,
                           allow_unviable=args.allow_unviable)
    settings = FactorySettings(
        agent=AgentSettings(cycle_s=args.cycle_s),
        link=replace(LinkSettings(), loss=args.loss, duplicate=args.duplicate),
        leader_outage_s=args.leader_outage, keep_trace=keep_trace,
        check_every_s=args.check_every,
        # one Register per node re-checks the whole catalog each time: quadratic at 10k
        seed_catalog=len(topo.specs) > SEED_CATALOG_ABOVE)
    factory = Factory(topo.specs, random.Random(seed), settings)
    factory.start()
    mid = random.Random(f"{seed}:mid-step")
    for event in schedule.events:
        if event.action is Action.KILL:
            factory.at(event.at_s, factory.kill, event.node, mid.random() < args.mid_step)
            continue
        act = {Action.KILL: factory.kill, Action.RESTART: factory.restart,
               Action.DRAIN: factory.drain, Action.UNDRAIN: factory.undrain}.get(event.action)
        if act is not None:
            factory.at(event.at_s, act, event.node)
        elif event.action is Action.KILL_LEADER:
            factory.at(event.at_s, factory.outage)
    factory.run_until(args.duration)
    result = factory.finish()
    fill = chain_depth(topo.specs) * args.cycle_s
    segments = [Segment(s.start_s, s.active, s.specs) for s in result.segments]
    bound = integrate_bound(segments, args.duration, args.cycle_s, fill)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    figures = {
        "seed": seed, "ok": result.ok, "error": result.error, "digest": result.digest,
        "finished": result.finished, "bound_products": round(bound, 3),
        "ratio": round(result.finished / bound, 4) if bound else 0.0,
        "produced": result.produced, "trades": result.trades, "messages": result.messages,
        "messages_per_trade": round(result.messages / result.trades, 3) if result.trades else 0,
        "commands": result.commands,
        "commands_per_s": round(result.commands / args.duration, 3),
        "coordinator_calls": result.coordinator_calls,
        "kills": result.kills, "suspicions": result.suspicions, "refuted": result.refuted,
        "marked_down": result.marked_down, "false_deaths": len(result.false_deaths),
        "audit": result.audit, "events": result.events, "trace_lines": result.trace_lines,
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        # simulated seconds per second of this process's CPU: the speed on one core
        "speed": round(args.duration / cpu, 1) if cpu else 0.0,
    }
    return figures, factory.trace.lines


def _one(job: tuple[int, argparse.Namespace]) -> dict[str, Any]:
    try:
        return run_seed(*job)[0]
    except Exception as exc:  # a crash of the model is a failing seed, with its reason
        return {"seed": job[0], "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "digest": ""}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        seeds = seed_range(args.seeds) if args.seeds else [args.seed]
        if args.types < 1 or args.per_type < 1 or args.duration <= 0 or args.cycle_s <= 0:
            raise ScenarioError("--types, --per-type, --duration and --cycle-s must be positive")
    except ScenarioError as e:
        print(f"fos-sim: error: {e}", file=sys.stderr)
        return 2
    if args.trace:
        if len(seeds) != 1:
            print("fos-sim: error: --trace replays one seed (--seed K)", file=sys.stderr)
            return 2
        figures, lines = run_seed(seeds[0], args, keep_trace=True)
        sys.stdout.writelines(lines)
        results = [figures]
    else:
        results = _run_all(seeds, args)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"seed {r['seed']}: FAILED {r['error']} (trace {r['digest'][:16]}; replay: "
              f"fos-sim --virtual --seed {r['seed']} --trace ...)")
    if len(results) == 1 and not failed:
        r = results[0]
        print(f"seed {r['seed']}: ok, {r['finished']} final products (ratio {r['ratio']:.3f} "
              f"of the bound), {r['messages_per_trade']:.2f} messages per trade, "
              f"{r['speed']:g}x real time on one core, trace {r['digest']}")
    print(f"{len(results)} seeds: {len(results) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        summary = {"config": {k: v for k, v in vars(args).items() if k != "json"},
                   "seeds": results, "passed": len(results) - len(failed),
                   "failed": len(failed),
                   "cpu_s_total": round(sum(r.get("cpu_s", 0.0) for r in results), 3)}
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 1 if failed else 0


def _run_all(seeds: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = [(s, args) for s in seeds]
    tty = sys.stderr.isatty()
    results: list[dict[str, Any]] = []

    def progress(done: int) -> None:
        if tty or done == len(seeds) or done % 10 == 0:
            end = "\n" if done == len(seeds) or not tty else ""
            print(f"\rseeds {done}/{len(seeds)}", end=end, file=sys.stderr, flush=True)

    if args.jobs > 1 and len(seeds) > 1:
        from multiprocessing import get_context
        with get_context("spawn").Pool(args.jobs) as pool:
            for r in pool.imap(_one, jobs):
                results.append(r)
                progress(len(results))
    else:
        for job in jobs:
            results.append(_one(job))
            progress(len(results))
    return results
