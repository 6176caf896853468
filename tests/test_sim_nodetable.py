"""fos-sim's closing per-node table, its time series and its plot, on synthetic summaries."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bench.sim import timeseries as ts
from bench.sim.nodetable import LEGEND, layout, outcomes, print_node_table
from bench.sim.plot import check_path, plot_summary


def node(node_id: str, item: str, ok: int, *, wait: dict[str, int] | None = None,
         full: int = 0, other: int = 0, state: str = "alive", starts: int = 1,
         in_flow: bool = True, down_s: float = 0.0) -> dict:
    counters = {f"cycles_waiting_for:{k}": float(v) for k, v in (wait or {}).items()}
    if full:
        counters["cycles_blocked"] = float(full)
    skipped = sum((wait or {}).values()) + full + other
    counters |= {"successful_cycles": float(ok), "skipped_cycles": float(skipped),
                 "total_cycles": float(ok + skipped)}
    return {"node_id": node_id, "item": item, "in_flow": in_flow, "in_flow_at_end": in_flow,
            "state": state, "starts": starts, "successful_cycles": ok,
            "total_cycles": ok + skipped, "down_s": down_s, "queued_outbound": 1,
            "queued_inbound": 0, "counters": counters}


def render(nodes: list[dict], width: int = 200, **kw) -> str:
    out = io.StringIO()
    print_node_table(nodes, 1.0, Console(file=out, width=width), **kw)
    return out.getvalue()


def test_outcomes_split_the_time_by_cause():
    o = outcomes(node("frame-1", "frame", 50, wait={"wood": 20, "glass": 5}, full=10,
                      other=3, down_s=6.0, starts=2), cycle_s=2.0)
    assert o.waiting == {"glass": 5, "wood": 20} and o.output_full == 10 and o.other == 3
    assert o.down_cycles == 3.0 and o.slots == 50 + 25 + 10 + 3 + 3
    assert o.ok_share == pytest.approx(50 / 91)
    standby = outcomes(node("frame-2", "frame", 0, full=40, in_flow=False), cycle_s=1.0)
    assert standby.flow == "standby" and standby.ok_share == 0.0


def test_a_small_run_lists_every_node_worst_first_with_a_legend():
    nodes = [
        node("wood-1", "wood", 100),
        node("frame-1", "frame", 80, wait={"wood": 20}),
        node("frame-2", "frame", 0, full=100, in_flow=False),
        node("window-1", "window", 60, wait={"frame": 40}),
    ]
    text = render(nodes)
    assert all(n["node_id"] in text for n in nodes)
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if "frame-2" in x)) < \
        lines.index(next(x for x in lines if "frame-1" in x))  # worst first within an item
    assert "wood 20" in text and "frame 40" in text  # waits named by input
    assert "standby" in text
    for column in ("state", "ok", "ok%", "out full", "queued", "waiting for input"):
        assert f"{column}: {LEGEND[column]}." in text  # every shown column explained
    assert "down s:" not in text and "more fine" not in text  # nothing down, nothing folded
    blocks = layout(nodes, 1.0)
    assert blocks[0].item == "frame"  # the item with the worst node first


def test_a_large_run_is_grouped_by_item_and_folds_only_fine_nodes():
    nodes = []
    for i in range(10):  # 10 items x 5 suppliers = 50 nodes (> 40)
        for s in range(1, 6):
            nodes.append(node(f"t{i:02d}-s{s}", f"t{i:02d}", 90 - s, wait={"x": 10 + s}))
    nodes[7] = node("t01-s3", "t01", 20, wait={"x": 80})  # far worse than its peers
    nodes[12] = node("t02-s3", "t02", 80, state="dead", down_s=10.0)
    nodes[23] = node("t04-s4", "t04", 85, starts=2)
    blocks = layout(nodes, 1.0)
    assert blocks[0].item == "t01"  # worst item first
    assert sorted(b.item for b in blocks) == [f"t{i:02d}" for i in range(10)]
    shown = {o.node_id for b in blocks for o in b.rows}
    folded = {o.node_id for b in blocks for o in b.folded}
    assert shown | folded == {n["node_id"] for n in nodes} and not shown & folded
    assert {"t01-s3", "t02-s3", "t04-s4"} <= shown  # the unusual are never folded
    t04 = next(b for b in blocks if b.item == "t04")
    assert len(t04.rows) == 4 and t04.rows[-1].node_id == "t04-s4"  # 3 worst + unusual
    for b in blocks:
        shares = [o.idle_share for o in b.rows]
        assert shares[:3] == sorted(shares[:3], reverse=True)
        assert all(o.state == "alive" and o.starts == 1 for o in b.folded)
    text = render(nodes)
    assert text.count("more fine") == 10 and "2 more fine" in text
    assert "down s:" in text and "starts:" in text and "fine: alive" in text
    assert "t02-s3" in text and "dead" in text


def test_the_time_series_counts_per_interval_and_sums_to_the_total():
    polls = [(0.0, 0), (1.0, 0), (2.0, 2), (3.0, 4), (4.0, 5), (5.02, 8)]
    steps = [(0.0, 2.0), (2.5, 1.0)]
    series = ts.build(polls, steps, ended_s=5.02, cycle_s=1.0, fill_s=1.0)
    assert series["interval_s"] == 1.0
    iv = series["intervals"]
    assert [i["from_s"] for i in iv] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert iv[-1]["to_s"] == 5.02  # the last sliver joins the last interval
    assert sum(i["finished"] for i in iv) == 8
    assert iv[0]["bound"] == 0.0 and iv[1]["bound"] == 2.0 and iv[2]["bound"] == 1.5
    assert ts.count_at(polls, 1.5) == 1 and ts.count_at(polls, 99.0) == 8
    assert ts.interval_for(600.0, 1.0) == 10.0 and ts.interval_for(10.0, 0.5) == 1.0


@pytest.mark.parametrize(("line", "kind"), [
    ("SIGKILL t01-s1 (pid 12), consumers ['t02-s1']", ts.KILL),
    ("SIGKILL coordinator leader (replica 0, 127.0.0.1:5)", ts.LEADER_KILL),
    ("restart t01-s1 on its data dir (pid 13)", ts.RESTART),
    ("restart coordinator replica 0", ts.REPLICA_RESTART),
    ("coordinator declared t01-s1 dead (true)", ts.DEATH),
    ("coordinator declared t01-s2 dead (FALSE)", ts.FALSE_DEATH),
    ("t02-s1 rerouted after 0.55 s", ts.REROUTE),
    ("drain t01-s1 -> flow v4", ts.DRAIN),
    ("undrain t01-s1 -> flow v5", ts.UNDRAIN),
    ("agent host-001 exited on its own (rc 1): boom", ts.EXIT),
    ("6 agents up", ts.INFO),
])
def test_event_lines_are_classified(line, kind):
    assert ts.event_kind(line) == kind


def summary_of(nodes: list[dict]) -> dict:
    events = [(0.0, "6 agents up"), (3.0, "SIGKILL t01-s1 (pid 1)"),
              (3.5, "t02-s1 rerouted after 0.50 s"),
              (4.0, "coordinator declared t01-s1 dead (true)"),
              (6.0, "restart t01-s1 on its data dir (pid 2)")]  # fmt: skip
    return {
        "config": {"cycle_s": 1.0}, "duration_s": 10.0, "nodes": nodes,
        "throughput": {"final_products": 12, "final_items": ["window"], "bound_per_s": 2.0,
                       "ratio": 0.7},
        "events": [{"t": t, "kind": ts.event_kind(e), "event": e} for t, e in events],
        "timeseries": ts.build([(float(t), t) for t in range(11)], [(0.0, 2.0), (3.0, 1.0)],
                               10.0, 1.0, 2.0),
    }  # fmt: skip


@pytest.mark.parametrize("many", [False, True])
def test_the_plot_writes_a_valid_png_and_svg(tmp_path, many):
    count = 80 if many else 4  # above NODES_SHOWN the bottom panel sums per item
    nodes = [node(f"n{i}", f"item{i % 4}", 10 + i, wait={"a": 3}, full=i % 3,
                  down_s=2.0 * (i == 1)) for i in range(count)]
    summary = summary_of(nodes)
    png, svg = tmp_path / "run.png", tmp_path / "run.svg"
    plot_summary(summary, png)
    plot_summary(summary, svg)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000] and svg.read_bytes().rstrip().endswith(b"</svg>")
    assert check_path(tmp_path / "run.jpg") is not None and check_path(png) is None


def test_the_plot_redraws_a_saved_summary(tmp_path):
    saved = tmp_path / "out.json"
    saved.write_text(json.dumps(summary_of([node("n0", "window", 5)])))
    out = tmp_path / "again.svg"
    proc = subprocess.run([sys.executable, "-m", "bench.sim.plot", str(saved), str(out)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().rstrip().endswith("</svg>")


def test_a_plot_file_of_another_format_is_refused_before_anything_starts(tmp_path, capsys):
    from bench.sim.cli import main

    assert main(["--plot", str(tmp_path / "run.jpg"), "--duration", "1"]) == 2
    assert "must end in .png or .svg" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
