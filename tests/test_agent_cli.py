"""``fos-agent`` and ``fos_agent.host`` as real processes against a real coordinator cluster:
ready file, spec from the catalog by id alone, Prometheus /metrics, SIGTERM -> exit 0,
one-line errors (exit 2 for bad arguments, 1 for a node that cannot start), several agents
trading inside one host process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from agent_util import Procs, agent_command, wait_until

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.api.client import CoordinatorClient
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.model import ItemReq, NodeSpec


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCluster(3, tmp_path_factory.mktemp("agent-cli-coord"))
    try:
        c.start()
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


@pytest.fixture
def procs(tmp_path: Path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*agent_command(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, fragment", [
    ([], "required"),
    (["--node-id", "a", "--listen", "nope", "--coordinators", "x:1", "--data-dir", "d"],
     "--listen 'nope' is not HOST:PORT"),
    (["--node-id", "a", "--listen", "127.0.0.1:0", "--coordinators", "x:1", "--data-dir",
      "d", "--produces", "wood"], "'wood' is not item:qty"),
    (["--node-id", "a", "--listen", "127.0.0.1:0", "--coordinators", "x:1", "--data-dir",
      "d", "--produces", "w:1", "--requires", "w:0"], "must be a positive integer"),
    (["--node-id", "a", "--listen", "127.0.0.1:0", "--coordinators", "x:1", "--data-dir",
      "d", "--requires", "w:1"], "--requires needs --produces"),
    (["--node-id", "a", "--listen", "127.0.0.1:0", "--coordinators", "x:1", "--data-dir",
      "d", "--prefetch", "0"], "--prefetch must be >= 1"),
])
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], fragment: str):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def _stats(address: str) -> agent_pb2.StatsReply | None:
    import grpc

    with grpc.insecure_channel(address) as channel:
        try:
            return agent_pb2_grpc.AgentStub(channel).Stats(agent_pb2.StatsRequest(), timeout=2)
        except grpc.RpcError:
            return None


def test_spec_by_id_ready_file_metrics_and_sigterm(cluster: LocalCluster, tmp_path: Path,
                                                   procs: Procs):
    address = f"127.0.0.1:{free_port()}"
    spec = NodeSpec("c1-src", address, ItemReq("c1item", 2))

    async def register() -> None:
        async with CoordinatorClient(cluster.grpc_addresses) as client:
            await client.register(spec)

    asyncio.run(register())
    metrics = f"127.0.0.1:{free_port()}"
    ready = tmp_path / "ready"
    procs.start("c1-src", [*agent_command(), "--node-id", "c1-src", "--listen", address,
                           "--coordinators", ",".join(cluster.grpc_addresses),
                           "--data-dir", str(tmp_path / "c1"), "--cycle-s", "0.05",
                           "--metrics", metrics, "--ready-file", str(ready)])
    wait_until(ready.exists, timeout=60, what="ready file")
    assert ready.read_text().strip() == address
    reply = wait_until(lambda: (r := _stats(address)) and r.counters["batches_produced"] >= 3
                       and r, what="production")
    assert reply.in_flow and reply.node_id == "c1-src"
    body = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).read().decode()
    assert 'fos_agent_successful_cycles_total{node="c1-src"}' in body
    assert 'fos_agent_messages_sent_total{kind="Ping",node="c1-src"}' in body
    assert procs.terminate("c1-src") == 0
    # a source that nobody consumes is a sink, but a catalog id it does not know is an error
    result = run_cli("--node-id", "c1-unknown", "--listen", "127.0.0.1:0", "--coordinators",
                     ",".join(cluster.grpc_addresses), "--data-dir", str(tmp_path / "u"))
    assert result.returncode == 1
    assert "not in the catalog" in result.stderr.strip().splitlines()[-1]
    # the same data dir under another node id: the WAL refuses, exit 1
    result = run_cli("--node-id", "c1-other", "--listen", "127.0.0.1:0", "--coordinators",
                     ",".join(cluster.grpc_addresses), "--data-dir", str(tmp_path / "c1"),
                     "--produces", "c1item:2")
    assert result.returncode == 1
    assert "belongs to node 'c1-src'" in result.stderr.strip().splitlines()[-1]


def test_host_runs_a_trading_pair_in_one_process(cluster: LocalCluster, tmp_path: Path,
                                                 procs: Procs):
    config = tmp_path / "agents.toml"
    config.write_text(f"""
coordinators = {json.dumps(cluster.grpc_addresses)}
[[agents]]
node_id = "h1-src"
listen = "127.0.0.1:0"
data_dir = "{tmp_path / 'h1-src'}"
produces = "h1a:1"
cycle_s = 0.05

[[agents]]
node_id = "h1-sink"
listen = "127.0.0.1:0"
data_dir = "{tmp_path / 'h1-sink'}"
produces = "h1b:1"
requires = ["h1a:1"]
cycle_s = 0.05
""")
    ready = tmp_path / "host.ready"
    procs.start("host", [sys.executable, "-m", "fos_agent.host", "--config", str(config),
                         "--ready-file", str(ready)])
    wait_until(ready.exists, timeout=60, what="host ready")
    addresses = json.loads(ready.read_text())
    assert set(addresses) == {"h1-src", "h1-sink"}
    wait_until(lambda: (r := _stats(addresses["h1-sink"]))
               and r.counters["successful_cycles"] >= 5, what="the pair trading in one host")
    sink = _stats(addresses["h1-sink"])
    assert sink is not None and sink.counters["batches_received_from:h1-src"] >= 5
    assert procs.terminate("host") == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[[agents]]\nnode_id = "x"\nlisten = "127.0.0.1:0"\n')
    result = subprocess.run([sys.executable, "-m", "fos_agent.host", "--config", str(bad),
                             "--coordinators", "127.0.0.1:1"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "'data_dir' is required" in result.stderr


def test_example_factory_software_runs():
    example = Path(__file__).resolve().parent.parent / "examples" / "factory_software.py"
    result = subprocess.run([sys.executable, str(example), "--cycles", "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    made = [json.loads(line) for line in result.stderr.splitlines()
            if '"frames made"' in line]
    assert len(made) == 3 and all(m["waste_cm"] >= 0 for m in made)
