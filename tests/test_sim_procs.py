"""Agent process supervision with a stand-in agent program (real processes, real signals)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from bench.sim.procs import AgentSupervisor, free_ports, pack_nodes, tail
from bench.sim.topology import generate_topology
from fos_raft.model import ItemReq, NodeSpec

# Records its argv and start count in its data dir, then waits for a signal; exits 3 when its
# data dir holds a file named "crash" (to test agents that end on their own).
STAND_IN = r"""
import json, os, signal, sys, time
args = sys.argv[1:]
if "--config" in args:  # a multi-agent host: one data dir per agent of its config
    config = json.load(open(args[args.index("--config") + 1]))
    dirs = [a["data_dir"] for a in config["agents"]]
else:
    dirs = [args[args.index("--data-dir") + 1]]
def put(path, text):  # whole or not at all: the test polls these files
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
for data in dirs:  # argv first: the test reads it once "starts" shows this start
    count_file = os.path.join(data, "starts")
    n = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
    put(os.path.join(data, "argv"), " ".join(args))
    put(count_file, str(n))
print("stand-in agent up", flush=True)
if any(os.path.exists(os.path.join(d, "crash")) for d in dirs):
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(1)
"""


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def spec(node: str, port: int, *requires: str) -> NodeSpec:
    reqs = tuple(ItemReq(r, 2) for r in requires)
    return NodeSpec(node, f"127.0.0.1:{port}", ItemReq(node.split("-")[0], 2), reqs)


@pytest.fixture
def supervisor(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    sup = AgentSupervisor(
        tmp_path / "run",
        ["127.0.0.1:1", "127.0.0.1:2"],
        0.5,
        [sys.executable, str(script)],
        host_command=[sys.executable, str(script)],
    )
    try:
        yield sup
    finally:
        sup.stop_all(grace_s=2.0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_kill_restart_on_the_same_data_dir_and_stop(supervisor: AgentSupervisor):
    p1, p2 = free_ports(2)
    wood, frame = spec("wood-1", p1), spec("frame-1", p2, "wood", "glue")
    supervisor.start(wood)
    pid = supervisor.start(frame)
    starts = supervisor.data_dir("frame-1") / "starts"
    assert wait_for(lambda: starts.exists() and starts.read_text() == "1")
    argv = (supervisor.data_dir("frame-1") / "argv").read_text()
    assert f"--node-id frame-1 --listen 127.0.0.1:{p2}" in argv
    assert "--coordinators 127.0.0.1:1,127.0.0.1:2" in argv
    assert "--produces frame:2" in argv and "--requires wood:2,glue:2" in argv
    assert "--cycle-s 0.5" in argv
    with pytest.raises(ValueError, match="already started"):
        supervisor.start(frame)
    with pytest.raises(ValueError, match="still running"):
        supervisor.restart("frame-1")

    assert supervisor.kill("frame-1") == ["frame-1"]
    assert not pid_alive(pid) and not supervisor.running("frame-1")
    assert supervisor.exited() == []  # a kill is not an unexpected exit
    new_pid = supervisor.restart("frame-1")
    assert new_pid != pid and supervisor.starts("frame-1") == 2
    assert wait_for(lambda: starts.read_text() == "2")  # same data dir, second start
    assert "fos-sim start #2" in tail(supervisor.log_of("frame-1"), 10)

    pids = list(supervisor.pids().values())
    assert len(pids) == 2
    supervisor.stop_all(grace_s=5.0)
    assert not any(pid_alive(p) for p in pids)
    assert supervisor.wal_dirs() == [supervisor.data_dir("frame-1"), supervisor.data_dir("wood-1")]


def test_agents_that_exit_on_their_own_are_reported(supervisor: AgentSupervisor):
    (port,) = free_ports(1)
    supervisor.data_dir("glue-1").mkdir(parents=True)
    (supervisor.data_dir("glue-1") / "crash").write_text("")
    supervisor.start(spec("glue-1", port))
    assert wait_for(lambda: supervisor.exited() == [("glue-1", 3)])
    assert "stand-in agent up" in tail(supervisor.log_of("glue-1"))


def test_stop_all_kills_agents_that_ignore_sigterm(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time, sys\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\nwhile True: time.sleep(1)\n"
    )
    sup = AgentSupervisor(tmp_path / "run", ["127.0.0.1:1"], 1.0, [sys.executable, str(script)])
    try:
        pid = sup.start(spec("wood-1", free_ports(1)[0]))
        assert wait_for(lambda: "up" in tail(sup.log_of("wood-1")))
        sup.stop_all(grace_s=0.5)
        assert not pid_alive(pid)
        assert sup.host("wood-1").popen.returncode == -signal.SIGKILL
    finally:
        sup.stop_all(grace_s=0.0)


def test_free_ports_are_distinct():
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(0 < p < 65536 for p in ports)


def test_agents_packed_into_one_process_live_and_die_together(supervisor: AgentSupervisor):
    specs = [
        spec(f"{item}-1", port)
        for item, port in zip(("wood", "glue", "nail"), free_ports(3), strict=True)
    ]
    pid = supervisor.start_group(specs)
    host = supervisor.host("glue-1")
    assert host.host_id == "host-001" and host.node_ids == ("wood-1", "glue-1", "nail-1")
    for node in host.node_ids:
        starts = supervisor.data_dir(node) / "starts"
        assert wait_for(lambda s=starts: s.exists() and s.read_text() == "1")
    config = json.loads((supervisor.root / "hosts" / "host-001.json").read_text())
    assert [a["node_id"] for a in config["agents"]] == ["wood-1", "glue-1", "nail-1"]
    assert config["agents"][1]["listen"] == specs[1].address
    assert config["agents"][0]["produces"] == "wood:2" and config["agents"][0]["cycle_s"] == 0.5
    assert (
        "--coordinators 127.0.0.1:1,127.0.0.1:2"
        in (supervisor.data_dir("nail-1") / "argv").read_text()
    )
    assert sorted(supervisor.kill("nail-1")) == ["glue-1", "nail-1", "wood-1"]
    assert not pid_alive(pid) and not supervisor.running("wood-1")
    supervisor.set_spec(spec("glue-1", free_ports(1)[0], "wood"))  # a spec change meanwhile
    supervisor.restart("wood-1")
    starts = supervisor.data_dir("nail-1") / "starts"
    assert wait_for(lambda: starts.read_text() == "2")
    config = json.loads((supervisor.root / "hosts" / "host-001.json").read_text())
    assert config["agents"][1]["requires"] == ["wood:2"]
    assert supervisor.log_of("wood-1") == supervisor.log_path("host-001")
    with pytest.raises(ValueError, match="already started"):
        supervisor.start_group(specs[:1])


@pytest.mark.parametrize("types,per_type,per_host", [(5, 2, 3), (20, 2, 4), (3, 3, 1), (4, 1, 9)])
def test_pack_nodes_spreads_each_items_suppliers_over_hosts(types, per_type, per_host):
    specs = generate_topology(types, per_type, 1).specs
    groups = pack_nodes(specs, per_host)
    assert sorted(n for g in groups for n in g) == sorted(s.node_id for s in specs)
    assert all(1 <= len(g) <= per_host for g in groups)
    assert len(groups) == -(-len(specs) // per_host)
    item = {s.node_id: s.produces.item for s in specs}
    if per_host <= types:  # then no host holds two suppliers of one item
        assert all(len({item[n] for n in g}) == len(g) for g in groups)
    with pytest.raises(ValueError, match=">= 1"):
        pack_nodes(specs, 0)
