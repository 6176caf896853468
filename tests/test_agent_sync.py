"""SyncAgent against real processes (a 3-replica coordinator cluster, real gRPC, real
LMDB): a synchronous supplier and consumer trade, stop cleanly (a cycles() loop waiting in
another thread ends), and a restarted consumer recovers its WAL and consumes no batch twice.
Also: the library prints nothing to stdout (it only logs through stdlib logging, which the
host program configures), and the synchronous example runs."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fos_agent import AgentNotRunning, InputsAlreadyEmitted, ItemReq, SyncAgent
from fos_raft.cli.launcher import LocalCluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster(tmp_path: Path):
    cluster = LocalCluster(3, tmp_path / "coord")
    try:
        cluster.start()
        cluster.wait_for_leader(30)
        yield cluster
    finally:
        cluster.stop()


def _supply(agent: SyncAgent, errors: list[BaseException]) -> None:
    try:
        for inputs in agent.cycles():  # ends when the agent is stopped from another thread
            agent.emit(inputs)
    except BaseException as exc:  # reported by the test, not lost in the thread
        errors.append(exc)


def _consume(agent: SyncAgent, cycles: int) -> list[str]:
    used: list[str] = []
    for inputs in agent.cycles():
        used.append(inputs["sy-x"].batch_id)
        agent.emit(inputs)
        if len(used) >= cycles:
            break
    return used


def test_sync_agents_trade_stop_cleanly_and_recover(cluster: LocalCluster, tmp_path: Path):
    coords = cluster.grpc_addresses
    supplier = SyncAgent("sy-src", ItemReq("sy-x", 1), coordinators=coords,
                         data_dir=tmp_path / "sy-src")
    errors: list[BaseException] = []
    thread = threading.Thread(target=_supply, args=(supplier, errors), daemon=True)
    consumer_dir = tmp_path / "sy-con"
    try:
        supplier.start()
        thread.start()
        with SyncAgent("sy-con", ItemReq("sy-y", 1), [ItemReq("sy-x", 1)],
                       coordinators=coords, data_dir=consumer_dir) as consumer:
            first = _consume(consumer, 4)
            assert consumer.metrics["successful_cycles"] == 4
            assert consumer.incarnation == 1 and consumer.address
            drained = consumer.drain()  # coordinator calls bridge like the others
            assert consumer.undrain() > drained
            with pytest.raises(InputsAlreadyEmitted):
                for inputs in consumer.cycles():
                    consumer.emit(inputs)
                    consumer.emit(inputs)
        with pytest.raises(AgentNotRunning):
            consumer.emit()
        with SyncAgent("sy-con", ItemReq("sy-y", 1), [ItemReq("sy-x", 1)],
                       coordinators=coords, data_dir=consumer_dir) as again:
            assert again.incarnation == 2
            second = _consume(again, 3)
        used = first + second
        assert len(set(used)) == len(used), f"a batch was consumed twice: {used}"
        assert all(b.startswith("sy-src:") for b in used)
    finally:
        supplier.stop()  # the supplier's cycles() loop, waiting in its thread, ends
        thread.join(20)
    assert not thread.is_alive(), "cycles() did not end when the agent stopped"
    assert not errors, errors


QUIET = """
import sys
from fos_agent import ItemReq, SyncAgent
with SyncAgent("sy-quiet", ItemReq("sy-q", 1), coordinators=sys.argv[1].split(","),
               data_dir=sys.argv[2]) as agent:
    for _ in range(3):
        agent.emit()
"""


def test_the_library_prints_nothing_to_stdout(cluster: LocalCluster, tmp_path: Path):
    run = subprocess.run([sys.executable, "-c", QUIET, ",".join(cluster.grpc_addresses),
                          str(tmp_path / "sy-quiet")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "debug" not in run.stderr.lower() and "info" not in run.stderr.lower()


def test_the_sync_example_runs(tmp_path: Path):
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "sync_factory_software.py"),
                          "--cycles", "2", "--plc-s", "0.1", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr.count("frames made") == 2
