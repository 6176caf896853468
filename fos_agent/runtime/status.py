"""Why a stage is not producing, in words and data (`Agent.status()`), and the log line
when a wait has lasted.

`describe` is pure: it turns what the agent knows (its flow, whether its stage waits and
for what, the output buffer, the suppliers' last deliveries, the consumers long-polling
now) into a `StageStatus`. `log_long_waits` logs each wait once, at INFO, when it passes a
threshold, with the same words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fos_agent.core.metrics import CYCLES_BLOCKED, CYCLES_WAITING, RECEIVED_AT
from fos_agent.runtime.flowview import FlowView

# StageStatus.state values
NOT_STARTED = "not-started"  # start() has not run, or stop() has
NOT_IN_FLOW = "not-in-flow"  # alive, but the coordinator's flow gives it no edge (standby)
DRAINED = "drained"  # the coordinator drained it: no new work is routed here
WAITING_INPUT = "waiting-input"  # a cycle waits for a batch of `item`
OUTPUT_FULL = "output-full"  # a cycle waits for room: its unsold outputs fill the buffer
WORKING = "working"  # no cycle waits (one is in progress, or the program holds inputs)
IDLE = "idle"  # the program is not asking for a cycle (not in cycles(), no simulated stage)


@dataclass(frozen=True, slots=True)
class SupplierState:
    """One supplier of the input waited for, as this node sees it."""

    node_id: str
    rank: int  # 0: primary; higher: backups, asked when the ones before have nothing
    alive: bool  # the coordinator's word in the last flow
    suspected: bool  # this node's failure detector has no contact with it right now
    last_batch_s: float | None  # seconds since the last batch it sent here (None: never)


@dataclass(frozen=True, slots=True)
class StageStatus:
    """What the stage is doing, and why it waits when it does. ``text`` says it in words;
    the other fields are the same as data."""

    state: str
    text: str
    waiting_s: float | None = None  # how long the current wait has lasted
    item: str | None = None  # the input waited for (state waiting-input)
    suppliers: tuple[SupplierState, ...] = ()  # its suppliers in the flow
    consumers: tuple[str, ...] = ()  # this node's consumers in the flow
    buying: tuple[str, ...] = ()  # consumers long-polling this node right now
    queued_outbound: int = 0  # outputs made, not sold
    output_cap: int | None = None  # None: a sink (a final product has no cap)
    flow_version: int = 0
    backup_only: bool = False  # every consumer ranks this node below another supplier


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s ago"


def _supplier_words(s: SupplierState) -> str:
    role = "primary" if s.rank == 0 else f"backup {s.rank}"
    if not s.alive:
        health = "down"
    elif s.suspected:
        health = "not answering"
    else:
        health = "alive"
    return f"{s.node_id} ({role}, {health}, last batch {_ago(s.last_batch_s)})"


def describe(*, started: bool, flow: FlowView, cycling: bool, waiting_s: float | None,
             cause: str, queued_outbound: int, output_cap: int | None,
             suspected: frozenset[str], last_received_at: Mapping[str, float],
             buying: Mapping[str, int], now_unix: float) -> StageStatus:
    """The status from plain facts. ``cycling``: a simulated stage runs or the program is in
    cycles(); ``waiting_s``: how long a cycle has waited (None: none waits); ``cause``: the
    stage's last wait cause (``cycles_blocked`` or ``cycles_waiting_for:ITEM``);
    ``last_received_at``: supplier -> wall time of its last batch here; ``buying``:
    consumers long-polling now."""
    backup_only = bool(flow.rank_for) and min(flow.rank_for.values()) > 0
    base: dict[str, Any] = {
        "waiting_s": waiting_s, "consumers": tuple(sorted(flow.consumers)),
        "buying": tuple(sorted(buying)), "queued_outbound": queued_outbound,
        "output_cap": output_cap, "flow_version": flow.version,
    }
    if not started:
        return StageStatus(NOT_STARTED, "not started (or stopped)", **base)
    waited = f" for {waiting_s:.0f} s" if waiting_s is not None else ""
    if flow.drained:
        return StageStatus(DRAINED, "drained: the coordinator routes no new work here", **base)
    if not flow.in_flow:
        return StageStatus(NOT_IN_FLOW, f"not in flow{waited}: the coordinator's flow gives "
                           "this node no supplier or consumer (standby)", **base)
    if waiting_s is None:
        if cycling:
            return StageStatus(WORKING, "working: no cycle is waiting", **base)
        return StageStatus(IDLE, "idle: the program is not asking for a cycle", **base)
    if cause.startswith(CYCLES_WAITING):
        item = cause[len(CYCLES_WAITING):]
        suppliers = tuple(
            SupplierState(s.node_id, s.rank, s.alive, s.node_id in suspected,
                          (now_unix - last_received_at[s.node_id])
                          if s.node_id in last_received_at else None)
            for s in flow.ranked_suppliers(item))
        if not suppliers:
            why = "no supplier of it in the flow"
        elif not any(s.alive and not s.suspected for s in suppliers):
            why = "every supplier is down or not answering: " + ", ".join(
                _supplier_words(s) for s in suppliers)
        else:
            why = "no supplier has one for it: " + ", ".join(
                _supplier_words(s) for s in suppliers)
        return StageStatus(WAITING_INPUT, f"waiting for input {item}{waited}: {why}",
                           item=item, suppliers=suppliers, **base)
    cap = f"{queued_outbound} of {output_cap} unsold" if output_cap is not None \
        else f"{queued_outbound} unsold"
    if not flow.consumers:
        who = "no consumer in the flow"
    elif buying:
        who = "consumers buying: " + ", ".join(sorted(buying))
    elif backup_only:
        who = "no consumer buying: this node is only a backup supplier of " + ", ".join(
            sorted(flow.consumers)) + " (they buy from their primary first)"
    else:
        who = "no consumer buying (consumers " + ", ".join(sorted(flow.consumers)) + \
            " take from other suppliers or wait for other inputs)"
    return StageStatus(OUTPUT_FULL, f"output buffer full{waited} ({cap}): {who}",
                       backup_only=backup_only, **base)


async def log_long_waits(waiting_since: Callable[[], float | None],
                         status: Callable[[], StageStatus], log: Any, threshold_s: float,
                         clock: Callable[[], float] = time.monotonic) -> None:
    """Log the stage's wait once it has lasted ``threshold_s``, at INFO with the status's
    words: once per wait, and again when its reason changes (checked every ``threshold_s``
    while it lasts). ``waiting_since``: when (``clock``) the current wait began, None when
    nothing waits; cheap, so an agent that does not wait costs a timer every
    ``threshold_s / 2`` and nothing else."""
    logged: tuple[float, str, str | None] | None = None
    while True:
        since = waiting_since()
        age = None if since is None else clock() - since
        if age is None or age < threshold_s:
            # sleep until this wait would reach the threshold (a new one: at most half late)
            await asyncio.sleep(threshold_s / 2 if age is None else threshold_s - age)
            continue
        st = status()
        key = (since, st.state, st.item)
        if st.waiting_s is not None and st.state not in (WORKING, IDLE, NOT_STARTED) \
                and key != logged:
            logged = key
            log.info("stage waiting", state=st.state, item=st.item,
                     waiting_s=round(st.waiting_s, 1), why=st.text)
        await asyncio.sleep(threshold_s)


def status_of(agent: Any) -> StageStatus:
    """`describe` over a running `Agent`'s own objects (call on the agent's loop: it reads
    state that loop changes)."""
    stage, engine = agent.stage, agent.engine
    started = bool(agent._started) and stage is not None and engine is not None
    node = engine.node if started else None
    since = stage.waiting_since if started else None
    cause = ""
    if since is not None:  # why now (a recorded cause may be a moment old)
        if stage.output_full():
            cause = CYCLES_BLOCKED
        elif (missing := stage.missing_input()) is not None:
            cause = CYCLES_WAITING + missing
        else:
            since = None  # room and inputs are both here: the wait is ending
    sink = agent.is_sink() if started else False
    service = agent._service
    counters = agent.metrics.snapshot()
    prefix = RECEIVED_AT  # last_received_from_at:<supplier>, wall time
    return describe(
        started=node is not None, flow=agent.flow,
        # a simulated stage, a program waiting in cycles(), or one holding a cycle's inputs
        cycling=("stage" in agent._tasks or bool(agent._cycle_waits)
                 or (node is not None and bool(node.held))),
        waiting_s=None if since is None else time.monotonic() - since,
        cause=cause,
        queued_outbound=node.queued_outbound_count if node is not None else 0,
        output_cap=None if sink else agent.settings.output_cap,
        suspected=agent.detector.suspected() if agent.detector is not None else frozenset(),
        last_received_at={k[len(prefix):]: v for k, v in counters.items()
                          if k.startswith(prefix)},
        buying=service.fair.waiting() if service is not None else {},
        now_unix=time.time(),
    )
