"""The closing per-node table of a fos-sim report: every node, what its time went to.

Pure layout (`outcomes`, `layout`) over the summary's ``nodes`` entries, and a rich
rendering (`print_node_table`) with a legend under the table that says what each column
counts. Small runs list every node, item by item, worst first; large runs (more than
``GROUP_ABOVE`` nodes) give one block per item, worst item first, listing every node that
shows something unusual and folding the rest into a "... N more fine" line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

PIPED_WIDTH = 120  # the table's width when the report does not go to a terminal
GROUP_ABOVE = 40  # more nodes than this: one block per item, the fine ones folded
SHOWN_PER_BLOCK = 3  # a large run's block still shows its worst few, even when all are fine
# a node is unusual when its share of idle time exceeds its item's median by this much
IDLE_MARGIN = 0.10
# the agents' skipped cycles by cause (fos_agent.runtime.stage)
WAITING_FOR = "cycles_waiting_for:"
BLOCKED = "cycles_blocked"

# Column -> what it counts, printed under the table for the columns it shows.
LEGEND = {
    "state": "in-flow (alive, the coordinator's flow connects it), standby (alive, never in "
    "the flow: a backup nobody buys from), left (in the flow once, not at the end), dead "
    "(SIGKILLed by the run, not restarted), drained",
    "starts": "process starts (1 + restarts)",
    "ok": "cycles that made a batch (one cycle_s of work each)",
    "ok%": "ok over all its time in cycles (ok + every skipped cycle + down)",
    "out full": "whole cycles it sat idle with its output buffer full (output_cap batches "
    "made, unsold): no consumer was buying (a backup no flow routes to, or a consumer that "
    "itself waits for another input)",
    "other": "skipped cycles without a cause: a failed WAL step, time lost with everything "
    "there (the agent's event loop stalled), or an agent that does not count causes",
    "down s": "seconds its agent was not running (SIGKILLed by the run, until its restart)",
    "queued": "batches in its WAL at the last read: outputs made and not yet sold (final "
    "products stay there: they leave the factory) / inputs bought and not yet used (work "
    "in progress, not lost)",
    "waiting for input": "whole cycles it sat idle for want of a batch of that input (its "
    "suppliers had none for it yet, or it was rerouting after a supplier died)",
}
# columns left out when no node has anything in them
OPTIONAL = ("starts", "other", "down s")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One node's time, in cycles, by what it was doing."""

    node_id: str
    item: str
    state: str
    flow: str
    starts: int
    ok: int
    waiting: Mapping[str, int]  # input item -> idle cycles waiting for it
    output_full: int
    other: int
    down_s: float
    down_cycles: float
    queued_out: int
    queued_in: int

    @property
    def slots(self) -> float:
        return self.ok + sum(self.waiting.values()) + self.output_full + self.other \
            + self.down_cycles

    @property
    def ok_share(self) -> float:
        return self.ok / self.slots if self.slots > 0 else 0.0

    @property
    def idle_share(self) -> float:
        return 1.0 - self.ok_share if self.slots > 0 else 0.0


@dataclass
class Block:
    """One item's rows (or every row, for a small run), worst first."""

    item: str
    rows: list[Outcome]
    folded: list[Outcome] = field(default_factory=list)  # fine nodes not shown one by one


def outcomes(node: Mapping[str, Any], cycle_s: float) -> Outcome:
    """What a summary ``nodes`` entry's time went to."""
    counters: Mapping[str, float] = node.get("counters", {})
    waiting = {
        k[len(WAITING_FOR):]: int(v)
        for k, v in sorted(counters.items())
        if k.startswith(WAITING_FOR) and v > 0
    }
    full = int(counters.get(BLOCKED, 0))
    skipped = int(counters.get("skipped_cycles", 0))
    other = max(0, skipped - full - sum(waiting.values()))
    if node.get("in_flow_at_end"):
        flow = "in-flow"
    elif node.get("in_flow"):
        flow = "left"
    else:
        flow = "standby"
    down_s = float(node.get("down_s", 0.0))
    return Outcome(
        node_id=str(node["node_id"]), item=str(node["item"]), state=str(node["state"]),
        flow=flow, starts=int(node.get("starts", 1)),
        ok=int(node.get("successful_cycles", 0)), waiting=waiting, output_full=full,
        other=other, down_s=down_s, down_cycles=down_s / cycle_s if cycle_s > 0 else 0.0,
        queued_out=int(node.get("queued_outbound", 0)),
        queued_in=int(node.get("queued_inbound", 0)),
    )  # fmt: skip


def _median(values: Sequence[float]) -> float:
    data = sorted(values)
    if not data:
        return 0.0
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def unusual(o: Outcome, item_median_idle: float) -> bool:
    """Anything a reader should look at: not alive, restarted, down, outside the flow,
    unattributed skips, or idle clearly more than its item's other suppliers."""
    return (
        o.state != "alive" or o.starts != 1 or o.down_s > 0 or o.flow != "in-flow"
        or o.other > 0 or o.idle_share > item_median_idle + IDLE_MARGIN
    )  # fmt: skip


