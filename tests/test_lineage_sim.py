"""Genealogy after a real fos-sim run with SIGKILLs and restarts (``--keep DIR``): for every
final product, ``fosctl trace`` offline over ``DIR`` (back and forward) agrees with the
audit's ground truth -- the lineages in the agents' WALs, compacted records included."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_lineage_e2e import back_truth, forward_truth

from fos_agent.audit import audit, load_wals
from fos_raft.lineage.remote import IndexSources
from fos_raft.lineage.trace import BACK, FORWARD, trace

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_traces_after_a_sim_run_with_kills_agree_with_the_audit(tmp_path: Path) -> None:
    keep = tmp_path / "run"
    sim = subprocess.run(
        [str(BIN / "fos-sim"), "--types", "3", "--per-type", "2", "--duration", "10",
         "--cycle-s", "0.1", "--failure-rate", "30", "--recover-rate", "30", "--seed", "3",
         "--keep", str(keep), "--plain", "--json", str(tmp_path / "sim.json")],
        capture_output=True, text=True, timeout=180)
    assert sim.returncode == 0, sim.stderr[-2000:]
    events = [e["event"] for e in json.loads((tmp_path / "sim.json").read_text())["events"]]
    assert any(e.startswith("SIGKILL") for e in events)
    assert any(e.startswith("restart") for e in events)
    dirs = sorted(p for p in (keep / "agents").iterdir() if (p / "wal").exists())
    report = audit(dirs)
    assert report.ok, report.summary()
    states = load_wals(dirs)
    final_item = max(s.outbound[b].batch.item for s in states.values() for b in s.outbound)
    finals = [b for s in states.values() for b, r in s.outbound.items()
              if r.batch.item == final_item]
    assert len(finals) >= 10

    async def check() -> None:
        sources = IndexSources({}, [keep])
        try:
            for f in finals:
                back = await trace(f, BACK, sources.fetch)
                assert back.complete, back.unreachable
                assert {b.batch_id for b in back.batches} == back_truth(states, f), f
            for f in finals[::5]:  # forward from every source of some final products
                back = await trace(f, BACK, sources.fetch)
                for src in (b.batch_id for b in back.batches if not b.inputs):
                    ahead = await trace(src, FORWARD, sources.fetch)
                    assert [b.batch_id for b in ahead.batches] == forward_truth(states, src)
                    assert ahead.batches[-1].batch_id == f
        finally:
            await sources.aclose()

    asyncio.run(check())

    cli = subprocess.run([str(BIN / "fosctl"), "trace", finals[0], "--format", "json",
                          "--data-dirs", str(keep)], capture_output=True, text=True,
                         timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["batches"][0]["batch_id"] == finals[0]
