"""deploy/ is checked, not just shipped: alert rules by their promtool unit tests, the
scrape config by promtool, systemd units by systemd-analyze, the compose file and the
Grafana dashboard by parsing them and matching them against what the code serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: apt-get install prometheus")


@needs_promtool
@pytest.mark.parametrize("check", [
    ["test", "rules", "alerts_test.yml"],  # the alert rules' unit tests
    ["check", "config", "prometheus.yml"],  # the scrape config, and the rules it loads
])
def test_promtool(check: list[str]):
    done = subprocess.run([PROMTOOL, *check], cwd=DEPLOY / "prometheus",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested():
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    tests = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert {"FosNoLeader", "FosQuorumLost", "FosNodeDown", "FosLineStalled",
            "FosWalFsyncSlow"} <= set(alerts)
    untested = [a for a in alerts if a != "FosRaftCommitSlow"
                and f"alertname: {a}" not in tests]
    assert untested == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not found")
@pytest.mark.parametrize("unit", ["fos-coordinator.service", "fos-agent@.service",
                                  "fos-program@.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path):
    # a template is verified as one instance of it
    target = tmp_path / unit.replace("@.", "@press-7.")
    target.write_text((DEPLOY / "systemd" / unit).read_text())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)],
                          capture_output=True, text=True, timeout=60)
    # the install path exists on the target host, not on the test machine
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "is not executable" not in line]
    assert problems == []
    text = target.read_text()
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                   "PrivateTmp=yes", "CapabilityBoundingSet=", "User=factoryos"):
        assert option in text


def test_compose_runs_three_replicas_that_know_each_other():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert sorted(services) == ["fos-1", "fos-2", "fos-3"]
    peers = {s["environment"]["FOS_COORDINATOR_PEERS"] for s in services.values()}
    assert len(peers) == 1
    rafts = {s["environment"]["FOS_COORDINATOR_RAFT"] for s in services.values()}
    assert rafts == set(peers.pop().split(","))
    for name, service in services.items():
        assert service["environment"]["FOS_COORDINATOR_ID"] == name
        # the gRPC address is announced to the cluster (leader hints): a dialable name
        assert service["environment"]["FOS_COORDINATOR_GRPC"] == f"{name}:7000"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert any(v.split(":")[0] == name for v in service["volumes"])


def test_dockerfile_runs_unprivileged_and_stops_cleanly():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER factoryos$", text, re.M)
    assert "STOPSIGNAL SIGTERM" in text and "/healthz" in text
    assert re.search(r'^ENTRYPOINT \["fos-coordinator"\]$', text, re.M)


def test_dashboard_queries_only_metrics_the_code_serves():
    dashboard = json.loads((DEPLOY / "grafana" / "factoryos.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    names = set(re.findall(r"\b(fos_[a-z_]+)", " ".join(exprs) + rules))
    source = "\n".join(p.read_text() for top in ("fos_raft", "fos_agent")
                       for p in (DEPLOY.parent / top).rglob("*.py"))
    agent_names = set(re.findall(r'"(\w+)"', source))
    missing = []
    for name in sorted(names):
        base = re.sub(r"_(bucket|total|count|sum)$", "", name)
        if f'"{base}"' in source or base.removeprefix("fos_agent_") in agent_names:
            continue
        missing.append(name)
    assert missing == []
