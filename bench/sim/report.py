"""The final figures of a fos-sim run: the JSON summary (`summarise`) and its printout.

`summarise` is pure: it turns what the run collected (`RunData`) into the dict written by
``--json``, with the keys the issue fixes (config, duration_s, throughput, cycles, messages,
deaths, reroute_s, audit, nodes) and a few more (per-node metric table, bound details,
events). `print_report` renders that dict with rich; it reads nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from bench.sim import timeseries
from bench.sim.metrics import RECEIVED_FROM_PREFIX
from bench.sim.nodetable import print_node_table
from bench.sim.timeseries import event_kind
from bench.stats import percentile, spread

# The agent's counter names (the paper's metrics); see fos_agent's Stats().
SUCCESSFUL = "successful_cycles"
SKIPPED = "skipped_cycles"
TOTAL = "total_cycles"
SENT_PREFIX = "messages_sent."
RECEIVED_PREFIX = "messages_received."
# Shown first in the per-node table, in this order, when the agents report them.
PAPER_METRICS = (SUCCESSFUL, SKIPPED, TOTAL)
AUDIT_KEYS = ("produced", "consumed", "queued", "in_transit", "lost", "duplicated")


@dataclass
class NodeData:
    node_id: str
    item: str
    needs_inputs: bool
    ever_in_flow: bool
    in_flow_at_end: bool
    state: str  # alive / dead / drained at the end of the run
    starts: int  # process starts (1 + restarts)
    counters: Mapping[str, float]  # summed across incarnations
    down_s: float = 0.0  # time its agent was not running (killed by the run)
    queued_outbound: int = 0  # at the last read: made, not sold
    queued_inbound: int = 0  # at the last read: bought, not used


@dataclass
class RunData:
    config: Mapping[str, Any]
    duration_s: float
    final_items: Sequence[str]
    bound_per_s: float  # with every node alive
    # the bound integrated over the run's actual alive/drained sets, from the end of the
    # ideal pipeline fill (fill_s) to the end: what a perfect system could have made
    bound_products: float
    bound_products_whole_run: float  # the same from 0 (no fill allowed)
    fill_s: float  # chain depth x cycle_s: the earliest a first final product can appear
    first_final_s: float | None  # when the first final product appeared (measured)
    nodes: Sequence[NodeData]
    depth: int = 0  # stages on the way to the first final product
    # the earliest first final product the suppliers' capacity allows (bench.sim.firstbound):
    # any allocation, and each stage buying from one supplier per input (None: not modelled)
    earliest_first_s: float | None = None
    earliest_first_lane_s: float | None = None
    # steady state: final products made after ``steady_from_s`` (the last poll at or before
    # half the run) and the bound integrated over the same span
    steady_from_s: float = 0.0
    steady_products: int = 0
    steady_bound_products: float = 0.0
    deaths_declared: int = 0
    deaths_false: int = 0
    deaths_unobserved: int = 0  # confirmed suspicions whose down/up flip no poll saw
    # suspicions confirmed before the clock started: agents not listening or not joined
    # yet while their neighbours already traded (not the run's deaths; shown apart)
    deaths_before_start: int = 0
    refuted_suspicions: int = 0
    reroutes_s: Sequence[float] = ()
    reroutes_abandoned: int = 0
    reroutes_recovered: int = 0
    reroute_counters_seen: bool = False
    audit: Mapping[str, Any] | None = None
    audit_error: str | None = None
    flow_version: int = 0
    events: Sequence[tuple[float, str]] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # final products at every poll (t, count) and the bound's steps (t, products/s)
    final_series: Sequence[tuple[float, int]] = ()
    bound_steps: Sequence[tuple[float, float]] = ()


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _sum_prefix(counters: Mapping[str, float], prefix: str) -> float:
    return sum(
        v
        for k, v in counters.items()
        if k.startswith(prefix) and not k.startswith(RECEIVED_FROM_PREFIX)
    )


def summarise(data: RunData) -> dict[str, Any]:
    final = set(data.final_items)
    final_products = sum(int(n.counters.get(SUCCESSFUL, 0)) for n in data.nodes if n.item in final)
    consumers = [n for n in data.nodes if n.needs_inputs and n.ever_in_flow]
    consumer_ok = sum(n.counters.get(SUCCESSFUL, 0) for n in consumers)
    consumer_total = sum(n.counters.get(TOTAL, 0) for n in consumers)
    successful = sum(n.counters.get(SUCCESSFUL, 0) for n in data.nodes)
    total = sum(n.counters.get(TOTAL, 0) for n in data.nodes)
    sent = sum(_sum_prefix(n.counters, SENT_PREFIX) for n in data.nodes)
    received = sum(_sum_prefix(n.counters, RECEIVED_PREFIX) for n in data.nodes)
    # per-supplier receipt counters are for reroute times, not for the table
    names = sorted(
        {k for n in data.nodes for k in n.counters if not k.startswith(RECEIVED_FROM_PREFIX)}
    )
    ordered = [m for m in PAPER_METRICS if m in names]
    ordered += [m for m in names if m not in PAPER_METRICS]
    table = {}
    for metric in ordered:
        s = spread(n.counters.get(metric, 0.0) for n in data.nodes)
        if s is not None:
            table[metric] = {
                "min": s.min, "max": s.max, "mean": s.mean, "median": s.median, "std": s.std,
            }  # fmt: skip
    reroutes = list(data.reroutes_s)
    audit = {k: int(data.audit.get(k, 0)) for k in AUDIT_KEYS} if data.audit else None
    if data.audit:
        audit.update({k: v for k, v in data.audit.items() if k not in AUDIT_KEYS})
    return {
        "config": dict(data.config),
        "duration_s": round(data.duration_s, 3),
        "throughput": {
            "final_products": final_products,
            "bound_per_s": data.bound_per_s,
            "ratio": _ratio(final_products, data.bound_products),
            "bound_products": data.bound_products,
            "fill_s": data.fill_s,
            "depth": data.depth,
            "first_product_s": data.first_final_s,
            "earliest_first_product_s": data.earliest_first_s,
            "earliest_first_product_lane_s": data.earliest_first_lane_s,
            "ratio_whole_run": _ratio(final_products, data.bound_products_whole_run),
            "bound_products_whole_run": data.bound_products_whole_run,
            "ratio_second_half": _ratio(data.steady_products, data.steady_bound_products),
            "second_half": {
                "from_s": data.steady_from_s,
                "final_products": data.steady_products,
                "bound_products": data.steady_bound_products,
            },
            "rate_per_s": _ratio(final_products, data.duration_s),
            "final_items": sorted(final),
        },
        "cycles": {
            "successful": int(successful),
            "total": int(total),
            "consumer_ratio": _ratio(consumer_ok, consumer_total),
            "consumer_successful": int(consumer_ok),
            "consumer_total": int(consumer_total),
            "consumer_nodes": len(consumers),
        },
        "messages": {
            "sent": int(sent),
            "received": int(received),
            "per_successful_cycle": _ratio(sent, successful),
        },
        "deaths": {
            "declared": data.deaths_declared + data.deaths_unobserved,
            "false": data.deaths_false,
            "refuted_suspicions": data.refuted_suspicions,
            "unclassified": data.deaths_unobserved,
            "before_start": data.deaths_before_start,
        },
        "reroute_s": {
            "count": len(reroutes),
            "p50": percentile(reroutes, 50),
            "p99": percentile(reroutes, 99),
            "max": max(reroutes, default=None),
            "unfinished": data.reroutes_abandoned,
            "supplier_back_first": data.reroutes_recovered,
            "measurable": data.reroute_counters_seen,
        },
        "audit": audit,
        "audit_error": data.audit_error,
        "flow_version": data.flow_version,
        "per_node": table,
        "nodes": [
            {
                "node_id": n.node_id,
                "item": n.item,
                "in_flow": n.ever_in_flow,
                "in_flow_at_end": n.in_flow_at_end,
                "state": n.state,
                "starts": n.starts,
                "successful_cycles": int(n.counters.get(SUCCESSFUL, 0)),
                "total_cycles": int(n.counters.get(TOTAL, 0)),
                "down_s": round(n.down_s, 3),
                "queued_outbound": n.queued_outbound,
                "queued_inbound": n.queued_inbound,
                "counters": dict(sorted(n.counters.items())),
            }
            for n in sorted(data.nodes, key=lambda n: n.node_id)
        ],
        "resources": dict(data.resources),
        "events": [{"t": round(t, 3), "kind": event_kind(what), "event": what}
                   for t, what in data.events],
        "timeseries": timeseries.build(
            data.final_series, data.bound_steps, data.duration_s,
            float(data.config.get("cycle_s", 1.0)), data.fill_s,
        ),
        "notes": list(data.notes),
    }


def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    if float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.{digits}f}"


def print_report(summary: Mapping[str, Any], console: Console) -> None:
    """Print the per-node table and the summary figures of ``summary`` (see `summarise`)."""
    print_node_table(summary["nodes"], float(summary["config"].get("cycle_s", 1.0)), console)
    tp, cy, msg = summary["throughput"], summary["cycles"], summary["messages"]
    deaths, rr, audit = summary["deaths"], summary["reroute_s"], summary["audit"]
    first = tp["first_product_s"]
    lines = [
        f"run: {summary['duration_s']:.1f} s, flow version {summary['flow_version']}",
        f"throughput: {tp['final_products']} final products ({', '.join(tp['final_items'])}), "
        f"bound {tp['bound_per_s']:.3f}/s, {tp['bound_products']:.1f} over the run's alive "
        f"sets after the {tp['fill_s']:g} s pipeline fill ({tp['depth']} stages) -> ratio "
        f"{tp['ratio']:.3f}; whole run {tp['ratio_whole_run']:.3f}, second half "
        f"{tp['ratio_second_half']:.3f}; first product after "
        + (f"{first:.1f} s" if first is not None else "- (none)")
        + _earliest(tp),
        f"consumer cycles: {cy['consumer_successful']}/{cy['consumer_total']} successful = "
        f"{cy['consumer_ratio']:.3f} over {cy['consumer_nodes']} nodes in the flow that need "
        f"inputs (all nodes: {cy['successful']}/{cy['total']})",
        f"messages: {msg['sent']} sent, {msg['per_successful_cycle']:.2f} per successful cycle",
        f"deaths declared: {deaths['declared']}, false: {deaths['false']}"
        + (f", unclassified: {deaths['unclassified']}" if deaths["unclassified"] else "")
        + f"; refuted suspicions: {deaths['refuted_suspicions']}"
        + (f"; before the start (agents still starting): {deaths['before_start']} marked "
           "down" if deaths["before_start"] else ""),
        "reroute: "
        + (
            f"{rr['count']} measured, p50 {_num(rr['p50'])} s, p99 {_num(rr['p99'])} s"
            + (f", {rr['unfinished']} unfinished" if rr["unfinished"] else "")
            + (
                f", {rr['supplier_back_first']} ended by the supplier's restart"
                if rr.get("supplier_back_first")
                else ""
            )
            if rr["measurable"]
            else "not measurable (agents expose no per-supplier counters)"
        ),
    ]
    if audit is not None:
        extra = [f"{k} {audit[k]}" for k in ("inconsistent", "unverified") if audit.get(k)]
        lines.append(
            "audit: "
            + ", ".join([f"{k.replace('_', ' ')} {audit[k]}" for k in AUDIT_KEYS] + extra)
            + ("" if audit.get("ok", True) else "  FAILED")
        )
        lines += [f"  {p}" for p in audit.get("problems", [])[:5]]
        lines.append(
            "  (queued: batches still QUEUED in a WAL when the agents stopped: outputs made "
            "and not sold plus inputs bought and not used, i.e. work in progress, not lost; "
            "in transit: a trade under way at the stop, which the supplier's retries finish)"
        )
    elif summary.get("audit_error"):
        lines.append(f"audit: not available ({summary['audit_error']})")
    res = summary.get("resources") or {}
    if res:
        mem = (
            f", agents' PSS {res['pss_mib_mean']:.1f} MiB mean, {res['pss_mib_max']:.1f} max"
            if "pss_mib_mean" in res
            else ""
        )
        phases = (
            f": {res['cpu_s_starting']:.0f} CPU s starting, {res['cpu_cores_running']:.2f} "
            f"cores while running, {res['cpu_s_stopping']:.0f} CPU s stopping"
            if "cpu_cores_running" in res
            else ""
        )
        lines.append(
            f"resources: {res['cpu_s']:.0f} CPU s in {res['wall_s']:.0f} s = "
            f"{res['cpu_cores']:.2f} of {res['cpus_on_machine']} cores (all processes"
            f"{phases}){mem}"
        )
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    for note in summary.get("notes", []):
        console.print(f"note: {note}", style="yellow", highlight=False, soft_wrap=True)


def _earliest(tp: Mapping[str, Any]) -> str:
    """What the suppliers' capacity allows for the first product, where it is not the fill."""
    pooled = tp.get("earliest_first_product_s")
    lane = tp.get("earliest_first_product_lane_s")
    if pooled is None or lane is None or (pooled == lane == tp["fill_s"]):
        return ""
    return (f" (the suppliers' capacity allows {pooled:g} s; {lane:g} s when each stage "
            "buys from one supplier per input)")

