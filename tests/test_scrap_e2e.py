"""Scrap and attributes across real processes (a coordinator cluster, real gRPC, real
LMDB): a press program (tests/scrap_stage.py, its own process) scraps one cycle and emits
one with qty=3 and attributes; its consumer receives them; the audit is clean and counts
the scrap; ``fosctl trace`` and ``fos-agent export-lineage`` show both."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from coord_util import running_cluster

from fos_agent import Agent, ItemReq, LimitError, SyncAgent
from fos_agent.audit import audit
from fos_raft.cli.launcher import LocalCluster

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def cluster(tmp_path: Path):
    with running_cluster(3, tmp_path / "coord") as cluster:
        yield cluster


def _supply(agent: SyncAgent, errors: list[BaseException]) -> None:
    try:
        for inputs in agent.cycles():  # ends when the agent is stopped
            agent.emit(inputs)
    except BaseException as exc:  # reported by the test, not lost in the thread
        errors.append(exc)


def test_scrap_and_attributes_between_real_processes(cluster: LocalCluster,
                                                     tmp_path: Path) -> None:
    coords = cluster.grpc_addresses
    dirs = {n: tmp_path / n for n in ("sa-src", "sa-press", "sa-sink")}
    source = SyncAgent("sa-src", ItemReq("sa-raw", 1), coordinators=coords,
                       data_dir=dirs["sa-src"], handle_signals=False)
    errors: list[BaseException] = []
    thread = threading.Thread(target=_supply, args=(source, errors), daemon=True)
    press = None
    try:
        source.start()
        thread.start()
        with SyncAgent("sa-sink", ItemReq("sa-box", 1), [ItemReq("sa-part", 1)],
                       coordinators=coords, data_dir=dirs["sa-sink"],
                       handle_signals=False) as sink:
            press = subprocess.Popen(
                [sys.executable, str(HERE / "scrap_stage.py"), ",".join(coords),
                 str(dirs["sa-press"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            for inputs in sink.cycles():
                got = inputs["sa-part"]
                sink.emit(inputs)
                break
            # the press stays until its batch is here: a press that stopped at once could
            # leave it QUEUED before the sink asked for it
            out, err = press.communicate("stop\n", timeout=60)
            assert press.returncode == 0, err[-2000:]
        report = json.loads(out)
    finally:
        if press is not None and press.poll() is None:
            press.kill()
            press.wait()
        source.stop()
        thread.join(10)
    assert not errors, errors
    (scrapped,) = report["scrapped"]
    assert report["scrapped_total"] == 1
    # the consumer received the batch with its quantity and attributes
    assert (got.batch_id, got.qty) == (report["made"], 3)
    assert dict(got.attrs) == {"serial": "SN-0042", "width_mm": 801.5, "passes": 2}

    result = audit(list(dirs.values()))
    assert result.ok and result.scrapped == 1, result.summary()
    assert "scrapped 1" in result.summary()
    cli = run("fos-audit", "--json", *map(str, dirs.values()))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["scrapped"] == 1

    back = run("fosctl", "trace", scrapped, "--data-dirs", *map(str, dirs.values()))
    assert back.returncode == 0, back.stderr
    assert f"scrapped: {scrapped} at sa-press: cracked at the edge" in back.stdout
    fwd = run("fosctl", "trace", scrapped, "--forward", "--format", "json",
              "--data-dirs", *map(str, dirs.values()))
    assert fwd.returncode == 0, fwd.stderr
    (only,) = json.loads(fwd.stdout)["batches"]
    assert (only["scrapped"], only["scrapped_at"]) == ("cracked at the edge", "sa-press")
    made = run("fosctl", "trace", report["made"], "--data-dirs", *map(str, dirs.values()))
    assert made.returncode == 0, made.stderr
    assert (f"attrs of {report['made']}: passes=2, serial=SN-0042, width_mm=801.5"
            in made.stdout), made.stdout

    lines = run("fos-agent", "export-lineage", "--data-dir", str(dirs["sa-press"]))
    assert lines.returncode == 0, lines.stderr
    entries = [json.loads(line) for line in lines.stdout.splitlines()]
    used = {e["batch_id"]: e for e in entries if e["kind"] == "used"}
    assert used[scrapped]["scrapped"] == "cracked at the edge" and used[scrapped]["into"] == ""
    (part,) = [e for e in entries if e["kind"] == "made"]
    assert (part["qty"], part["attrs"]["serial"]) == (3, "SN-0042")


async def test_async_agent_scraps_and_emits_with_attrs(cluster: LocalCluster,
                                                       tmp_path: Path) -> None:
    """The asyncio `Agent`: a bad attribute set is refused before anything is written (the
    inputs stay held), then the cycle is scrapped; the next is emitted with attributes."""
    coords = cluster.grpc_addresses
    source = Agent("sb-src", ItemReq("sb-raw", 1), coordinators=coords,
                   data_dir=tmp_path / "src", cycle_s=0.0)
    press = Agent("sb-press", ItemReq("sb-part", 2), [ItemReq("sb-raw", 1)],
                  coordinators=coords, data_dir=tmp_path / "press")
    async with source, press:
        made = None
        n = 0
        async for inputs in press.cycles():
            n += 1
            if n == 1:
                with pytest.raises(LimitError):
                    await press.emit(inputs, attrs={"k": [1]})  # type: ignore[dict-item]
                with pytest.raises(LimitError):
                    await press.emit(inputs, qty=0)
                scrapped = inputs.ids
                await press.scrap(inputs, "operator rejected")
                continue
            made = await press.emit(inputs, attrs={"lot": "L-7", "ok": 1})
            break
        assert made is not None and made.qty == 2  # the spec's quantity by default
        assert dict(made.attrs) == {"lot": "L-7", "ok": 1}
        assert press.metrics["batches_scrapped"] == 1
        assert press.metrics["batches_scrapped.sb-raw"] == 1
        assert press.metrics["scrapped_cycles"] == 1
        view = press.lineage(scrapped[0])
        assert view.used is not None and view.used.scrapped == "operator rejected"
