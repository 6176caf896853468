"""A clean stop that hangs reports every thread's stack and every pending task; a prompt
stop reports nothing. Real processes, real SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from agent_util import wait_until

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from fos_raft.runtime.logging import configure_logging
    from fos_raft.runtime.stop_report import wait_for_stop_signal

    async def stuck_in_cleanup():
        await asyncio.Event().wait()

    async def main(hang):
        stopper = asyncio.ensure_future(wait_for_stop_signal(0.3))
        await asyncio.sleep(0)  # the handlers are installed
        Path(sys.argv[1]).write_text("ready")
        await stopper
        if hang:
            await stuck_in_cleanup()

    configure_logging("stop-test")  # as the CLIs do: the library itself configures nothing
    asyncio.run(main(sys.argv[2] == "hang"))
""")


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    ready, out = tmp_path / "ready", tmp_path / "out.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ready), mode],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, what="script ready")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    assert proc.poll() is None, out.read_text()
    return proc, out


def test_a_hung_stop_reports_threads_and_tasks(tmp_path: Path):
    proc, out = _start(tmp_path, "hang")
    try:
        os.kill(proc.pid, signal.SIGTERM)
        wait_until(lambda: "stuck_in_cleanup" in out.read_text()
                   and "most recent call first" in out.read_text(),
                   what="the slow-stop report")
        text = out.read_text()
        assert "stop signal" in text and "SIGTERM" in text
        assert "clean stop still running after 0.3 s; pending tasks:" in text
        assert proc.poll() is None  # a report, not an exit: the supervisor decides
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_prompt_stop_reports_nothing(tmp_path: Path, sig: signal.Signals):
    proc, out = _start(tmp_path, "exit")
    os.kill(proc.pid, sig)
    assert proc.wait(20) == 0
    text = out.read_text()
    assert sig.name in text
    assert "pending tasks" not in text and "most recent call first" not in text
