"""README.md and docs/agent.md, checked by running them: every fenced block is executed
against a real 3-replica coordinator cluster, in document order, unless the markdown marks
it ``<!-- not-run: reason -->`` on the line before (the reason is required; the test counts
them).

The convention (what a block may assume):

- ``sh`` blocks run under ``bash -e`` in the repository root, with the venv's bin first on
  PATH and ``$FOS_COORDINATORS`` set to the test cluster; ``python`` blocks run as scripts
  (top-level ``await`` / ``async with`` are wrapped in ``asyncio.run``); ``toml`` blocks are
  parsed as catalogs (docs/catalog.md).
- Placeholders are replaced: ``/var/lib/fos`` -> a temporary directory; the coordinator
  list ``"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"`` -> the test cluster's
  addresses; ``0.0.0.0:7100`` -> ``127.0.0.1:0`` (a free port), and its advertised
  ``"10.0.0.7:7100"`` -> ``"127.0.0.1"`` (the bound port); ``.venv/bin/`` -> the
  running venv's bin directory.
- ``<!-- run: until=N alive=NODE ... -->``: the block runs for ever (an agent); it passes if
  it is still running N seconds after it started and the catalog then shows NODE alive
  (``fosctl nodes --json``); it is then stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fos_raft.cli.catalog_file import parse_catalog
from fos_raft.cli.launcher import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/agent.md")
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARK = re.compile(r"<!--\s*(not-run|run):\s*(.*?)\s*-->\s*$")
PLACEHOLDER_COORDS = '"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"'
BIN = Path(sys.executable).parent
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str
    mark: str  # "", "not-run" or "run"
    note: str  # the marker's text (reason, or run options)

    @property
    def until(self) -> float | None:
        found = re.search(r"until=(\d+(?:\.\d+)?)", self.note) if self.mark == "run" else None
        return float(found.group(1)) if found else None

    @property
    def alive(self) -> str | None:
        found = re.search(r"alive=([\w.-]+)", self.note) if self.mark == "run" else None
        return found.group(1) if found else None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} ({self.lang or 'plain'})"


def blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text()
    found = []
    for match in BLOCK.finditer(text):
        before = [ln for ln in text[:match.start()].splitlines() if ln.strip()]
        marker = MARK.search(before[-1]) if before else None
        found.append(Block(doc, text.count("\n", 0, match.start()) + 1, match.group(1),
                           match.group(2), marker.group(1) if marker else "",
                           marker.group(2) if marker else ""))
    return found


ALL = [b for doc in DOCS for b in blocks(doc)]


def test_every_block_runs_or_says_why_not():
    skipped = [b for b in ALL if b.mark == "not-run"]
    assert all(b.note for b in skipped), "a not-run marker needs a reason"
    unknown = [str(b) for b in ALL if b.mark != "not-run" and b.lang not in
               ("sh", "python", "toml")]
    assert not unknown, f"blocks the test cannot run (mark them not-run): {unknown}"
    # the count is part of the contract: a new unrunnable block is a visible change here
    assert len(skipped) == 6, [str(b) for b in skipped]
    assert len(ALL) - len(skipped) == 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    cluster = LocalCluster(3, tmp_path_factory.mktemp("docs-coord"))
    try:
        cluster.start()
        cluster.wait_for_leader(30)
        yield cluster
    finally:
        cluster.stop()


def substitute(text: str, cluster: LocalCluster, data: Path) -> str:
    coords = ", ".join(f'"{a}"' for a in cluster.grpc_addresses)
    return (text.replace(PLACEHOLDER_COORDS, coords).replace("/var/lib/fos", str(data))
            .replace("0.0.0.0:7100", "127.0.0.1:0").replace('"10.0.0.7:7100"', '"127.0.0.1"')
            .replace(".venv/bin/", f"{BIN}/"))


def as_script(block: Block, text: str) -> list[str]:
    if block.lang == "sh":
        return ["bash", "-e", "-c", text]
    if re.search(r"^(await |async (with|for) )", text, re.M):
        text = ("import asyncio\n\nasync def _main():\n" + textwrap.indent(text, "    ")
                + "\nasyncio.run(_main())\n")
    return [sys.executable, "-c", text]


def _alive(node: str, env: dict[str, str]) -> bool:
    """Whether the catalog shows ``node`` alive, polled for a while (registering takes a
    moment on a loaded machine)."""
    deadline = time.monotonic() + 30
    while True:
        run = subprocess.run(["fosctl", "nodes", "--json"], env=env, capture_output=True,
                             text=True, timeout=TIMEOUT_S)
        nodes = json.loads(run.stdout)["nodes"] if run.returncode == 0 else []
        if any(n["node_id"] == node and n["alive"] for n in nodes):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)  # polling the coordinator with a deadline


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the block's own process group: bash + children
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("block", [b for b in ALL if b.mark != "not-run"], ids=str)
def test_block(block: Block, cluster: LocalCluster, tmp_path: Path):
    text = substitute(block.text, cluster, tmp_path)
    if block.lang == "toml":
        assert parse_catalog(text, str(block))
        return
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "FOS_COORDINATORS": ",".join(cluster.grpc_addresses)}
    proc = subprocess.Popen(as_script(block, text), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        if block.until is None:
            out, _ = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, f"{block} failed:\n{text}\n---\n{out}"
            return
        deadline = time.monotonic() + block.until
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)  # polling the block's process; its output is read at the end
        running = proc.poll() is None
        alive = _alive(block.alive, env) if block.alive and running else None
        _stop(proc)
        out = proc.stdout.read() if proc.stdout else ""
        assert running, f"{block} ended early ({proc.returncode}):\n{text}\n---\n{out}"
        assert alive is not False, f"{block}: {block.alive} is not alive:\n{out}"
    finally:
        _stop(proc)