def _worst_first(rows: Sequence[Outcome]) -> list[Outcome]:
    return sorted(rows, key=lambda o: (-o.idle_share, o.node_id))


def layout(nodes: Sequence[Mapping[str, Any]], cycle_s: float,
           group_above: int = GROUP_ABOVE) -> list[Block]:
    """Blocks of rows, one per item, worst item first (its worst node's idle share); up to
    ``group_above`` nodes every node is a row, above it the fine nodes beyond a block's
    worst ``SHOWN_PER_BLOCK`` are folded."""
    by_item: dict[str, list[Outcome]] = {}
    for n in nodes:
        o = outcomes(n, cycle_s)
        by_item.setdefault(o.item, []).append(o)
    fold = len(nodes) > group_above
    blocks = []
    for item, rows in by_item.items():
        ordered = _worst_first(rows)
        median = _median([o.idle_share for o in rows])
        if not fold:
            blocks.append(Block(item, ordered))
            continue
        shown = [o for i, o in enumerate(ordered)
                 if i < SHOWN_PER_BLOCK or unusual(o, median)]
        blocks.append(Block(item, shown, [o for o in ordered if o not in shown]))
    blocks.sort(key=lambda b: (-max((o.idle_share for o in b.rows), default=0.0), b.item))
    return blocks


def _waiting_text(waiting: Mapping[str, int]) -> str:
    return ", ".join(f"{item} {n}" for item, n in waiting.items()) or "-"


def _num(v: float) -> str:
    return "-" if not v else (f"{int(v)}" if float(v).is_integer() else f"{v:.1f}")


def _state(o: Outcome) -> str:
    return o.flow if o.state == "alive" else o.state


def _cells(o: Outcome) -> dict[str, str]:
    return {
        "node": o.node_id, "item": o.item, "state": _state(o), "starts": str(o.starts),
        "ok": str(o.ok), "ok%": f"{100 * o.ok_share:.0f}", "out full": _num(o.output_full),
        "other": _num(o.other), "down s": _num(round(o.down_s, 1)),
        "queued": f"{o.queued_out}/{o.queued_in}", "waiting for input": _waiting_text(o.waiting),
    }  # fmt: skip


def columns(blocks: Sequence[Block]) -> list[str]:
    """The table's columns: the optional ones only when some node has something there."""
    rows = [o for b in blocks for o in (*b.rows, *b.folded)]
    shown = {
        "starts": any(o.starts != 1 for o in rows),
        "other": any(o.other for o in rows),
        "down s": any(o.down_s > 0 for o in rows),
    }
    order = ("node", "item", "state", "starts", "ok", "ok%", "out full", "other", "down s",
             "queued", "waiting for input")
    return [c for c in order if shown.get(c, True)]


def print_node_table(nodes: Sequence[Mapping[str, Any]], cycle_s: float, console: Console,
                     group_above: int = GROUP_ABOVE) -> None:
    """The table of every node (see `layout`) and its legend."""
    blocks = layout(nodes, cycle_s, group_above)
    folded = sum(len(b.folded) for b in blocks)
    title = (f"per-node metrics: {len(nodes)} nodes, by item, worst first"
             + (f" ({folded} fine ones folded)" if folded else ""))
    cols = columns(blocks)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    for name in cols:
        left = name in ("node", "item", "state", "waiting for input")
        table.add_column(name, justify="left" if left else "right",
                         no_wrap=name != "waiting for input")
    for b in blocks:
        for o in b.rows:
            cells = _cells(o)
            table.add_row(*(cells[c] for c in cols))
        if b.folded:
            lo = min(o.ok_share for o in b.folded)
            hi = max(o.ok_share for o in b.folded)
            fold = {"node": f"... {len(b.folded)} more fine", "item": b.item,
                    "waiting for input": f"(ok% {100 * lo:.0f}" + (
                        f"-{100 * hi:.0f})" if round(100 * lo) != round(100 * hi) else ")")}
            table.add_row(*(fold.get(c, "") for c in cols), style="dim")
        table.add_section()
    # a report piped to a file or a log need not fit 80 columns: no wrapped node ids
    before = console.width
    if not console.is_terminal:
        console.width = max(before, PIPED_WIDTH)
    try:
        console.print(table)
    finally:
        console.width = before
    lines = [f"{c}: {LEGEND[c]}." for c in cols if c in LEGEND]
    if folded:
        lines.append(
            f"fine: alive, one start, in the flow, idle at most {100 * IDLE_MARGIN:.0f} "
            "points more than its item's median node."
        )
    for line in lines:
        console.print(f"  {line}", style="dim", highlight=False, soft_wrap=True)
