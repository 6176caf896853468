"""Several node agents in one process (the experiment harness packs agents at large N).

    python -m fos_agent.host --config agents.toml [--coordinators ADDR,...]
                             [--metrics HOST:PORT] [--ready-file PATH] [tuning flags]

The config is TOML or JSON (by extension)::

    coordinators = ["127.0.0.1:7000"]        # optional when --coordinators is given
    [[agents]]
    node_id = "saw-1"
    listen = "127.0.0.1:0"
    data_dir = "/tmp/fos/saw-1"
    produces = "wood:3"                      # omit to use the catalog's spec
    requires = ["log:1"]                     # or "log:1,bark:2"
    capacity = 1
    cycle_s = 1.0
    workers = 1
    # advertise = "10.0.0.7:7100"            # what peers dial (a wildcard listen needs it
    #                                        #   when the coordinators are on other hosts)
    # tls_cert = "certs/saw-1.pem"           # optional; with [tls] below, default
    # tls_key = "certs/saw-1.key"            #   cert_dir/NODE.pem and cert_dir/NODE.key

    [tls]                                    # optional: mutual TLS (docs/security.md)
    ca = "certs/ca.pem"
    cert_dir = "certs"                       # NODE.pem + NODE.key per agent
    coordinator_name = "fos-coordinator"     # optional

Every agent is a full Agent with its own WAL, gRPC server, metrics and logger (bound with
its node id); they share the event loop and nothing else, so the agents of one host trade
with each other over loopback gRPC exactly as across processes. --ready-file gets a JSON
object {node_id: address} once all of them serve and are registered. One /metrics endpoint
serves every agent with a ``node`` label. SIGTERM/SIGINT stop all cleanly (exit 0); a bad
config is one line on stderr and exit 2; an agent that cannot start stops the others and
exits 1. A SIGKILL of the host kills all its agents at once, as a machine failure would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fos_agent.agent import Agent, AgentSettings
from fos_agent.cli import (
    UsageError,
    _Parser,
    add_tuning,
    parse_host_port,
    parse_item,
    parse_items,
    serve_metrics,
    settings_from,
    write_ready,
)
from fos_raft.runtime.advertise import AdvertiseError
from fos_raft.runtime.http import MetricsAddressError
from fos_raft.runtime.logging import configure_logging
from fos_raft.runtime.stop_report import wait_for_stop_signal
from fos_raft.security.tls import TlsConfig, TlsError, tls_from_mapping

KNOWN_KEYS = {"node_id", "listen", "data_dir", "produces", "requires", "capacity", "cycle_s",
              "workers", "advertise", "tls_cert", "tls_key"}
TLS_KEYS = {"ca", "cert_dir", "coordinator_name"}


def load_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("agents"), list):
        raise UsageError(f"{path}: needs a list 'agents'")
    return data


def agents_from_config(data: dict[str, Any], coordinators: list[str],
                       settings: AgentSettings) -> list[Agent]:
    if not coordinators:
        coordinators = [str(c) for c in data.get("coordinators", [])]
    if not coordinators:
        raise UsageError("no coordinators: give --coordinators or 'coordinators' in the config")
    tls_table = data.get("tls") or {}
    if not isinstance(tls_table, dict) or set(tls_table) - TLS_KEYS or (
            tls_table and not tls_table.get("ca")):
        raise UsageError(f"[tls] takes {sorted(TLS_KEYS)} and needs 'ca'")
    agents: list[Agent] = []
    seen: set[str] = set()
    for i, entry in enumerate(data["agents"]):
        where = f"agents[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} is not a table")
        unknown = set(entry) - KNOWN_KEYS
        if unknown:
            raise UsageError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("node_id", "listen", "data_dir"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise UsageError(f"{where}: '{key}' is required")
        node = entry["node_id"]
        if node in seen:
            raise UsageError(f"{where}: node {node!r} appears twice")
        seen.add(node)
        parse_host_port(entry["listen"], f"{where} listen")
        requires = entry.get("requires", [])
        reqs = (parse_items(requires) if isinstance(requires, str)
                else [parse_item(str(r)) for r in requires])
        produces = parse_item(entry["produces"]) if entry.get("produces") else None
        if reqs and produces is None:
            raise UsageError(f"{where}: 'requires' needs 'produces'")
        try:
            capacity = int(entry.get("capacity", 1))
            workers = int(entry.get("workers", 1))
            cycle_s = float(entry.get("cycle_s", 1.0))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{where}: {exc}") from None
        if capacity < 1 or workers < 1 or cycle_s < 0:
            raise UsageError(f"{where}: capacity and workers >= 1, cycle_s >= 0")
        try:
            tls = _agent_tls(tls_table, entry, node, where)
            agents.append(Agent(node, produces, reqs, listen=entry["listen"],
                                coordinators=coordinators, data_dir=entry["data_dir"],
                                capacity=capacity, workers=workers, cycle_s=cycle_s,
                                advertise=entry.get("advertise"), settings=settings, tls=tls,
                                handle_signals=False))  # main() owns the signals
        except (TlsError, AdvertiseError) as exc:
            raise UsageError(f"{where}: {exc}") from None
    if not agents:
        raise UsageError("the config lists no agents")
    return agents


def _agent_tls(table: dict[str, Any], entry: dict[str, Any], node: str,
               where: str) -> TlsConfig | None:
    """One agent's TLS settings: its own cert/key (entry, else the [tls] cert_dir)."""
    if not table:
        if entry.get("tls_cert") or entry.get("tls_key"):
            raise UsageError(f"{where}: tls_cert/tls_key need a [tls] table with 'ca'")
        return None
    cert_dir = Path(str(table.get("cert_dir", ".")))
    return tls_from_mapping({
        "cert": entry.get("tls_cert") or str(cert_dir / f"{node}.pem"),
        "key": entry.get("tls_key") or str(cert_dir / f"{node}.key"),
        "ca": table["ca"],
        "coordinator_name": table.get("coordinator_name") or "",
    }, where)


