"""The live view's snapshot and the end-of-run figures, read off a `SimRun`'s bookkeeping."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from bench.sim.collect import bound_steps, cpu_seconds, integrate_bound, run_audit
from bench.sim.firstbound import first_product_bound
from bench.sim.metrics import RECEIVED_FROM_PREFIX
from bench.sim.report import SUCCESSFUL, TOTAL, NodeData, RunData
from bench.sim.topology import chain_depth
from bench.sim.view import NodeRow, Snapshot

if TYPE_CHECKING:
    from bench.sim.run import SimRun


def snapshot_of(run: SimRun) -> Snapshot:
    """What the live view shows now."""
    assert run.agents is not None
    rows = []
    for node, spec in sorted(run.timeline.specs.items()):
        totals = run.book.totals(node)
        if node in run.timeline.dead:
            state = "dead"
        elif node in run.timeline.drained:
            state = "drained"
        elif run.cluster_view.alive.get(node) is False:
            state = "down?"
        else:
            state = "alive"
        rows.append(NodeRow(
            node, spec.produces.item, state, run.cluster_view.in_flow.get(node, False),
            int(totals.get(SUCCESSFUL, 0)), int(totals.get(TOTAL, 0)),
            run.agents.starts(node) if node in run.agents.host_of else 0,
        ))  # fmt: skip
    return Snapshot(
        title=run.plan.title,
        elapsed_s=min(run.now(), run.plan.duration_s),
        duration_s=run.plan.duration_s,
        flow_version=run.cluster_view.flow_version,
        leader=run.cluster_view.leader,
        replicas_up=run.plan.replicas - len(run.dead_replicas),
        replicas=run.plan.replicas,
        final_products=run.final_products(),
        bound_so_far=integrate_bound(
            run.segments, run.now(), run.plan.cycle_s, cache=run.bound_cache
        ),
        deaths_declared=run.ledger.declared,
        deaths_false=run.ledger.false,
        nodes=tuple(rows),
        dashboard_url=run.dashboard.url if run.dashboard is not None else "",
    )


def collect(run: SimRun) -> RunData:
    """Everything the report needs, once the run is over (runs the audit)."""
    assert run.agents is not None
    audit, audit_error = run_audit(run.agents.wal_dirs())
    run.reroutes.finish()
    confirmed = run.cluster_view.confirmed_suspicions - run.confirmed_before_start
    unobserved = max(0, confirmed - run.ledger.declared)
    # Which node an unobserved death hit is unknown; with no agent ever killed, every
    # confirmed suspicion was of a live node, so those deaths are false.
    unobserved_false = unobserved if not run.ledger.dead_intervals else 0
    reroute_seen = any(
        k.startswith(RECEIVED_FROM_PREFIX)
        for n in run.book.nodes for k in run.book.totals(n)
    )  # fmt: skip
    nodes = []
    for node, spec in sorted(run.timeline.specs.items()):
        state = (
            "dead"
            if node in run.timeline.dead
            else ("drained" if node in run.timeline.drained else "alive")
        )
        rec = run.book.nodes.get(node)
        nodes.append(NodeData(
            node_id=node, item=spec.produces.item, needs_inputs=bool(spec.requires),
            ever_in_flow=node in run.cluster_view.ever_in_flow or bool(
                rec and rec.ever_in_flow),
            in_flow_at_end=run.cluster_view.in_flow.get(node, False), state=state,
            starts=run.agents.starts(node) if node in run.agents.host_of else 0,
            counters=run.book.totals(node),
            down_s=down_seconds(run.ledger.dead_intervals.get(node, []), run.ledger.grace_s,
                                run.ended_s),
            queued_outbound=rec.queued_outbound if rec else 0,
            queued_inbound=rec.queued_inbound if rec else 0,
        ))  # fmt: skip
    cycle_s = run.plan.cycle_s
    depth = chain_depth(run.plan.specs, run.plan.final_items)
    fill = min(depth * cycle_s, run.ended_s)
    earliest = first_product_bound(run.plan.specs, run.plan.final_items)
    steady_from, steady_base = 0.0, 0
    for t, products in run.final_series:  # the last poll at or before half the run
        if t <= run.ended_s / 2:
            steady_from, steady_base = t, products
    wall = time.monotonic() - run.wall_at_start
    cpu = cpu_seconds() - run.cpu_at_start  # every child has been reaped by now
    resources = {
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "cpu_cores": round(cpu / wall, 3) if wall > 0 else 0.0,
        "cpus_on_machine": os.cpu_count(),
        **cpu_phases(run.cpu_at_start, run.cpu_at_clock, run.cpu_at_end, cpu, run.ended_s),
        **{k: round(v, 2) for k, v in run.memory.items()},
    }
    return RunData(
        config=run.plan.config,
        duration_s=run.ended_s,
        final_items=sorted(run.plan.final_items),
        bound_per_s=run.bound_per_s,
        bound_products=integrate_bound(run.segments, run.ended_s, cycle_s, fill),
        bound_products_whole_run=integrate_bound(run.segments, run.ended_s, cycle_s),
        fill_s=fill,
        depth=depth,
        earliest_first_s=None if earliest is None else earliest.pooled * cycle_s,
        earliest_first_lane_s=None if earliest is None else earliest.lane * cycle_s,
        first_final_s=run.first_final_s,
        steady_from_s=steady_from,
        steady_products=run.final_products() - steady_base,
        steady_bound_products=integrate_bound(run.segments, run.ended_s, cycle_s, steady_from),
        nodes=nodes,
        deaths_declared=run.ledger.declared,
        deaths_false=run.ledger.false + unobserved_false,
        deaths_unobserved=unobserved,
        deaths_before_start=run.confirmed_before_start,
        refuted_suspicions=run.cluster_view.refuted_suspicions,
        reroutes_s=list(run.reroutes.durations_s),
        reroutes_abandoned=run.reroutes.abandoned,
        reroutes_recovered=run.reroutes.recovered,
        reroute_counters_seen=reroute_seen,
        audit=audit,
        audit_error=audit_error,
        flow_version=run.cluster_view.flow_version,
        events=list(run.events_log),
        final_series=list(run.final_series),
        bound_steps=bound_steps(run.segments, cycle_s, run.bound_cache),
        resources=resources,
        notes=run.notes
        + [
            f"{run.plan.schedule.skipped_kills} random kills skipped "
            "(no node could die without starving an item)"
        ]
        * bool(run.plan.schedule.skipped_kills),
    )


def cpu_phases(at_start: float, at_clock: float | None, at_end: float | None, total: float,
               ran_s: float) -> dict[str, float]:
    """The run's CPU split at the clock's start and end: starting (cluster, agents up,
    flows), running (per second of the clock: the steady cost) and stopping (stops,
    audit). Empty when the clock never ran."""
    if at_clock is None or at_end is None or ran_s <= 0:
        return {}
    return {
        "cpu_s_starting": round(at_clock - at_start, 2),
        "cpu_cores_running": round((at_end - at_clock) / ran_s, 3),
        "cpu_s_stopping": round(at_start + total - at_end, 2),
    }



def down_seconds(intervals: list[list[float]], grace_s: float, end_s: float) -> float:
    """Time within [0, end_s] a node's agent was not running: the ledger's dead intervals
    end ``grace_s`` after the restart (its rejoin window), which is running time here."""
    total = 0.0
    for start, stop in intervals:
        stop = end_s if stop == float("inf") else stop - grace_s
        total += max(0.0, min(stop, end_s) - max(start, 0.0))
    return total
