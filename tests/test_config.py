"""Settings from TOML files and FOS_* variables (fos_raft.runtime.config), and the CLIs'
clean failures: one line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops_util import run_cli

from fos_agent import cli as agent_cli
from fos_raft.cli import coordinator
from fos_raft.cli.launcher import free_port
from fos_raft.runtime.config import ConfigError, with_settings

BASE = ["--id", "r0", "--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:0", "--data-dir", "d"]


def parse(argv: list[str], environ: dict[str, str], toml: str | None = None,
          tmp: Path | None = None):
    parser = coordinator.build_parser()
    if toml is not None:
        assert tmp is not None
        (tmp / "c.toml").write_text(toml)
        argv = ["--config", str(tmp / "c.toml"), *argv]
    return parser.parse_args(with_settings(parser, argv, coordinator.ENV_PREFIX,
                                           config_flag=True, environ=environ))


timeouts = st.one_of(st.none(), st.floats(0.01, 100, allow_nan=False).map(lambda f: round(f, 3)))


@given(flag=timeouts, env=timeouts, file=timeouts)
def test_flags_beat_environment_beat_file(tmp_path_factory, flag, env, file):
    tmp = tmp_path_factory.mktemp("cfg")
    argv = [*BASE, *(["--probe-timeout", str(flag)] if flag is not None else [])]
    environ = {"FOS_COORDINATOR_PROBE_TIMEOUT": str(env)} if env is not None else {}
    toml = f"probe-timeout = {file}\n" if file is not None else ""
    args = parse(argv, environ, toml, tmp)
    expected = next((v for v in (flag, env, file) if v is not None),
                    coordinator.ProbeSettings().timeout)
    assert args.probe_timeout == pytest.approx(expected)


def test_every_flag_can_come_from_file_or_environment(tmp_path: Path):
    toml = ('id = "from-file"\nraft = "127.0.0.1:7001"\ngrpc = "127.0.0.1:7000"\n'
            'data_dir = "/var/lib/fos"\npeers = ["127.0.0.1:7001", "127.0.0.1:7002"]\n'
            'join = true\nlog-compaction-entries = 10\n')
    args = parse([], {"FOS_COORDINATOR_METRICS": "127.0.0.1:9100",
                      "FOS_COORDINATOR_ID": "from-env"}, toml, tmp_path)
    assert args.id == "from-env" and args.raft == "127.0.0.1:7001"
    assert args.peers == ["127.0.0.1:7001", "127.0.0.1:7002"] and args.join is True
    assert args.data_dir == Path("/var/lib/fos") and args.log_compaction_entries == 10
    assert args.metrics == "127.0.0.1:9100"
    parser = agent_cli.build_parser()
    agent = parser.parse_args(with_settings(parser, ["--node-id", "n1"], "FOS_AGENT_", environ={
        "FOS_AGENT_LISTEN": "127.0.0.1:0", "FOS_AGENT_COORDINATORS": "a:1",
        "FOS_AGENT_DATA_DIR": "/tmp/n1", "FOS_AGENT_NO_GROUP_COMMIT": "true",
        "FOS_AGENT_NODE_ID": "overridden"}))
    assert agent.node_id == "n1" and agent.listen == "127.0.0.1:0"
    assert agent.no_group_commit is True


@pytest.mark.parametrize(("toml", "environ", "names"), [
    ('raft = "no-port"\n', {}, "key 'raft'"),
    ("probe-tries = \"many\"\n", {}, "key 'probe-tries'"),
    ("[id]\nx = 1\n", {}, "key 'id'"),
    ("colour = 1\n", {}, "unknown key 'colour'"),
    ("id = \n", {}, "not TOML"),
    ("", {"FOS_COORDINATOR_JOIN": "maybe"}, "FOS_COORDINATOR_JOIN"),
    ("", {"FOS_COORDINATOR_RAFTT": "x"}, "FOS_COORDINATOR_RAFTT"),
])
def test_bad_settings_name_the_key(tmp_path: Path, toml, environ, names):
    with pytest.raises(ConfigError, match=names):
        parse(BASE, environ, toml, tmp_path)


def one_line_failure(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    # structlog may log the same failure as a JSON event: the operator's line is the last
    assert lines and "Traceback" not in done.stderr, done.stderr
    assert all(w in lines[-1] for w in words), lines[-1]
    assert all(line.startswith("{") for line in lines[:-1]), done.stderr


def test_bad_config_file_fails_in_one_line_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "r0"\nraft = "127.0.0.1"\n')
    done = run_cli("fos_raft.cli.coordinator", "--config", str(bad))
    assert done.returncode == 2
    one_line_failure(done, "key 'raft'", str(bad))


def test_coordinator_clean_failures(tmp_path: Path):
    common = ["--id", "r0", "--raft", f"127.0.0.1:{free_port()}", "--grpc", "127.0.0.1:0"]
    no_port = run_cli("fos_raft.cli.coordinator", *common, "--data-dir", str(tmp_path / "a"),
                      "--metrics", "127.0.0.1")
    assert no_port.returncode == 2
    one_line_failure(no_port, "--metrics", "HOST:PORT")
    a_file = tmp_path / "file"
    a_file.write_text("")
    unwritable = run_cli("fos_raft.cli.coordinator", *common, "--data-dir",
                         str(a_file / "data"))
    one_line_failure(unwritable, str(a_file))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        in_use = run_cli("fos_raft.cli.coordinator", *common, "--data-dir",
                         str(tmp_path / "b"), "--metrics",
                         f"127.0.0.1:{taken.getsockname()[1]}")
    one_line_failure(in_use, "--metrics", "in use")
    agent_no_port = run_cli("fos_agent.cli", "--node-id", "n", "--listen", "127.0.0.1",
                            "--coordinators", "127.0.0.1:1", "--data-dir", str(tmp_path / "n"))
    assert agent_no_port.returncode == 2
    one_line_failure(agent_no_port, "--listen")


def test_replica_runs_from_config_file_and_environment(tmp_path: Path):
    config = tmp_path / "coordinator.toml"
    config.write_text(f'id = "solo"\nraft = "127.0.0.1:{free_port()}"\n'
                      f'grpc = "127.0.0.1:0"\ndata-dir = "{tmp_path / "data"}"\n')
    env = {**os.environ, "FOS_COORDINATOR_METRICS": "127.0.0.1:0"}
    proc = subprocess.Popen([sys.executable, "-m", "fos_raft.cli.coordinator", "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        ready = json.loads(proc.stdout.readline())  # blocks until ready or exit
        assert ready["event"] == "ready" and ready["id"] == "solo"
        assert ready["metrics"].startswith("127.0.0.1:")
        assert (tmp_path / "data" / "grpc.addr").exists()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0


def test_version_flags():
    for module, prog in (("fos_raft.cli.coordinator", "fos-coordinator"),
                         ("fos_raft.cli.fosctl", "fosctl"), ("fos_agent.cli", "fos-agent"),
                         ("bench.sim.cli", "fos-sim")):
        done = run_cli(module, "--version")
        assert done.returncode == 0, done.stderr
        words = done.stdout.split()
        assert words[0] == prog and words[1][0].isdigit()


@pytest.mark.parametrize(("module", "line", "expected"), [
    ("fos_raft.cli.fosctl", "fosctl sn", "snapshot"),
    ("fos_raft.cli.coordinator", "fos-coordinator --rest", "--restore"),
    ("fos_agent.cli", "fos-agent --node-i", "--node-id"),
])
def test_shell_completion(tmp_path: Path, module: str, line: str, expected: str):
    pytest.importorskip("argcomplete", reason="optional: pip install 'factoryos[completion]'")
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    done = run_cli(module, env=env)
    assert done.returncode == 0, done.stderr
    assert expected in out.read_text().split()
