"""fosctl's words: ``health`` prints the whole failure reason (its end is what an operator
acts on), ``trace`` counts "1 batch". Real processes, a real closed port, real WALs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from fos_agent.testing.wal_chain import WalChain
from fos_raft.cli.fosctl_health import check_endpoint

BIN = Path(sys.executable).parent


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


async def test_health_keeps_the_whole_failure_reason():
    result = await check_endpoint(f"127.0.0.1:{_closed_port()}", "agent", None, 5.0)
    assert result.status == "UNREACHABLE"
    assert result.error.startswith("UNAVAILABLE: ")
    # the cause comes last in gRPC's message, past where it used to be cut
    assert "Connection refused" in result.error, result.error
    assert "\n" not in result.error


def test_trace_of_one_batch_says_batch(tmp_path: Path):
    chain = WalChain(tmp_path, 2)
    chain.final_product()
    chain.close()
    done = subprocess.run([str(BIN / "fosctl"), "trace", "n1:1", "--forward", "--data-dirs",
                           str(chain.root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.endswith(": 1 batch"), first
