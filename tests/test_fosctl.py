"""fosctl and its rendering: pure tests of rows/JSON/DOT, the CLI's offline failures, and the
CLI end to end against a real 3-replica coordinator cluster (bottom half)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.convert import spec_to_pb
from fos_raft.cli import render
from fos_raft.cli.catalog_file import load_catalog, parse_catalog
from fos_raft.cli.fosctl import Out, build_parser, command_label
from fos_raft.model import Edge, ItemReq, NodeSpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "window-factory.toml"
SPECS = load_catalog(EXAMPLE)
FOSCTL = Path(sys.executable).with_name("fosctl")


def closed_port_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


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
    assert "#b7e4b0" in in_flow and "#b7e4b0" not in idle and "standby" in idle
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
    waiting = render.NodeView(SPECS[0], alive=False, started=False)
    assert render.node_rows([waiting])[0][5:] == (
        "not-started", "0", "its agent has not registered yet")
    quiet = render.NodeView(SPECS[0], reported_state="stale", contact_age_s=31.4)
    assert render.node_rows([quiet])[0][7] == "no report from its agent for 31 s"
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
    assert render.NodeView(spec).state == "standby"
    assert render.NodeView(spec, alive=False, started=False, in_flow=False).state \
        == "not-started"
    assert render.NodeView(spec, reported_state="stale").state == "stale"


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
        "allowed keys: id, address, produces, requires, capacity, target_per_hour"
    )


def test_cli_unreachable_cluster_exits_3_with_the_reason():
    done = fosctl("--timeout", "1", "drain", "press-7",
                  env_extra={"FOS_COORDINATORS": "127.0.0.1:1"})
    assert done.returncode == 3
    line = one_line_error(done)
    assert line.startswith("fosctl: drain press-7: UNAVAILABLE: no coordinator replica answered")
    assert "127.0.0.1:1" in line


# ---------------------------------------------------------------- end to end on a real cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from fos_raft.cli.launcher import LocalCluster

    local = LocalCluster(3, tmp_path_factory.mktemp("fosctl-cluster"))
    try:
        local.start()
        local.wait_for_leader(timeout=30.0)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def ctl(cluster):
    """Run fosctl against the cluster (addresses through FOS_COORDINATORS)."""
    env = {"FOS_COORDINATORS": ",".join(cluster.grpc_addresses)}

    def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
        return fosctl("--timeout", "20", *args, env_extra={**env, **(env_extra or {})})

    run.addresses = list(cluster.grpc_addresses)  # type: ignore[attr-defined]
    return run


def stand_in_agents_rejoin(addresses: list[str], nodes: list[str]) -> int:
    """What each node's agent does when it starts against a catalog entry: Rejoin (these
    tests check fosctl, not agents; tests/test_node_states.py runs real ones)."""
    from fos_raft.api.client import CoordinatorClient

    async def go() -> int:
        client = CoordinatorClient(addresses)
        try:
            version = 0
            for node in nodes:
                version = await client.rejoin(node, timeout=20)
            return version
        finally:
            await client.close()

    return asyncio.run(go())


def ok_json(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_e2e_apply_is_idempotent_and_nodes_and_flow_show_the_chain(ctl):
    done = ctl("apply", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines[:8]] == [["registered", s.node_id] for s in SPECS]
    assert lines[-1].startswith("8 registered; flow version ")

    again = ok_json(ctl("apply", str(EXAMPLE), "--json"))
    assert [r["action"] for r in again["results"]] == ["unchanged"] * 8
    assert again["complete"] is True

    # no agent has run: nothing is routed to a node whose agent never registered
    nodes = ok_json(ctl("nodes", "--json"))
    assert nodes["flow_version"] == again["flow_version"]
    assert {n["node_id"]: n["state"] for n in nodes["nodes"]} == {
        s.node_id: "not-started" for s in SPECS}
    assert not any(n["alive"] or n["started"] for n in nodes["nodes"])
    assert ok_json(ctl("flow", "--format", "json"))["edges"] == []

    version = stand_in_agents_rejoin(ctl.addresses, [s.node_id for s in SPECS])
    nodes = ok_json(ctl("nodes", "--json"))
    assert nodes["flow_version"] >= version
    assert {n["node_id"]: n["state"] for n in nodes["nodes"]} == {
        s.node_id: "in-flow" for s in SPECS}
    assert {n["node_id"]: n["capacity"] for n in nodes["nodes"]}["press-2"] == 2

    flow = ok_json(ctl("flow", "--format", "json"))
    assert flow["version"] == nodes["flow_version"]
    assert sorted(flow["members"]) == sorted(s.node_id for s in SPECS)
    possible = set(render.possible_links(SPECS))
    assert {(e["supplier"], e["consumer"], e["item"]) for e in flow["edges"]} <= possible
    consumers = {(s.node_id, r.item) for s in SPECS for r in s.requires}
    primaries = {(e["consumer"], e["item"]) for e in flow["edges"] if e["rank"] == 0}
    assert primaries == consumers  # every input of every consumer has a primary supplier

    dot = ctl("flow", "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph flow {")
    assert dot.stdout.count("style=bold") == len(primaries)
    assert f"flow version {flow['version']}" in dot.stdout

    table = ctl("flow")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].startswith(f"flow version {flow['version']}: 8 nodes")

    exported = ctl("nodes", "--toml")
    assert exported.returncode == 0
    assert parse_catalog(exported.stdout) == sorted(SPECS, key=lambda s: s.node_id)


def test_e2e_drain_and_undrain_move_the_flow_and_bad_names_fail_cleanly(ctl):
    ok_json(ctl("apply", str(EXAMPLE), "--json"))
    drained = ok_json(ctl("drain", "saw-1", "--json"))
    assert drained["action"] == "drain" and drained["flow_version"] > 0
    flow = ok_json(ctl("flow", "--json"))
    assert flow["version"] >= drained["flow_version"]
    assert not any(e["supplier"] == "saw-1" for e in flow["edges"])
    assert {e["supplier"] for e in flow["edges"] if e["item"] == "wood"} == {"saw-2"}
    state = {n["node_id"]: n["state"] for n in ok_json(ctl("nodes", "--json"))["nodes"]}
    assert state["saw-1"] == "drained"
    hood = ok_json(ctl("flow", "--node", "press-1", "--json"))
    assert hood["node_id"] == "press-1" and hood["in_flow"]
    assert {n["node_id"] for n in hood["neighbours"]} >= {"saw-2"}

    done = ctl("undrain", "saw-1")
    assert done.returncode == 0
    assert re.fullmatch(r"undrained saw-1 \(flow version \d+\)\n", done.stdout)
    flow = ok_json(ctl("flow", "--json"))
    assert any(e["supplier"] == "saw-1" and e["rank"] == 0 for e in flow["edges"]), json.dumps(flow)

    missing = ctl("drain", "press-7")
    assert missing.returncode == 1
    assert one_line_error(missing) == (
        "fosctl: drain press-7: NOT_FOUND: node 'press-7' is not registered")
    invalid = ctl("decommission", "bad id!")
    assert invalid.returncode == 1
    assert one_line_error(invalid).startswith("fosctl: decommission bad id!: INVALID_ARGUMENT: ")
    future = ctl("flow", "--at-version", "999999")
    assert future.returncode == 1
    assert "does not exist yet" in one_line_error(future)


def test_e2e_update_spec_and_apply_detect_conflicts_and_cycles(ctl, tmp_path):
    ok_json(ctl("apply", str(EXAMPLE), "--json"))
    before = {n["node_id"]: n for n in ok_json(ctl("nodes", "--json"))["nodes"]}
    stale = ctl("update-spec", "press-1", "--capacity", "5",
                "--expected-version", str(before["press-1"]["spec_version"] + 1000))
    assert stale.returncode == 1
    assert one_line_error(stale).startswith("fosctl: update-spec press-1: FAILED_PRECONDITION: ")

    updated = ok_json(ctl("update-spec", "press-1", "--capacity", "5", "--json"))
    assert updated["action"] == "updated" and updated["spec"]["capacity"] == 5
    after = {n["node_id"]: n for n in ok_json(ctl("nodes", "--json"))["nodes"]}
    assert after["press-1"]["capacity"] == 5
    assert after["press-1"]["spec_version"] > before["press-1"]["spec_version"]

    # a dry run says what apply would do and sends nothing
    dry = ok_json(ctl("apply", str(EXAMPLE), "--dry-run", "--json"))
    assert dry["dry_run"] is True
    assert {r["node_id"]: r["action"] for r in dry["results"]}["press-1"] == "would update"
    assert ok_json(ctl("nodes", "--json"))["flow_version"] == updated["flow_version"]

    # apply puts the file's spec back (capacity 1), an update with compare-and-set
    back = ok_json(ctl("apply", str(EXAMPLE), "--json"))
    actions = {r["node_id"]: r["action"] for r in back["results"]}
    assert actions["press-1"] == "updated"
    assert set(actions.values()) == {"updated", "unchanged"}

    # a node that makes wood out of windows closes a cycle with the registered chain:
    # refused before anything is sent, so the flow version does not move
    cyclic = tmp_path / "cyclic.toml"
    cyclic.write_text('[[node]]\nid = "recycler"\naddress = "127.0.0.1:7299"\n'
                      'produces = { item = "wood", qty = 1 }\n'
                      'requires = [{ item = "window", qty = 1 }]\n')
    version = ok_json(ctl("nodes", "--json"))["flow_version"]
    refused = ctl("apply", str(cyclic))
    assert refused.returncode == 2
    assert "cycle" in one_line_error(refused)
    assert ok_json(ctl("nodes", "--json"))["flow_version"] == version
    assert "recycler" not in {n["node_id"] for n in ok_json(ctl("nodes", "--json"))["nodes"]}


def test_e2e_apply_needs_force_to_change_what_a_live_stage_makes(ctl, tmp_path):
    ok_json(ctl("apply", str(EXAMPLE), "--json"))
    typo = tmp_path / "typo.toml"
    typo.write_text(EXAMPLE.read_text().replace(
        'id = "saw-1"\naddress = "127.0.0.1:7201"\nproduces = { item = "wood"',
        'id = "saw-1"\naddress = "127.0.0.1:7201"\nproduces = { item = "glass"', 1))
    assert typo.read_text() != EXAMPLE.read_text()
    version = ok_json(ctl("nodes", "--json"))["flow_version"]

    refused = ctl("apply", str(typo))
    assert refused.returncode == 2
    error = one_line_error(refused)
    assert "saw-1: produces 3xwood -> 3xglass" in error and "--force" in error
    assert ok_json(ctl("nodes", "--json"))["flow_version"] == version

    dry = ok_json(ctl("apply", str(typo), "--dry-run", "--json"))
    saw = {r["node_id"]: r for r in dry["results"]}["saw-1"]
    assert saw["action"] == "would update" and "3xglass" in saw["stage_change"]

    forced = ok_json(ctl("apply", str(typo), "--force", "--json"))
    assert {r["node_id"]: r["action"] for r in forced["results"]}["saw-1"] == "updated"
    nodes = {n["node_id"]: n for n in ok_json(ctl("nodes", "--json"))["nodes"]}
    assert nodes["saw-1"]["produces"]["item"] == "glass"
    ok_json(ctl("apply", str(EXAMPLE), "--force", "--json"))  # leave the chain as it was


def test_e2e_status_members_watch_and_svg(ctl, cluster):
    status = ok_json(ctl("status", "--json"))
    assert status["has_quorum"] is True
    assert {r["grpc_address"] for r in status["replicas"]} == set(cluster.grpc_addresses)
    every = ok_json(ctl("status", "--all", "--json"))["replicas"]
    assert len(every) == 3 and all("error" not in r for r in every)
    members = ok_json(ctl("members", "list", "--json"))
    assert sum(r["is_leader"] for r in members["replicas"]) == 1

    version = ok_json(ctl("nodes", "--json"))["flow_version"]
    watched = ctl("watch", "--count", "1", "--json")
    assert watched.returncode == 0, watched.stderr
    (line,) = watched.stdout.splitlines()
    assert json.loads(line)["version"] >= version

    no_dot = ctl("flow", "--format", "svg", env_extra={"PATH": str(FOSCTL.parent)})
    assert no_dot.returncode == 1
    assert "Graphviz 'dot' is not installed" in one_line_error(no_dot)
    if shutil.which("dot"):
        svg = ctl("flow", "--format", "svg")
        assert svg.returncode == 0 and "<svg" in svg.stdout


def test_e2e_a_dead_replica_in_the_list_does_not_matter(ctl, cluster):
    dead = closed_port_address()
    done = ctl("nodes", "--json",
               env_extra={"FOS_COORDINATORS": ",".join([dead, *cluster.grpc_addresses])})
    assert ok_json(done)["nodes"]
