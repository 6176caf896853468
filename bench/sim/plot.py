"""``fos-sim --plot OUT.png|OUT.svg``: a run's figure, drawn from its summary alone.

Top panel: final products finished per second in each interval of the summary's time
series against the LP bound over the same interval (the pipeline fill shaded), with the
run's kills, restarts, declared deaths and reroutes marked at their times. Bottom panel:
every node's cycles by outcome (ok, waiting for input, output full, other, down), per item
when there are more than ``NODES_SHOWN`` nodes. Reads nothing but the summary dict, so
``python -m bench.sim.plot SUMMARY.json OUT.png`` redraws a saved run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.sim import timeseries as ts
from bench.sim.nodetable import Outcome, outcomes

FORMATS = (".png", ".svg")
NODES_SHOWN = 60  # more nodes than this: the bottom panel sums them per item
MATPLOTLIB_MISSING = (
    "--plot needs matplotlib (the 'sim' extra): pip install 'factoryos[sim]' "
    "or .venv/bin/pip install -e '.[sim]'"
)
# how each kind of event is marked: (colour, line style, label)
MARKS = {
    ts.KILL: ("tab:red", "-", "agent SIGKILL"),
    ts.LEADER_KILL: ("tab:purple", "-", "leader SIGKILL"),
    ts.RESTART: ("tab:blue", "--", "restart"),
    ts.DEATH: ("black", ":", "declared dead"),
    ts.FALSE_DEATH: ("tab:orange", ":", "declared dead (false)"),
    ts.DRAIN: ("tab:brown", "-.", "drain"),
    ts.UNDRAIN: ("tab:brown", ":", "undrain"),
    ts.EXIT: ("tab:red", ":", "agent exited"),
}
OUTCOME_COLOURS = {"ok": "tab:green", "waiting for input": "tab:orange",
                   "output full": "tab:blue", "other": "tab:gray", "down": "tab:red"}


def check_path(path: Path) -> str | None:
    """Why ``path`` cannot be plotted to (None: it can): format and matplotlib present."""
    if path.suffix.lower() not in FORMATS:
        return f"--plot {path}: the file name must end in .png or .svg"
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return MATPLOTLIB_MISSING
    return None


def _outcome_bars(rows: Sequence[Outcome]) -> dict[str, list[float]]:
    return {
        "ok": [o.ok for o in rows],
        "waiting for input": [sum(o.waiting.values()) for o in rows],
        "output full": [o.output_full for o in rows],
        "other": [o.other for o in rows],
        "down": [o.down_cycles for o in rows],
    }


def _per_item(rows: Sequence[Outcome]) -> tuple[list[str], dict[str, list[float]]]:
    items = sorted({o.item for o in rows})
    bars = {k: [0.0] * len(items) for k in OUTCOME_COLOURS}
    for o in rows:
        i = items.index(o.item)
        for k, v in _outcome_bars([o]).items():
            bars[k][i] += v[0]
    counts = {it: sum(1 for o in rows if o.item == it) for it in items}
    return [f"{it} ({counts[it]} nodes)" for it in items], bars


def plot_summary(summary: Mapping[str, Any], path: Path) -> None:
    """Draw ``summary`` (bench.sim.report.summarise) to ``path`` (.png or .svg)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    series = summary["timeseries"]
    cycle_s = float(summary["config"].get("cycle_s", 1.0))
    rows = sorted((outcomes(n, cycle_s) for n in summary["nodes"]),
                  key=lambda o: (o.item, o.node_id))
    per_node = len(rows) <= NODES_SHOWN
    labels, bars = ([o.node_id for o in rows], _outcome_bars(rows)) if per_node \
        else _per_item(rows)
    height = 3.2 + 0.18 * max(len(labels), 8)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, height), height_ratios=[3.2, 0.18 * max(len(labels), 8)],
        layout="constrained",
    )
    tp = summary["throughput"]
    _throughput_panel(top, series, tp)
    _events(top, summary["events"])
    top.set_title(
        f"{tp['final_products']} final products ({', '.join(tp['final_items'])}) in "
        f"{summary['duration_s']:.0f} s, bound {tp['bound_per_s']:.2f}/s, ratio "
        f"{tp['ratio']:.2f}", fontsize=10, loc="left",
    )
    left = [0.0] * len(labels)
    for name, colour in OUTCOME_COLOURS.items():
        values = bars[name]
        if any(values):
            bottom.barh(labels, values, left=left, color=colour, label=name, height=0.7)
            left = [a + b for a, b in zip(left, values, strict=True)]
    bottom.invert_yaxis()
    bottom.set_xlabel(f"cycles ({cycle_s:g} s each); down time in cycles")
    bottom.set_title("cycle outcomes per " + ("node" if per_node else "item"),
                     fontsize=10, loc="left")
    bottom.tick_params(axis="y", labelsize=7 if len(labels) > 20 else 9)
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _throughput_panel(ax: Any, series: Mapping[str, Any], tp: Mapping[str, Any]) -> None:
    intervals = series["intervals"]
    if not intervals:
        return
    edges = [iv["from_s"] for iv in intervals] + [intervals[-1]["to_s"]]
    width = [iv["to_s"] - iv["from_s"] for iv in intervals]
    rate = [iv["finished"] / w if w > 0 else 0.0 for iv, w in zip(intervals, width, strict=True)]
    bound = [iv["bound"] / w if w > 0 else 0.0 for iv, w in zip(intervals, width, strict=True)]
    ax.stairs(rate, edges, fill=True, alpha=0.55, color="tab:green",
              label=f"finished per s ({series['interval_s']:g} s intervals)")
    ax.stairs(bound, edges, color="black", linestyle="--", linewidth=1.2,
              label="LP bound (after the fill)")
    steps = series["bound_steps"]
    if steps:
        xs = [t for t, _ in steps] + [edges[-1]]
        ax.stairs([r for _, r in steps], xs, color="gray", linewidth=0.8, alpha=0.7,
                  label="LP bound of the live nodes")
    fill = float(series.get("fill_s", 0.0))
    if fill > 0:
        ax.axvspan(0, fill, color="gray", alpha=0.12, label=f"pipeline fill ({fill:g} s)")
    ax.set_xlim(0, edges[-1])
    ax.set_ylim(0, max([*rate, *bound, tp["bound_per_s"], 0.1]) * 1.25)
    ax.set_xlabel("seconds since the clock started")
    ax.set_ylabel("final products / s")


def _events(ax: Any, events: Sequence[Mapping[str, Any]]) -> None:
    seen: set[str] = set()
    reroutes = [e["t"] for e in events if e["kind"] == ts.REROUTE]
    for e in events:
        mark = MARKS.get(e["kind"])
        if mark is None or e["t"] <= 0:
            continue
        colour, style, label = mark
        ax.axvline(e["t"], color=colour, linestyle=style, linewidth=1.0,
                   label=None if label in seen else label)
        seen.add(label)
    if reroutes:
        top = ax.get_ylim()[1]
        ax.plot(reroutes, [top * 0.95] * len(reroutes), "v", color="tab:cyan",
                markersize=6, label="reroute done", linestyle="none")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.sim.plot SUMMARY.json OUT.png|OUT.svg", file=sys.stderr)
        return 2
    out = Path(args[1])
    problem = check_path(out)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    plot_summary(json.loads(Path(args[0]).read_text()), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