async def run(agents: list[Agent], args: argparse.Namespace) -> int:
    try:
        serve_metrics(args.metrics, list(agents))
    except MetricsAddressError as exc:
        sys.stderr.write(f"fos-agent-host: {exc}\n")
        return 1
    stopper = asyncio.ensure_future(wait_for_stop_signal())
    results = await asyncio.gather(*(a.start() for a in agents), return_exceptions=True)
    failed = [(a, r) for a, r in zip(agents, results, strict=True) if isinstance(r, Exception)]
    if failed:
        stopper.cancel()
        for agent, exc in failed:
            sys.stderr.write(f"fos-agent-host: cannot start {agent.node_id}: {exc}\n")
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
        return 1
    write_ready(args.ready_file, json.dumps({a.node_id: a.address for a in agents}))
    failures = [asyncio.ensure_future(a.failed.wait()) for a in agents]
    try:
        await asyncio.wait({stopper, *failures}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (stopper, *failures):
            waiter.cancel()
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
    failed = [a for a in agents if a.failure]
    for agent in failed:  # a WAL failed mid-run: the process exits for its supervisor
        sys.stderr.write(f"fos-agent-host: {agent.node_id} stopped: {agent.failure}\n")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="fos-agent-host",
                     description="Run several factoryOS node agents in one process.")
    parser.add_argument("--config", required=True, help="TOML or JSON list of agents")
    parser.add_argument("--coordinators", default="", help="ADDR,... (overrides the config)")
    parser.add_argument("--metrics", help="serve Prometheus /metrics on HOST:PORT")
    parser.add_argument("--ready-file", help="JSON {node: address} written once all serve")
    add_tuning(parser)
    args = parser.parse_args(argv)
    configure_logging("fos-agent-host", level=args.log_level, fmt=args.log_format)
    try:
        coordinators = [c.strip() for c in args.coordinators.split(",") if c.strip()]
        agents = agents_from_config(load_config(Path(args.config)), coordinators,
                                    settings_from(args))
        if args.metrics:
            parse_host_port(args.metrics, "--metrics")
    except UsageError as exc:
        parser.error(str(exc))
    return asyncio.run(run(agents, args))


if __name__ == "__main__":
    sys.exit(main())
