"""``fos-audit`` / ``python -m fos_agent.audit`` as a real process over real WAL dirs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import Arrived, FlowChanged, Message, NewRequest, Produce
from fos_agent.storage.wal import Wal, wal_path
from fos_raft.model import ItemReq

WOOD, FRAME = ItemReq("wood", 1), ItemReq("frame", 1)
SCRIPT = Path(sys.executable).with_name("fos-audit")


def _run(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = ([sys.executable, "-m", "fos_agent.audit"] if module or not SCRIPT.exists()
           else [str(SCRIPT)])
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)


def _make_wals(agents_dir: Path) -> None:
    """S makes wood, C1 buys three and turns one into a frame: fos-sim's layout,
    agents_dir/NODE/wal, written through the WAL API and then closed."""
    configs = [NodeConfig("S", WOOD), NodeConfig("C1", FRAME, (WOOD,))]
    wals = {c.node_id: Wal.open(wal_path(agents_dir / c.node_id), c.node_id) for c in configs}
    nodes = {c.node_id: Node.recover(c, wals[c.node_id].load())[0] for c in configs}

    def on(node_id: str, event: object) -> list[Message]:
        effects = nodes[node_id].handle(event)  # type: ignore[arg-type]
        wals[node_id].commit(effects.writes)
        return [*effects.messages, *([effects.reply] if effects.reply else [])]

    try:
        on("S", FlowChanged(1, frozenset({"C1"})))
        for _ in range(3):
            on("S", Produce())
        for _ in range(3):
            (req,) = on("C1", NewRequest("S", "wood"))
            (sent,) = on("S", req)
            on("C1", sent)
            (confirmation,) = on("C1", Arrived(sent.batch.batch_id))  # type: ignore[union-attr]
            on("S", confirmation)
        on("C1", Produce(nodes["C1"].hold_inputs()))
    finally:
        for wal in wals.values():
            wal.close()


def _edit(wal_dir: Path, db: bytes, key: bytes, value: bytes | None = None,
          copy_from: bytes | None = None) -> None:
    env = lmdb.open(str(wal_dir), max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            handle = env.open_db(db, txn=txn)
            if copy_from is not None:
                record = json.loads(txn.get(copy_from, db=handle))
                record["batch"]["id"] = key.decode()
                record["batch"]["seq"] = int(key.decode().rpartition(":")[2])
                value = json.dumps(record).encode()
            if value is None:
                assert txn.delete(key, db=handle)
            else:
                txn.put(key, value, db=handle)
    finally:
        env.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    _make_wals(tmp_path / "run" / "agents")
    return tmp_path / "run"


def test_clean_set_exits_0(run_dir: Path) -> None:
    done = _run(str(run_dir))  # the folder fos-sim --keep leaves
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit of 2 WALs: produced 4, consumed 1" in done.stdout
    assert "lost 0, duplicated 0, inconsistent 0: OK" in done.stdout
    each = _run(str(run_dir / "agents" / "S"), str(run_dir / "agents" / "C1" / "wal"),
                "--json", module=True)
    assert each.returncode == 0, each.stderr
    report = json.loads(each.stdout)
    assert report["ok"] and report["nodes"] == 2
    assert (report["produced"], report["delivered"], report["consumed"]) == (4, 3, 1)
    assert report["lost"] == report["duplicated"] == report["inconsistent"] == []


def test_a_batch_consumed_twice_exits_1_and_is_named(run_dir: Path) -> None:
    # a second output of C1 whose lineage repeats the first one's input
    _edit(wal_path(run_dir / "agents" / "C1"), b"outbound", b"C1:2", copy_from=b"C1:1")
    done = _run(str(run_dir / "agents"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "duplicated 1" in done.stdout and "FAILED" in done.stdout
    assert "duplicated: S:1" in done.stdout and "consumed into C1:1, C1:2" in done.stdout
    report = json.loads(_run(str(run_dir), "--json").stdout)
    assert report["duplicated"] == ["S:1"] and not report["ok"]


def test_a_lost_batch_exits_1_and_is_named(run_dir: Path) -> None:
    _edit(wal_path(run_dir / "agents" / "C1"), b"inbound", b"S:2")  # delivered, then gone
    done = _run(str(run_dir), module=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "lost: S:2" in done.stdout
    assert "S:2: DELIVERED by S but C1 has no record" in done.stdout


def test_a_malformed_record_is_an_anomaly_not_a_traceback(run_dir: Path) -> None:
    _edit(wal_path(run_dir / "agents" / "C1"), b"inbound", b"S:3", b"\xff not json")
    _edit(wal_path(run_dir / "agents" / "S"), b"outbound", b"S:9", b'{"batch": []}')
    done = _run(str(run_dir))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "malformed 2" in done.stdout
    assert "malformed C1: inbound record 'S:3'" in done.stdout
    assert "malformed S: outbound record 'S:9'" in done.stdout
    report = json.loads(_run(str(run_dir), "--json").stdout)
    assert len(report["malformed"]) == 2 and not report["ok"]


def test_bad_usage_and_unreadable_dirs_exit_2(tmp_path: Path, run_dir: Path) -> None:
    helped = _run("--help", module=True)
    assert helped.returncode == 0 and "fos-audit" in helped.stdout and "DIR" in helped.stdout
    for args, says in ((["--json"], "DIR"),
                       ([str(tmp_path / "nowhere")], "no such directory"),
                       ([str(tmp_path / "run" / "agents" / "S" / "wal" / "data.mdb")],
                        "not a directory")):
        done = _run(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _run(str(empty))
    assert done.returncode == 2 and "no agent WAL here" in done.stderr
    # the same node's WAL twice (a copied data dir): refused in one line, not audited
    shutil.copytree(run_dir / "agents" / "S", tmp_path / "copy-of-S")
    done = _run(str(run_dir), str(tmp_path / "copy-of-S"))
    assert done.returncode == 2 and "two WALs of node 'S'" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
