"""The fos-sim summary (JSON shape and figures), its printout, the live views and CLI errors."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from bench.sim.cli import main
from bench.sim.report import SKIPPED, SUCCESSFUL, TOTAL, NodeData, RunData, print_report, summarise
from bench.sim.view import LiveView, NodeRow, PlainView, Snapshot


def node(node_id, item, ok, total, *, inputs=True, in_flow=True, **extra):
    counters = {SUCCESSFUL: ok, TOTAL: total, SKIPPED: total - ok, **extra}
    return NodeData(node_id, item, inputs, in_flow, in_flow, "alive", 1, counters)


def run_data(**overrides) -> RunData:
    nodes = [
        node("wood-1", "wood", 100, 100, inputs=False, **{"messages_sent.OfferBatch": 50}),
        node(
            "frame-1",
            "frame",
            80,
            100,
            **{
                "messages_sent.RequestBatch": 120,
                "messages_received.Ping": 7,
                "batches_received_from:wood-1": 80,
            },
        ),
        node("frame-2", "frame", 0, 40, in_flow=False),  # outside the flow: never counted
        node("window-1", "window", 60, 100, **{"messages_sent.RequestBatch": 30}),
    ]
    values = dict(
        config={"types": 3, "per_type": 1},
        duration_s=100.0,
        final_items=["window"],
        bound_per_s=1.0,
        bound_products=78.0,
        bound_products_whole_run=80.0,
        fill_s=2.0,
        depth=2,
        first_final_s=3.5,
        steady_from_s=50.0,
        steady_products=36,
        steady_bound_products=40.0,
        nodes=nodes,
        deaths_declared=3,
        deaths_false=1,
        deaths_unobserved=1,
        deaths_before_start=2,
        refuted_suspicions=4,
        reroutes_s=[0.5, 1.0, 2.0],
        reroute_counters_seen=True,
        audit={
            "produced": 240,
            "consumed": 140,
            "queued": 90,
            "in_transit": 10,
            "lost": 0,
            "duplicated": 0,
            "nodes": 4,
        },
        flow_version=17,
        events=[(1.234, "kill frame-1")],
        resources={
            "cpu_s": 50.0,
            "wall_s": 100.0,
            "cpu_cores": 0.5,
            "cpus_on_machine": 2,
            "agents": 4,
            "pss_mib_mean": 30.5,
            "pss_mib_max": 33.0,
            "pss_mib_total": 122.0,
        },
    )
    values.update(overrides)
    return RunData(**values)


def test_summary_has_the_issue_shape_and_honest_figures():
    s = summarise(run_data())
    for key in (
        "config", "duration_s", "throughput", "cycles", "messages", "deaths", "reroute_s",
        "audit", "nodes",
    ):  # fmt: skip
        assert key in s
    assert set(s["throughput"]) >= {"final_products", "bound_per_s", "ratio"}
    assert s["throughput"]["final_products"] == 60
    # the ratio allows the ideal pipeline fill; the whole-run one does not
    assert s["throughput"]["ratio"] == pytest.approx(60 / 78)
    assert s["throughput"]["ratio_whole_run"] == pytest.approx(60 / 80)
    assert s["throughput"]["ratio_second_half"] == pytest.approx(36 / 40)
    assert (s["throughput"]["fill_s"], s["throughput"]["depth"]) == (2.0, 2)
    assert s["throughput"]["first_product_s"] == 3.5
    # consumers in the flow that need inputs: frame-1 and window-1 (not wood, not frame-2)
    assert s["cycles"]["consumer_ratio"] == pytest.approx(140 / 200)
    assert (s["cycles"]["successful"], s["cycles"]["total"]) == (240, 340)
    assert s["messages"] == {"sent": 200, "received": 7, "per_successful_cycle": 200 / 240}
    # marked down before the clock started (agents still starting): shown, counted apart
    assert s["deaths"] == {"declared": 4, "false": 1, "refuted_suspicions": 4, "unclassified": 1,
                           "before_start": 2}
    assert s["reroute_s"]["count"] == 3
    assert (s["reroute_s"]["p50"], s["reroute_s"]["p99"]) == (1.0, 2.0)
    assert s["audit"]["lost"] == 0 and s["audit"]["nodes"] == 4
    first = s["nodes"][0]
    assert set(first) >= {"node_id", "in_flow", "successful_cycles", "total_cycles"}
    assert [n["node_id"] for n in s["nodes"]] == ["frame-1", "frame-2", "window-1", "wood-1"]
    assert list(s["per_node"])[:3] == [SUCCESSFUL, SKIPPED, TOTAL]
    assert not any(k.startswith("batches_received_from:") for k in s["per_node"])
    assert s["per_node"][SUCCESSFUL]["max"] == 100 and s["per_node"][SUCCESSFUL]["min"] == 0
    json.dumps(s)  # serialisable as is


def test_summary_without_products_reroute_counters_or_audit():
    s = summarise(
        run_data(
            bound_products=0.0,
            bound_products_whole_run=0.0,
            steady_bound_products=0.0,
            nodes=[],
            reroutes_s=[],
            reroute_counters_seen=False,
            audit=None,
            audit_error="no audit",
            first_final_s=None,
        )
    )
    assert s["throughput"]["ratio"] == 0.0 and s["cycles"]["consumer_ratio"] == 0.0
    assert s["throughput"]["ratio_whole_run"] == s["throughput"]["ratio_second_half"] == 0.0
    assert s["reroute_s"] == {
        "count": 0, "p50": None, "p99": None, "max": None, "unfinished": 0,
        "supplier_back_first": 0, "measurable": False,
    }  # fmt: skip
    assert s["audit"] is None
    out = io.StringIO()
    print_report(s, Console(file=out, width=120))
    assert (
        "not measurable" in out.getvalue() and "audit: not available (no audit)" in out.getvalue()
    )


def test_printed_report_shows_the_table_and_every_figure():
    out = io.StringIO()
    print_report(summarise(run_data()), Console(file=out, width=140))
    text = out.getvalue()
    assert all(n in text for n in ("wood-1", "frame-1", "frame-2", "window-1"))
    assert "waiting for input: whole cycles" in text and "out full: whole cycles" in text
    assert "60 final products (window)" in text and "ratio 0.769" in text
    assert "2 s pipeline fill (2 stages)" in text and "whole run 0.750" in text
    assert "second half 0.900" in text and "first product after 3.5 s" in text
    assert "140/200 successful = 0.700" in text
    assert ("deaths declared: 4, false: 1, unclassified: 1; refuted suspicions: 4; before the "
            "start (agents still starting): 2 marked down") in text
    assert "p50 1 s, p99 2 s" in text
    assert "lost 0, duplicated 0" in text
    assert "50 CPU s in 100 s = 0.50 of 2 cores" in text and "30.5 MiB mean" in text
    assert "capacity allows" not in text  # no bound given: nothing said about it


def test_report_splits_the_cpu_and_names_the_earliest_first_product():
    from bench.sim.results import cpu_phases

    resources = {"cpu_s": 50.0, "wall_s": 100.0, "cpu_cores": 0.5, "cpus_on_machine": 2,
                 **cpu_phases(at_start=1.0, at_clock=11.0, at_end=47.0, total=50.0, ran_s=90.0)}
    assert resources["cpu_s_starting"] == 10.0 and resources["cpu_s_stopping"] == 4.0
    assert resources["cpu_cores_running"] == pytest.approx(0.4)
    assert cpu_phases(1.0, None, None, 50.0, 90.0) == {}  # the clock never ran
    s = summarise(run_data(resources=resources, earliest_first_s=2.0,
                           earliest_first_lane_s=3.0))
    assert s["throughput"]["earliest_first_product_s"] == 2.0
    assert s["throughput"]["earliest_first_product_lane_s"] == 3.0
    out = io.StringIO()
    print_report(s, Console(file=out, width=200))
    text = out.getvalue()
    assert ("first product after 3.5 s (the suppliers' capacity allows 2 s; 3 s when each "
            "stage buys from one supplier per input)") in text
    assert ("0.50 of 2 cores (all processes: 10 CPU s starting, 0.40 cores while running, "
            "4 CPU s stopping)") in text


def snapshot(n_nodes: int) -> Snapshot:
    rows = tuple(
        NodeRow(f"t{i % 5:02d}-s{i}", f"t{i % 5:02d}", "dead" if i == 0 else "alive", i != 0,
                i, i + 1, 1)
        for i in range(n_nodes)
    )  # fmt: skip
    return Snapshot("demo", 12.0, 60.0, 7, "127.0.0.1:1", 2, 3, 5, 6.0, 1, 0, rows)


@pytest.mark.parametrize("n_nodes", [4, 40])
def test_live_view_renders_nodes_or_items_and_events(n_nodes):
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True)
    with LiveView(console) as view:
        view.update(snapshot(n_nodes))
        view.event(3.5, "SIGKILL t00-s0 (pid 1)")
    text = out.getvalue()
    assert "flow v7" in text and "SIGKILL t00-s0" in text and "(bound 6)" in text
    assert ("t00-s0" in text) if n_nodes <= 24 else ("suppliers alive" in text)


def test_plain_view_prints_events_and_periodic_status():
    out = io.StringIO()
    view = PlainView(out)
    view.update(snapshot(4))
    view.update(snapshot(4))  # within 5 s: no second status line
    view.event(3.5, "SIGKILL t00-s0")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "3/4 nodes alive" in lines[0] and "final products 5" in lines[0]
    assert lines[1] == "[   3.5s] SIGKILL t00-s0"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--types", "0"], "--types must be at least 1"),
        (["--cycle-s", "0"], "--cycle-s must be positive"),
        (["--failure-rate", "-1"], "--failure-rate must be >= 0"),
        (["--scenario", "/nonexistent/x.toml"], "No such file"),
    ],
)
def test_cli_refuses_bad_input_before_starting_anything(argv, message, capsys, tmp_path):
    assert main([*argv, "--keep", str(tmp_path / "k")]) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / "k").iterdir())  # nothing was started


def test_cli_refuses_a_non_empty_keep_dir(capsys, tmp_path):
    (tmp_path / "old").write_text("x")
    assert main(["--keep", str(tmp_path)]) == 2
    assert "must be a new or empty directory" in capsys.readouterr().err


def test_cli_help_and_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--replicas", "4"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--failure-rate" in capsys.readouterr().out


def test_gaps_in_the_cluster_view_are_reported():
    from bench.sim.poll import cluster_view_notes

    assert cluster_view_notes(polls=240, errors=0) == []
    (gaps,) = cluster_view_notes(polls=200, errors=7)
    assert "7 of fos-sim's coordinator calls" in gaps and "200 polls answered" in gaps
    (never,) = cluster_view_notes(polls=0, errors=240)
    assert "never read" in never and "unverified" in never

