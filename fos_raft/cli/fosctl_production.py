"""``fosctl production``: finished products, rates, cycle outcomes and the bottleneck.

Every replica holds the production reports it received (soft state, docs/operations.md),
so this asks each replica and merges (the freshest report of each node wins); one replica
answering is enough.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.api.production_view import merge, outcome_words, summary
from fos_raft.cli import render
from fos_raft.cli.catalog_file import load_targets
from fos_raft.cli.fosctl_commands import EXIT_UNAVAILABLE, EXIT_USAGE, CommandError, Out

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` -> seconds (> 0)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise CommandError(f"--since {text!r} is not a duration such as 30s, 15m or 2h",
                           EXIT_USAGE)
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def add_production_parser(sub: argparse._SubParsersAction, json_flag: argparse.ArgumentParser
                          ) -> None:
    prod = sub.add_parser(
        "production", parents=[json_flag],
        help="finished products, rates, cycle outcomes, the bottleneck")
    prod.add_argument("--since", metavar="DURATION", default="1h",
                      help="the window: 30s, 15m, 2h (default 1h; figures are kept 1 h)")
    prod.add_argument("--catalog", metavar="FILE",
                      help="a catalog file whose target_per_hour keys give the targets")


def _when(unix: float | None, now: float) -> str:
    if not unix:
        return "never"
    return f"{max(0.0, now - unix):.0f} s ago ({time.strftime('%H:%M:%S', time.gmtime(unix))})"


async def cmd_production(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    since = parse_duration(args.since)
    targets = load_targets(args.catalog) if args.catalog else {}
    docs, failures = [], []
    for address in client.addresses:
        try:
            reply = await client.get_production(since, only=address)
        except CoordinatorError as exc:
            failures.append(f"{address}: {exc}")
            continue
        docs.append(json.loads(reply.document))
    if not docs:
        raise CommandError("no coordinator replica answered: " + "; ".join(failures),
                           EXIT_UNAVAILABLE)
    nodes = render.nodes_from_pb(await client.list_nodes())
    doc = summary(merge(docs), [n.spec for n in nodes], targets)
    if out.as_json:
        out.json(doc)
        return 0
    now = float(doc["now_unix"])
    rows = []
    for it in doc["final_items"]:
        target = f"{it['target_per_hour']:g}/h ({it['of_target']:.0%})" \
            if it["target_per_hour"] else "-"
        rate = f"{it['rate_per_hour']:g}/h"
        if it["observed_s"] < since:  # the figures began within the window
            rate += f" (over {it['observed_s']:.0f} s)"
        rows.append((it["item"], str(it["finished"]), rate, target,
                     _when(it["last_finished_unix"], now)))
    out.table(("final item", "finished", "rate", "target", "last finished"), rows,
              title=f"finished products, last {since:g} s")
    out.table(("stage", "item", "cycles"),
              [(s["node_id"], s["item"], outcome_words(s)) for s in doc["stages"]])
    out.line(doc["bottleneck"]["text"])
    return 0
