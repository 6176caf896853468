"""What fos-sim shows while it runs: a rich live view on a terminal, plain lines otherwise.

Both take the same `Snapshot` (built by the runner about once a second) and event lines.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

MAX_NODE_ROWS = 24  # above this the live view groups nodes by item type
EVENT_LINES = 8
PLAIN_STATUS_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    item: str
    state: str  # alive / dead / drained / down? (declared down while alive) / starting
    in_flow: bool
    successful: int
    total: int
    starts: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    title: str
    elapsed_s: float
    duration_s: float
    flow_version: int = 0
    leader: str = ""
    replicas_up: int = 0
    replicas: int = 0
    final_products: int = 0
    bound_so_far: float = 0.0  # final products the LP bound permits up to now
    deaths_declared: int = 0
    deaths_false: int = 0
    nodes: tuple[NodeRow, ...] = field(default_factory=tuple)
    dashboard_url: str = ""  # the run's fos-dashboard page, when --dashboard started one


class View(Protocol):
    def __enter__(self) -> View: ...
    def __exit__(self, *exc: object) -> None: ...
    def update(self, snap: Snapshot) -> None: ...
    def event(self, t_s: float, text: str) -> None: ...


STATE_STYLE = {"alive": "green", "dead": "bold red", "drained": "yellow", "down?": "magenta"}
# What the state column's words mean, printed under the table (the terms are the harness's,
# not the coordinator's: fos-sim knows which processes it killed, the coordinator does not).
LEGEND = (
    ("alive", "agent process running, and the coordinator counts it alive"),
    ("dead", "agent process SIGKILLed by this run, not restarted yet"),
    ("down?", "coordinator says down while the process runs: a false death, or a restart "
              "not yet rejoined"),
    ("drained", "out of the flow for maintenance"),
)


def _header(snap: Snapshot) -> RenderableType:
    share = min(1.0, snap.elapsed_s / snap.duration_s) if snap.duration_s > 0 else 1.0
    first = Text.assemble(
        (f"{snap.title}  ", "bold"),
        f"{snap.elapsed_s:5.1f}/{snap.duration_s:.0f} s  ",
        f"flow v{snap.flow_version}  ",
        f"coordinators {snap.replicas_up}/{snap.replicas} up, leader {snap.leader or '-'}",
    )
    second = Text.assemble(
        (f"final products {snap.final_products}", "bold cyan"),
        f" (bound {snap.bound_so_far:.0f})  ",
        f"deaths declared {snap.deaths_declared}, false {snap.deaths_false}",
    )
    # A ProgressBar ends without a newline: in a grid row it gets a line of its own, so the
    # table header below no longer starts on the bar's line.
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=1.0, completed=share, width=60), Text(f"{share:4.0%}"))
    if not snap.dashboard_url:
        return Group(first, second, bar)
    return Group(first, second, Text(f"floor display: {snap.dashboard_url}", style="bold"), bar)


def _legend() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column(style="dim")
    for state, meaning in LEGEND:
        grid.add_row(Text(state, style=STATE_STYLE.get(state, "")), meaning)
    return grid


def _node_table(snap: Snapshot) -> Table:
    if len(snap.nodes) <= MAX_NODE_ROWS:
        table = Table(expand=False, box=None, padding=(0, 1))
        for col in ("node", "item", "state", "flow", "ok/total cycles", "starts"):
            table.add_column(col, justify="right" if "cycles" in col or col == "starts" else "left")
        for n in snap.nodes:
            table.add_row(
                n.node_id,
                n.item,
                Text(n.state, style=STATE_STYLE.get(n.state, "")),
                "in" if n.in_flow else Text("out", style="dim"),
                f"{n.successful}/{n.total}",
                str(n.starts),
            )
        return table
    table = Table(expand=False, box=None, padding=(0, 1))
    for col in ("item", "suppliers alive", "in flow", "ok/total cycles"):
        table.add_column(col, justify="left" if col == "item" else "right")
    by_item: dict[str, list[NodeRow]] = {}
    for n in snap.nodes:
        by_item.setdefault(n.item, []).append(n)
    for item, rows in sorted(by_item.items()):
        alive = sum(1 for r in rows if r.state == "alive")
        style = "bold red" if alive == 0 else ""
        table.add_row(
            item,
            Text(f"{alive}/{len(rows)}", style=style),
            str(sum(1 for r in rows if r.in_flow)),
            f"{sum(r.successful for r in rows)}/{sum(r.total for r in rows)}",
        )
    return table


class LiveView:
    """A rich.Live screen: header with progress, node table, the latest events."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.events: deque[str] = deque(maxlen=EVENT_LINES)
        self.snap: Snapshot | None = None
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=4, transient=False
        )

    def _render(self) -> RenderableType:
        if self.snap is None:
            return Text("starting...")
        events = Text("\n".join(self.events) or "(no events yet)", style="dim")
        return Group(_header(self.snap), _node_table(self.snap), _legend(), Text("events:"),
                     events)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render())
        self.live.__exit__(None, None, None)

    def update(self, snap: Snapshot) -> None:
        self.snap = snap
        self.live.update(self._render())

    def event(self, t_s: float, text: str) -> None:
        self.events.append(f"[{t_s:6.1f}s] {text}")
        self.live.update(self._render())


class PlainView:
    """One line per event and a status line every few seconds (for logs and pipes)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.next_status_s = 0.0

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.flush()

    def update(self, snap: Snapshot) -> None:
        if snap.elapsed_s < self.next_status_s:
            return
        self.next_status_s = snap.elapsed_s + PLAIN_STATUS_EVERY_S
        alive = sum(1 for n in snap.nodes if n.state == "alive")
        in_flow = sum(1 for n in snap.nodes if n.in_flow)
        ok = sum(n.successful for n in snap.nodes)
        total = sum(n.total for n in snap.nodes)
        print(
            f"[{snap.elapsed_s:6.1f}s] flow v{snap.flow_version}, {alive}/{len(snap.nodes)} "
            f"nodes alive, {in_flow} in flow, cycles {ok}/{total}, final products "
            f"{snap.final_products}, coordinators {snap.replicas_up}/{snap.replicas} up",
            file=self.out,
            flush=True,
        )

    def event(self, t_s: float, text: str) -> None:
        print(f"[{t_s:6.1f}s] {text}", file=self.out, flush=True)


def make_view(console: Console) -> LiveView | PlainView:
    return LiveView(console) if console.is_terminal else PlainView(console.file)
