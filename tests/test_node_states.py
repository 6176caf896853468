"""Node states that mean what they say, with real processes (a coordinator, fosctl, fos-agent):
a catalog applied with no agent running is all not-started and routes nothing; agents that
start make it in-flow; an agent's advertised address (port 0) and the catalog converge in
one step whichever comes first; the agents' production reports reach ``fosctl production``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from agent_util import Procs, agent_command, wait_until
from coord_util import running_cluster
from ops_util import http_get, ready_line

from fos_raft.cli.launcher import LocalCluster

CATALOG = """
[[node]]
id = "ns-saw"
address = "127.0.0.1:1"
produces = { item = "ns-wood", qty = 1 }

[[node]]
id = "ns-press"
produces = { item = "ns-frame", qty = 1 }
requires = [{ item = "ns-wood", qty = 1 }]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(1, tmp_path_factory.mktemp("node-states-coord"),
                         replica_flags={0: ["--metrics", "127.0.0.1:0"]}) as c:
        yield c


@pytest.fixture
def procs(tmp_path: Path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def fosctl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fos_raft.cli.fosctl", "--coordinators",
         ",".join(cluster.grpc_addresses), "--timeout", "10", *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ok_json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def states(cluster: LocalCluster) -> dict[str, dict]:
    return {n["node_id"]: n for n in ok_json(fosctl(cluster, "nodes", "--json"))["nodes"]}


def start_agent(procs: Procs, cluster: LocalCluster, tmp: Path, node: str,
                *extra: str) -> Path:
    ready = tmp / f"{node}.ready"
    procs.start(node, [*agent_command(), "--node-id", node, "--listen", "127.0.0.1:0",
                       "--coordinators", ",".join(cluster.grpc_addresses),
                       "--data-dir", str(tmp / node), "--cycle-s", "0.05",
                       "--ready-file", str(ready), *extra])
    return ready


def test_catalog_without_agents_is_not_started_then_agents_make_it_flow(
        cluster: LocalCluster, tmp_path: Path, procs: Procs):
    catalog = tmp_path / "factory.toml"
    catalog.write_text(CATALOG)
    applied = ok_json(fosctl(cluster, "apply", str(catalog), "--json"))
    assert [r["action"] for r in applied["results"]] == ["registered", "registered"]
    nodes = states(cluster)
    assert {n: v["state"] for n, v in nodes.items()} == {
        "ns-saw": "not-started", "ns-press": "not-started"}
    assert ok_json(fosctl(cluster, "flow", "--json"))["edges"] == []
    table = fosctl(cluster, "nodes")
    assert table.returncode == 0 and table.stdout.count("not-started") == 2

    readies = [start_agent(procs, cluster, tmp_path, n) for n in ("ns-saw", "ns-press")]
    for ready in readies:
        wait_until(ready.exists, timeout=60, what=f"{ready.name}")
    listens = {r.name.split(".")[0]: r.read_text().strip() for r in readies}

    def flowing() -> bool:
        nodes = states(cluster)
        return all(v["state"] == "in-flow" for v in nodes.values()) and nodes
    wait_until(flowing, timeout=30, what="both nodes in-flow")
    nodes = states(cluster)
    # the agents' port-0 addresses won over the catalog's in one step (their rejoin)
    assert {n: v["address"] for n, v in nodes.items()} == listens
    edges = ok_json(fosctl(cluster, "flow", "--json"))["edges"]
    assert [(e["supplier"], e["consumer"]) for e in edges] == [("ns-saw", "ns-press")]

    # applying the catalog again changes nothing and says where the agents listen
    dry = ok_json(fosctl(cluster, "apply", str(catalog), "--dry-run", "--json"))
    assert [r["action"] for r in dry["results"]] == ["unchanged", "unchanged"]
    (moved,) = [r for r in dry["results"] if "agent_address" in r]
    assert moved["node_id"] == "ns-saw" and moved["catalog_address"] == "127.0.0.1:1"
    assert moved["agent_address"] == listens["ns-saw"]
    again = ok_json(fosctl(cluster, "apply", str(catalog), "--json"))
    assert [r["action"] for r in again["results"]] == ["unchanged", "unchanged"]
    assert states(cluster)["ns-saw"]["address"] == listens["ns-saw"]

    # production figures: the press's frames reach fosctl production from the reports
    # (each agent reports on its own period: wait for both stages' reports)
    def finished() -> dict | None:
        doc = ok_json(fosctl(cluster, "production", "--json"))
        items = {i["item"]: i for i in doc["final_items"]}
        stages = {s["node_id"]: s for s in doc["stages"]}
        made = all(stages.get(n, {}).get("cycles_ok", 0) >= 3 for n in ("ns-press", "ns-saw"))
        return doc if made and items.get("ns-frame", {}).get("finished", 0) >= 3 else None
    doc = wait_until(finished, timeout=40, what="finished frames and both stages reported")
    assert [i["item"] for i in doc["final_items"]] == ["ns-frame"]
    assert doc["bottleneck"]["text"]
    # the same figures for Prometheus
    text = http_get(f"http://{ready_line(cluster, 0)['metrics']}/metrics")[1]
    assert 'fos_node_state{node="ns-press",replica="r0",state="in-flow"} 1.0' in text
    assert 'fos_node_state{node="ns-press",replica="r0",state="not-started"} 0.0' in text
    finished_line = [ln for ln in text.splitlines()
                     if ln.startswith('fos_item_finished_batches_total{item="ns-frame"')]
    assert finished_line and float(finished_line[0].split()[-1]) >= 3
    assert 'fos_node_cycles_total{input="",node="ns-press",outcome="ok"' in text

    # an agent on port 0 before the catalog (the README's example): it registers itself
    # where it listens, and the catalog's address for it changes nothing
    solo = start_agent(procs, cluster, tmp_path, "ns-saw-2", "--produces", "ns-wood:1")
    wait_until(solo.exists, timeout=60, what="ns-saw-2 ready")
    listens_2 = solo.read_text().strip()
    wait_until(lambda: states(cluster).get("ns-saw-2", {}).get("state") == "in-flow",
               timeout=30, what="ns-saw-2 in-flow")
    catalog.write_text(CATALOG + """
[[node]]
id = "ns-saw-2"
address = "127.0.0.1:2"
produces = { item = "ns-wood", qty = 1 }
""")
    dry = ok_json(fosctl(cluster, "apply", str(catalog), "--dry-run", "--json"))
    assert [r["action"] for r in dry["results"]] == ["unchanged"] * 3
    assert {r["node_id"]: r["agent_address"] for r in dry["results"]
            if "agent_address" in r} == {"ns-saw": listens["ns-saw"], "ns-saw-2": listens_2}
    text = fosctl(cluster, "apply", str(catalog))
    assert text.returncode == 0 and "3 unchanged" in text.stdout.splitlines()[-1]
    assert f"its agent listens at {listens_2}" in text.stdout
    assert states(cluster)["ns-saw-2"]["address"] == listens_2
