"""Logging: the libraries hand events to stdlib logging and configure nothing; the CLIs
configure it, as JSON lines or console lines (``--log-format``, on every CLI)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from fos_raft.runtime.logging import configure_logging, get_logger

BIN = Path(sys.executable).parent


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def test_json_and_console_formats(restore_logging: None):
    out = io.StringIO()
    configure_logging("unit", level="INFO", fmt="json", stream=out, node="n1")
    get_logger("fos_agent.unit").bind(peer="p2").info("traded", batch="n1:7")
    get_logger("fos_agent.unit").debug("not shown at INFO")
    logging.getLogger("grpc.foreign").warning("a foreign %s", "record")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["traded", "a foreign record"]
    assert lines[0] | {"timestamp": None} == {
        "event": "traded", "batch": "n1:7", "peer": "p2", "component": "unit", "node": "n1",
        "level": "info", "logger": "fos_agent.unit", "timestamp": None}
    out = io.StringIO()
    configure_logging("unit", level="INFO", fmt="console", stream=out)
    get_logger("fos_agent.unit").info("traded", batch="n1:7")
    text = out.getvalue()
    assert "traded" in text and "batch=n1:7" in text and not text.startswith("{")


def test_the_library_alone_configures_nothing():
    code = ("import logging, fos_agent, fos_raft.runtime.logging as L\n"
            "L.get_logger('fos_agent.x').info('quiet')\n"
            "assert not logging.getLogger().handlers\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""


@pytest.mark.parametrize("cli", [["fos-agent"], ["fos-coordinator"], ["fosctl"], ["fos-sim"],
                                 [sys.executable, "-m", "fos_agent.host"]],
                         ids=lambda cli: cli[-1])
def test_every_cli_takes_log_format(cli: list[str]):
    argv = cli if len(cli) > 1 else [str(BIN / cli[0])]
    run = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "--log-format" in run.stdout and "json" in run.stdout
