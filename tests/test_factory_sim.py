"""The simulated factory (fos_agent.testing.factory): a seed replays a run exactly, runs
with every kind of fault pass every check, the checks catch a driver that sends before it
persists, the real WAL can stand in for the in-memory store, and ``fos-sim --virtual``
prints and writes what it promises, and suppliers weigh their consumers as the real
agent does (fos_agent.rules.weights) by default."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.sim.virtual import main as virtual_main
from fos_agent.protocol.messages import Effects
from fos_agent.testing.factory import Factory, FactorySettings, LinkSettings, RunResult
from fos_agent.testing.factory.agent import SimAgent
from fos_agent.testing.walstore import WalStores
from fos_raft.model import ItemReq, NodeSpec


def chain() -> list[NodeSpec]:
    """Two ore suppliers, two presses, two frame makers, one final assembly."""
    specs = []
    for n, (item, needs) in enumerate([("ore", ()), ("ore", ()), ("steel", ("ore",)),
                                       ("steel", ("ore",)), ("frame", ("steel",)),
                                       ("frame", ("steel",)), ("window", ("frame", "steel"))]):
        specs.append(NodeSpec(f"{item}-{n}", f"127.0.0.1:{20000 + n}", ItemReq(item, 1),
                              tuple(ItemReq(i, 1) for i in needs)))
    return specs


def faulty_run(seed: int, store: Callable[[str], object] | None = None,
               duration: float = 40.0) -> RunResult:
    """Kills and restarts, a link partition, a coordinator outage, a drain, lossy and
    duplicating links: all drawn from the seed."""
    rng = random.Random(seed)
    settings = FactorySettings(link=LinkSettings(loss=0.01, duplicate=0.02), check_every_s=0.5)
    f = Factory(chain(), rng, settings, **({"store": store} if store else {}))  # type: ignore[arg-type]
    f.start()
    victims = ["ore-0", "steel-2", "frame-5"]
    for k in range(4):
        node = victims[rng.randrange(len(victims))]
        at = rng.uniform(3, duration - 10)
        f.at(at, f.kill, node, k % 2 == 1)  # every other kill lands mid-step
        f.at(at + rng.uniform(1, 6), f.restart, node)
    f.at(rng.uniform(5, 15), f.partition, "steel-3", "ore-1")
    f.at(rng.uniform(20, 25), f.heal)
    f.at(rng.uniform(5, 30), f.outage, 4.0)
    f.at(12.0, f.drain, "frame-4")
    f.at(22.0, f.undrain, "frame-4")
    f.run_until(duration)
    return f.finish()


def test_a_seed_replays_the_same_run_and_another_seed_does_not() -> None:
    a, b, c = faulty_run(3), faulty_run(3), faulty_run(4)
    assert a.digest == b.digest and a.trace_lines == b.trace_lines
    assert (a.finished, a.messages, a.commands) == (b.finished, b.messages, b.commands)
    assert c.digest != a.digest


@pytest.mark.parametrize("shares", ["default", None])
def test_suppliers_weigh_consumers_as_the_real_agent_unless_told_otherwise(
        shares: str | None) -> None:
    # steel feeds two frame makers (need 1 between them) and the final assembly (need 1)
    f = (Factory(chain(), random.Random(1)) if shares == "default"
         else Factory(chain(), random.Random(1), shares=None))
    f.start()
    f.run_until(20.0)
    fair = f.agents["steel-2"].server.fair
    got = [fair.weight(c) for c in ("frame-4", "frame-5", "window-6")]
    assert got == ([0.5, 0.5, 1.0] if shares == "default" else [1.0, 1.0, 1.0])
    assert f.finish().ok


def test_a_mid_step_kill_still_armed_at_the_end_does_not_land_while_settling() -> None:
    # the settle ends every fault: a kill waiting for its node's next step that writes
    # and sends is disarmed, not carried out with nobody left to restart the node
    f = Factory(chain(), random.Random(1))
    f.start()
    f.run_until(20.0)
    for node_id in f.agents:
        f.kill(node_id, mid_step=True)
    result = f.finish()
    assert result.ok, result.error
    assert result.kills == 0 and all(a.up for a in f.agents.values())


DIGEST_OF_A_RUN = """
import random, sys
sys.path.insert(0, "tests")
from test_factory_sim import faulty_run
print(faulty_run(3, duration=20.0).digest)
"""


def test_the_digest_does_not_depend_on_the_process_hash_seed() -> None:
    """String hashing is randomised per process: nothing may iterate a set of names in
    an order that reaches the trace."""
    root = Path(__file__).resolve().parent.parent
    digests = {subprocess.run([sys.executable, "-c", DIGEST_OF_A_RUN], capture_output=True,
                              text=True, timeout=120, check=True, cwd=root,
                              env={**os.environ, "PYTHONHASHSEED": h}).stdout.strip()
               for h in ("1", "2")}
    assert len(digests) == 1 and len(digests.pop()) == 64


@pytest.mark.parametrize("seed", range(1, 7))
def test_runs_with_every_fault_pass_every_check(seed: int) -> None:
    result = faulty_run(seed)
    assert result.ok, f"seed {seed}: {result.error}"
    assert result.finished > 0
    assert result.audit["lost"] == 0 and result.audit["duplicated"] == 0
    assert result.kills >= 1


def test_the_checks_catch_a_driver_that_sends_before_it_persists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies and messages leave before the step's writes are durable: a crash in
    between leaves a consumer holding a batch its supplier never recorded as sent."""
    original = SimAgent.commit

    def hasty(self: SimAgent, effects: list[Effects], then=None) -> None:  # type: ignore[no-untyped-def]
        if then is not None:
            then(effects)
        original(self, effects, None)

    monkeypatch.setattr(SimAgent, "commit", hasty)
    errors = [faulty_run(seed, duration=30.0).error for seed in range(2, 7)]
    assert any(errors), "no seed caught the broken persist-then-send order"


def test_the_real_wal_can_be_the_store(tmp_path: Path) -> None:
    stores = WalStores(tmp_path)
    try:
        result = faulty_run(2, store=stores, duration=20.0)
    finally:
        stores.close()
    assert result.ok, result.error
    assert (tmp_path / "ore-0").is_dir()


def test_fos_sim_virtual_prints_a_closing_line_and_writes_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.json"
    code = virtual_main(["--seeds", "1-2", "--types", "4", "--per-type", "2",
                         "--failure-rate", "6", "--recover-rate", "6", "--duration", "30",
                         "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.strip().splitlines()[-1] == "2 seeds: 2 passed, 0 failed"
    data = json.loads(out.read_text())
    assert [s["seed"] for s in data["seeds"]] == [1, 2]
    assert all(len(s["digest"]) == 64 and s["ratio"] > 0 for s in data["seeds"])


def test_fos_sim_virtual_trace_prints_the_transcript_of_the_digest(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--seed", "5", "--types", "3", "--per-type", "2", "--failure-rate", "6",
            "--recover-rate", "6", "--duration", "20"]
    assert virtual_main([*args, "--trace"]) == 0
    lines = capsys.readouterr().out.splitlines(keepends=True)
    transcript, summary = lines[:-2], lines[-2]
    digest = hashlib.sha256("".join(transcript).encode()).hexdigest()
    assert summary.rstrip().endswith(f"trace {digest}")
    assert any(" crash " in line for line in transcript)
