"""Records an unchecked agent took (a batch id ``x`` in a lineage, a damaged index record)
must not break a reader: ``fosctl trace`` and ``fos-audit`` name them and exit partial /
failed, never with a traceback; the trace walk lists them (fos_raft.lineage.trace).

The WALs are real (LMDB, the agent's own write path); the records are written the way an
agent that accepted anything would have written them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import lmdb

from fos_agent.audit import audit
from fos_agent.protocol.records import (
    Batch,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    SetNextSeq,
)
from fos_agent.storage.wal import Wal, wal_path
from fos_raft.lineage.index import MADE_DB, MadeEntry
from fos_raft.lineage.trace import BACK, NodeAnswer, trace

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=60, check=False)


def _accepted_anything(data_dir: Path) -> None:
    """press-1 took a batch ``x`` from saw-1 and made press-1:4 from it, then compacted."""
    wal = Wal.open(wal_path(data_dir), "press-1")
    try:
        forged = Batch("x", "wood", -3, "saw-1", 0)
        wal.commit([PutInbound(InboundRecord(forged, InState.QUEUED, "saw-1"))])
        made = Batch("press-1:4", "frame", 1, "press-1", 4, ("x",))
        wal.commit([PutInbound(InboundRecord(forged, InState.CONSUMED, "saw-1")),
                    PutOutbound(OutboundRecord(made, OutState.QUEUED)), SetNextSeq(5)])
        wal.compact()
    finally:
        wal.close()


def test_trace_and_audit_name_a_malformed_input_and_exit_partial(tmp_path: Path) -> None:
    press = tmp_path / "agents" / "press-1"
    _accepted_anything(press)
    for fmt in ("table", "json", "dot"):
        done = run("fosctl", "trace", "press-1:4", "--format", fmt, "--data-dirs",
                   str(tmp_path))
        assert done.returncode == 4, done.stderr
        assert "Traceback" not in done.stderr and "'x'" in done.stdout, done.stdout[:500]
    table = run("fosctl", "trace", "press-1:4", "--data-dirs", str(tmp_path)).stdout
    assert "malformed: 'x' (input of press-1:4): not a batch id" in table
    assert "(PARTIAL)" in table
    checked = run("fos-audit", str(tmp_path))
    assert checked.returncode == 1, checked.stderr
    assert "Traceback" not in checked.stderr
    assert "malformed" in checked.stdout and "'x'" in checked.stdout, checked.stdout
    report = audit([press])
    assert not report.ok and any("'x'" in m for m in report.malformed), report.malformed
    # a batch id that no node could have made: one line, exit 1
    huge = run("fosctl", "trace", "p:" + "9" * 100_000, "--data-dirs", str(tmp_path))
    assert huge.returncode == 1 and "Traceback" not in huge.stderr
    assert len(huge.stderr.splitlines()) == 1 and len(huge.stderr) < 300, huge.stderr[:300]


def test_a_damaged_index_record_is_named_not_raised(tmp_path: Path) -> None:
    press = tmp_path / "agents" / "press-1"
    _accepted_anything(press)
    env = lmdb.open(str(wal_path(press)), max_dbs=12)
    try:
        with env.begin(write=True) as txn:
            txn.put(b"press-1:4", b'["frame","many",4,0,[],"","","QUEUED","",""]',
                    db=env.open_db(MADE_DB, txn=txn))
    finally:
        env.close()
    done = run("fosctl", "trace", "press-1:4", "--data-dirs", str(tmp_path))
    assert done.returncode in (1, 4) and "Traceback" not in done.stderr, done.stderr
    assert "damaged" in done.stdout + done.stderr
    checked = run("fos-audit", str(tmp_path))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr


def test_the_walk_lists_malformed_outputs_and_goes_on() -> None:
    made = {"a:1": MadeEntry("a:1", "a", "w", 1, 1, 0, (("bad id", "z"), ("b:1", "b"))),
            "b:1": MadeEntry("b:1", "b", "w", 1, 1, 0)}

    async def fetch(node: str, ids: list[str]) -> dict[str, NodeAnswer]:
        return {i: NodeAnswer(made[i]) for i in ids if i in made}

    result = asyncio.run(trace("a:1", BACK, fetch))
    assert [b.batch_id for b in result.batches] == ["a:1", "b:1"]
    assert result.malformed == [("'bad id'", "input of a:1")]
    assert not result.complete
