"""``fosctl trace`` and ``fos-agent export-lineage`` offline, as a user runs them (separate
processes) over real WALs written by the real protocol (fos_agent.testing.wal_chain)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fos_agent.testing.wal_chain import WalChain

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chain = WalChain(tmp_path_factory.mktemp("trace"), 3)
    chain.final_product()
    chain.final_product()
    chain.compact()
    chain.close()
    return chain.root


def test_back_trace_json_shape_and_exit_0(factory: Path) -> None:
    done = run("fosctl", "trace", "n2:2", "--format", "json", "--data-dirs", str(factory))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert set(got) == {"batch", "direction", "batches", "unreachable", "malformed"}
    assert (got["batch"], got["direction"], got["unreachable"]) == ("n2:2", "back", [])
    first = got["batches"][0]
    assert set(first) == {"batch_id", "node", "item", "qty", "made_at", "inputs", "outputs",
                          "delivered_to", "attrs", "scrapped", "scrapped_at"}
    assert (first["attrs"], first["scrapped"], first["scrapped_at"]) == ({}, None, None)
    assert [b["batch_id"] for b in got["batches"]] == ["n2:2", "n1:2", "n0:2"]
    assert got["batches"][1]["delivered_to"] == "n2" and first["delivered_to"] is None


def test_forward_depth_table_and_dot(factory: Path) -> None:
    fwd = run("fosctl", "trace", "n0:1", "--forward", "--depth", "1", "--data-dirs",
              str(factory / "agents"))
    assert fwd.returncode == 0, fwd.stderr
    assert "n1:1" in fwd.stdout and "n2:1" not in fwd.stdout
    dot = run("fosctl", "trace", "n2:1", "--format", "dot", "--data-dirs", str(factory))
    assert dot.stdout.startswith("digraph") and '"n1:1" -> "n2:1";' in dot.stdout


def test_partial_trace_exits_4_and_names_the_node(factory: Path) -> None:
    agents = factory / "agents"
    done = run("fosctl", "trace", "n2:1", "--format", "json", "--data-dirs",
               str(agents / "n2"), str(agents / "n0"))
    assert done.returncode == 4, done.stderr
    got = json.loads(done.stdout)
    assert [u["node"] for u in got["unreachable"]] == ["n1"]
    assert [b["batch_id"] for b in got["batches"]] == ["n2:1"]


@pytest.mark.parametrize(("args", "code"), [
    (("n2:77",), 1), (("not-a-batch",), 1), (("n2:1", "--depth", "-1"), 2),
])
def test_bad_input_is_one_line_and_non_zero(factory: Path, args: tuple[str, ...],
                                            code: int) -> None:
    done = run("fosctl", "trace", *args, "--data-dirs", str(factory))
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def test_export_lineage_jsonl(factory: Path) -> None:
    done = run("fos-agent", "export-lineage", "--data-dir", str(factory / "agents" / "n1"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert {(x["kind"], x["batch_id"]) for x in lines} == {
        ("made", "n1:1"), ("made", "n1:2"), ("used", "n0:1"), ("used", "n0:2")}
    made = next(x for x in lines if x["batch_id"] == "n1:1")
    assert made["inputs"] == [{"batch_id": "n0:1", "supplier": "n0"}]
    assert made["delivered_to"] == "n2"
    later = run("fos-agent", "export-lineage", "--data-dir", str(factory / "agents" / "n1"),
                "--since", "2999-01-01T00:00:00Z")
    assert later.returncode == 0 and later.stdout == ""
    bad = run("fos-agent", "export-lineage", "--data-dir", str(factory / "nope"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
