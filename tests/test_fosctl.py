"""fosctl and its rendering: pure tests of rows/JSON/DOT, the CLI's offline failures, and the
CLI end to end against a real 3-replica coordinator cluster (bottom half)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fos_pb import coordinator_pb2 as pb
from fos_raft import render
from fos_raft.catalog_file import load_catalog
from fos_raft.convert import spec_to_pb
from fos_raft.fosctl import Out, build_parser, command_label
from fos_raft.model import Edge, ItemReq, NodeSpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "window-factory.toml"
SPECS = load_catalog(EXAMPLE)
FOSCTL = Path(sys.executable).with_name("fosctl")


def view(node_id: str, **flags) -> render.NodeView:
    spec = next(s for s in SPECS if s.node_id == node_id)
    return render.NodeView(spec=spec, **flags)


# ---------------------------------------------------------------- pure rendering


def test_possible_links_are_every_supplier_consumer_pair_by_item():
    links = render.possible_links(SPECS)
    assert len(links) == 12  # wood 2x2, window_frame 2x2, glass 2x2
    assert ("saw-1", "press-2", "wood") in links
    assert ("kiln-2", "assembly-1", "glass") in links
    assert not any(s.startswith("saw") and c.startswith("assembly") for s, c, _ in links)


def dot_lines(dot: str, a: str, b: str | None = None) -> list[str]:
    """Statements of the DOT source about node a (or edge a -> b)."""
    head = f'"{a}" -> "{b}" [' if b else f'"{a}" ['
    return [ln.strip() for ln in dot.splitlines() if ln.strip().startswith(head)]


def test_flow_dot_distinguishes_primaries_backups_possible_links_and_node_states():
    nodes = [
        view("saw-1"), view("saw-2", alive=False, down_reason='probe "failed"'),
        view("kiln-1"), view("kiln-2", drained=True),
        view("press-1"), view("press-2"), view("assembly-1"), view("assembly-2"),
    ]
    flow = render.FlowView(
        version=42,
        edges=(
            Edge("saw-1", "press-1", "wood", 3),
            Edge("press-1", "assembly-1", "window_frame", 1),
            Edge("press-2", "assembly-1", "window_frame", 1, rank=1),
            Edge("kiln-1", "assembly-1", "glass", 2),
            Edge("gone-9", "assembly-1", "glass", 2, rank=1),
        ),
        members=("assembly-1", "kiln-1", "press-1", "press-2", "saw-1"),
    )
    dot = render.flow_dot(flow, nodes)
    assert dot.startswith("digraph flow {") and dot.rstrip().endswith("}")
    assert "flow version 42" in dot

    (primary,) = dot_lines(dot, "saw-1", "press-1")
    assert "style=bold" in primary and 'label="3x wood"' in primary
    (backup,) = dot_lines(dot, "press-2", "assembly-1")
    assert "style=dashed" in backup and "backup 1" in backup and "dotted" not in backup
    # a possible link not in the flow: dotted grey, drawn once; active ones never dotted
    (possible,) = dot_lines(dot, "saw-2", "press-2")
    assert "style=dotted" in possible and "#aaaaaa" in possible
    assert len(dot_lines(dot, "saw-1", "press-1")) == 1
    assert len(dot_lines(dot, "press-1", "assembly-2")) == 1  # possible only

    (down,) = dot_lines(dot, "saw-2")
    assert "shape=octagon" in down and "DOWN: probe \\\"failed\\\"" in down
    (drained,) = dot_lines(dot, "kiln-2")
    assert "dashed" in drained and "drained" in drained
    (in_flow,) = dot_lines(dot, "press-1")
    (idle,) = dot_lines(dot, "assembly-2")
    assert "#b7e4b0" in in_flow and "#b7e4b0" not in idle and "idle" in idle
    (ghost,) = dot_lines(dot, "gone-9")
    assert "not in catalog" in ghost


def test_dot_to_svg_renders_with_graphviz_or_says_it_is_missing():
    dot = render.flow_dot(render.FlowView(1, (Edge("saw-1", "press-1", "wood", 3),),
                                          ("press-1", "saw-1")), [view("saw-1"), view("press-1")])
    with pytest.raises(render.RenderError, match="not installed"):
        render.dot_to_svg(dot, dot_binary="dot-binary-that-does-not-exist")
    if shutil.which("dot"):  # rendered for real where Graphviz is installed
        svg = render.dot_to_svg(dot)
        assert "<svg" in svg and "3x wood" in svg and "window_frame" in svg
        with pytest.raises(render.RenderError, match="failed"):
            render.dot_to_svg("digraph { this is not dot")


def test_rows_and_json_from_protobuf_replies():
    reply = pb.ListNodesReply(
        flow_version=9,
        nodes=[
            pb.NodeInfo(spec=spec_to_pb(SPECS[4]), alive=True, in_flow=True, spec_version=3),
            pb.NodeInfo(spec=spec_to_pb(SPECS[0]), alive=False, down_reason="probe failed"),
        ],
    )
    views = render.nodes_from_pb(reply)
    assert [v.spec.node_id for v in views] == ["press-1", "saw-1"]  # sorted
    assert [v.state for v in views] == ["in-flow", "down"]
    rows = render.node_rows(views)
    assert rows[0] == ("press-1", "127.0.0.1:7205", "1xwindow_frame", "3xwood", "1",
                       "in-flow", "3", "")
    assert rows[1][3] == "-" and rows[1][5:] == ("down", "0", "probe failed")
    data = render.nodes_json(9, views)
    assert data["flow_version"] == 9
    assert data["nodes"][0]["requires"] == [{"item": "wood", "qty": 3}]
    assert data["nodes"][1]["state"] == "down"
    json.dumps(data)

    flow = render.flow_from_pb(pb.Flow(version=5, members=["b", "a"], edges=[
        pb.Edge(supplier="s2", consumer="c", item="x", qty=1, rank=1),
        pb.Edge(supplier="s1", consumer="c", item="x", qty=1, rank=0),
    ]))
    assert flow.members == ("a", "b")
    assert render.flow_rows(flow.edges) == [
        ("x", "s1", "c", "1", "primary"), ("x", "s2", "c", "1", "backup 1")]
    assert render.flow_json(flow)["edges"][0] == {
        "supplier": "s1", "consumer": "c", "item": "x", "qty": 1, "rank": 0}


def test_node_state_precedence():
    spec = NodeSpec("n", "h:1", ItemReq("x", 1))
    assert render.NodeView(spec, alive=False, drained=True, in_flow=True).state == "down"
    assert render.NodeView(spec, drained=True, in_flow=True).state == "drained"
    assert render.NodeView(spec, in_flow=True).state == "in-flow"
    assert render.NodeView(spec).state == "idle"


def test_plain_table_when_not_a_terminal(capsys):
    Out(as_json=False).table(("node", "state"), [("saw-1", "in-flow"), ("assembly-12", "down")])
    assert capsys.readouterr().out.splitlines() == [
        "NODE         STATE",
        "saw-1        in-flow",
        "assembly-12  down",
    ]


@pytest.mark.parametrize(
    ("argv", "label"),
    [
        (["drain", "press-7"], "drain press-7"),
        (["apply", "f.toml", "--json"], "apply f.toml"),
        (["flow", "--node", "x", "--format", "dot"], "flow"),
        (["members", "add", "127.0.0.1:9"], "members add 127.0.0.1:9"),
        (["update-spec", "n", "--produces", "wood:3", "--requires", "none"], "update-spec n"),
    ],
)
def test_command_labels_for_error_lines(argv, label):
    assert command_label(build_parser().parse_args(argv)) == label


def test_json_flag_is_accepted_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--json", "nodes"]).json is True
    assert parser.parse_args(["nodes", "--json"]).json is True
    assert parser.parse_args(["nodes"]).json is False
    args = parser.parse_args(["update-spec", "n", "--requires", "wood:3, glass:2"])
    assert args.requires == (ItemReq("wood", 3), ItemReq("glass", 2))


# ---------------------------------------------------------------- the CLI without a cluster


def fosctl(*args: str, env_extra: dict | None = None, timeout: float = 60.0):
    env = {k: v for k, v in os.environ.items() if k != "FOS_COORDINATORS"}
    env.update(env_extra or {})
    return subprocess.run([str(FOSCTL), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_cli_without_coordinators_is_a_usage_error():
    done = fosctl("nodes")
    assert done.returncode == 2
    assert re.fullmatch(r"fosctl: nodes: no coordinators: .*FOS_COORDINATORS",
                        one_line_error(done))


def test_cli_refuses_an_invalid_catalog_before_contacting_anyone(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[node]]\nid = "a"\naddress = "127.0.0.1:1"\n'
                   'produces = { item = "w", qty = 1 }\nspeed = 3\n')
    # the coordinator address is unroutable: reaching it would fail differently (exit 3)
    done = fosctl("--coordinators", "127.0.0.1:1", "apply", str(bad))
    assert done.returncode == 2
    assert one_line_error(done) == (
        f"fosctl: apply {bad}: {bad}:5: node 'a': unknown key 'speed'; "
        "allowed keys: id, address, produces, requires, capacity"
    )


def test_cli_unreachable_cluster_exits_3_with_the_reason():
    done = fosctl("--timeout", "1", "drain", "press-7",
                  env_extra={"FOS_COORDINATORS": "127.0.0.1:1"})
    assert done.returncode == 3
    line = one_line_error(done)
    assert line.startswith("fosctl: drain press-7: UNAVAILABLE: no coordinator replica answered")
    assert "127.0.0.1:1" in line
