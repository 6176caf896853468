"""fos-coordinator is secure by default at start-up (docs/security.md): real processes.

A Raft bind off loopback without a password is refused (one line, exit 2) unless
``--insecure-raft`` is given, and then the replica starts, warns and says so in its ready
line; a password file others may read, or a short password, is refused too. Binding
0.0.0.0 is harmless here: nothing is sent to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fos_raft.cli.launcher import free_port
from fos_raft.runtime.secure_start import is_loopback_host


def coordinator(tmp_path: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "fos_raft.cli.coordinator", "--id", "x",
            "--grpc", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), *flags]


def refused(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """Run a start that must be refused; returns its one stderr line."""
    done = subprocess.run(coordinator(tmp_path, *flags), capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""  # no ready line: nothing started
    lines = [line for line in done.stderr.splitlines() if line.startswith("fos-coordinator:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def password_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "raft.pw"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_raft_off_loopback_without_a_password_is_refused(tmp_path: Path) -> None:
    line = refused(tmp_path, "--raft", f"0.0.0.0:{free_port()}")
    assert "not a loopback address" in line and "--insecure-raft" in line
    assert "chmod 600" in line  # says how to make a password


def test_raft_bind_off_loopback_is_refused_even_when_the_name_is_loopback(
        tmp_path: Path) -> None:
    # --raft-bind is what is bound: it decides, not the name peers dial
    line = refused(tmp_path, "--raft", f"127.0.0.1:{free_port()}",
                   "--raft-bind", f"0.0.0.0:{free_port()}")
    assert "0.0.0.0" in line


def test_the_environment_and_config_file_are_held_to_the_same_rule(tmp_path: Path) -> None:
    refused(tmp_path, env={"FOS_COORDINATOR_RAFT": f"0.0.0.0:{free_port()}"})
    config = tmp_path / "c.toml"
    config.write_text(f'raft = "0.0.0.0:{free_port()}"\n')
    refused(tmp_path, "--config", str(config))


def test_a_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = password_file(tmp_path, "a" * 32, 0o644)
    line = refused(tmp_path, "--raft", f"0.0.0.0:{free_port()}", "--raft-password-file",
                   str(path))
    assert "0644" in line and "chmod 600" in line


def test_a_short_password_is_refused(tmp_path: Path) -> None:
    path = password_file(tmp_path, "short", 0o600)
    line = refused(tmp_path, "--raft", f"127.0.0.1:{free_port()}", "--raft-password-file",
                   str(path))  # refused on loopback too: a password that is set must be real
    assert "5 bytes" in line and "16" in line


def wildcard_raft_bind() -> list[str]:
    """Raft bound on every interface, announced to peers on loopback: the bind is what the
    refusal looks at, and a loopback cluster keeps the loopback gRPC address announceable."""
    port = free_port()
    return ["--raft", f"127.0.0.1:{port}", "--raft-bind", f"0.0.0.0:{port}"]


def _start_and_read_ready(cmd: list[str], tmp_path: Path) -> tuple[dict[str, object], Path]:
    err_path = tmp_path / "err"
    with open(tmp_path / "out", "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = (tmp_path / "out").read_text()
            if text.strip():
                ready = json.loads(text.splitlines()[0])
                assert ready["pid"] == proc.pid
                return ready, err_path
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.05)
        raise AssertionError("no ready line within 60 s: " + err_path.read_text())
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def test_insecure_raft_starts_and_warns(tmp_path: Path) -> None:
    ready, err = _start_and_read_ready(
        coordinator(tmp_path, *wildcard_raft_bind(), "--insecure-raft",
                    "--log-format", "json"), tmp_path)
    assert ready["event"] == "ready" and ready["insecure_raft"] is True
    events = [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]
    warnings = [e for e in events if e.get("level") == "warning"
                and "INSECURE" in str(e.get("event"))]
    assert len(warnings) == 1 and warnings[0]["raft"].startswith("0.0.0.0:")


def test_a_private_long_password_off_loopback_starts(tmp_path: Path) -> None:
    path = password_file(tmp_path, "b" * 24, 0o600)
    ready, _ = _start_and_read_ready(
        coordinator(tmp_path, *wildcard_raft_bind(), "--raft-password-file",
                    str(path)), tmp_path)
    assert ready["raft_encrypted"] is True and "insecure_raft" not in ready


def test_insecure_raft_from_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOS_COORDINATOR_INSECURE_RAFT", "true")  # the child inherits it
    ready, _ = _start_and_read_ready(
        coordinator(tmp_path, *wildcard_raft_bind()), tmp_path)
    assert ready["insecure_raft"] is True


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.0.2.7", False),
    ("no-such-host.invalid", False)])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
