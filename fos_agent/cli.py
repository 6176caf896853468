"""``fos-agent``: run one node agent with a simulated stage.

    fos-agent --node-id ID --listen HOST:PORT --coordinators ADDR,... --data-dir DIR
              [--advertise HOST[:PORT]]
              [--produces item:qty] [--requires item:qty,...] [--capacity N]
              [--cycle-s SECONDS] [--workers N] [--metrics HOST:PORT] [--ready-file PATH]
              [--tls-cert PEM --tls-key PEM --tls-ca PEM] [--lineage-retention-days D]
    fos-agent export-lineage --data-dir DIR [--since T] > lineage.jsonl

Without --produces the node's spec is taken from the catalog (the node must be registered).
The bound address is logged and, once the agent serves and is registered, written to
--ready-file (atomically), which the harness and tests wait on. SIGTERM or SIGINT stop it
cleanly (exit 0). Bad arguments: one line on stderr, exit 2. Failure to start (foreign WAL,
coordinator unreachable, port taken): one line on stderr, exit 1. A wildcard --listen
(0.0.0.0) with coordinators on other hosts needs --advertise (what peers dial), unless this
host's name resolves to a non-loopback address; a loopback address is never announced to
coordinators off loopback (exit 2). With the --tls-* flags
every link is mutual TLS; the certificate must name --node-id (docs/security.md).
Every flag can also be set as FOS_AGENT_<FLAG> (flags win); --metrics also serves /healthz
and /readyz (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from fos_agent import export_lineage
from fos_agent.agent import Agent, AgentSettings
from fos_agent.core.metrics import registry_for
from fos_agent.rules.fetch import FetchSettings
from fos_agent.rules.suspicion import DetectorSettings
from fos_raft.model import ItemReq, ModelError
from fos_raft.runtime.advertise import AdvertiseError, advertised_host
from fos_raft.runtime.config import ConfigError, enable_completion, with_settings
from fos_raft.runtime.health import STARTING, Readiness
from fos_raft.runtime.http import MetricsAddressError, serve_http
from fos_raft.runtime.logging import add_log_format_argument, configure_logging
from fos_raft.runtime.stop_report import wait_for_stop_signal
from fos_raft.runtime.version import add_version_argument
from fos_raft.security.tls import TlsError, add_tls_arguments, tls_from_args

ENV_PREFIX = "FOS_AGENT_"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_item(text: str) -> ItemReq:
    """``wood:3`` -> ItemReq("wood", 3)."""
    item, sep, qty = text.strip().rpartition(":")
    if not sep or not item or not qty.strip().isdigit():
        raise UsageError(f"{text!r} is not item:qty (e.g. wood:3)")
    req = ItemReq(item.strip(), int(qty))
    try:
        req.validate("item")
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    return req


def parse_items(text: str) -> list[ItemReq]:
    return [parse_item(part) for part in text.split(",") if part.strip()]


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{what} {text!r} is not HOST:PORT")
    return host or "0.0.0.0", int(port)


_FETCH, _DETECT, _AGENT = FetchSettings(), DetectorSettings(), AgentSettings()


def add_tuning(parser: argparse.ArgumentParser) -> None:
    tune = parser.add_argument_group("tuning")
    tune.add_argument("--prefetch", type=int, default=_FETCH.prefetch,
                      help="batches of each input kept ready (default %(default)s)")
    tune.add_argument("--inflight", type=int, default=_FETCH.inflight,
                      help="concurrent requests per input item (default %(default)s)")
    tune.add_argument("--per-request", type=int, default=_FETCH.per_request,
                      help="batches one request may ask for (default %(default)s)")
    tune.add_argument("--long-poll-ms", type=int, default=_FETCH.long_poll_ms,
                      help="longest wait of a long-poll at the first supplier "
                           "(default %(default)s)")
    tune.add_argument("--long-poll-min-ms", type=int, default=_FETCH.long_poll_min_ms,
                      help="shortest one: a long-poll ends when a backup supplier is due "
                           "to be asked again, but not before this (default %(default)s)")
    tune.add_argument("--output-cap", type=int, default=_AGENT.output_cap,
                      help="unsold outputs before a non-final stage pauses")
    tune.add_argument("--ping-interval", type=float, default=_DETECT.ping_interval)
    tune.add_argument("--suspect-after", type=float, default=_DETECT.suspect_after)
    tune.add_argument("--retry-s", type=float, default=_AGENT.retry_s)
    tune.add_argument("--no-group-commit", action="store_true",
                      help="one synced WAL transaction per step (the naive design)")
    tune.add_argument("--lineage-retention-days", type=float,
                      default=_AGENT.lineage_retention_days,
                      help="genealogy index entries older than this are pruned "
                           "(default %(default)s; archive first with export-lineage)")
    tune.add_argument("--no-lineage-index", action="store_true",
                      help="no genealogy index and no WAL compaction (the design before "
                           "lot genealogy; for comparisons)")
    tune.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    add_log_format_argument(tune)
    tune.add_argument("--start-file", default=None, metavar="PATH",
                      help="start the simulated stage's cycles only once PATH exists "
                           "(a harness starts every stage at the same moment)")


def settings_from(args: argparse.Namespace) -> AgentSettings:
    for name in ("long_poll_ms", "long_poll_min_ms"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    for name in ("prefetch", "inflight", "per_request", "output_cap"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("ping_interval", "suspect_after", "retry_s", "lineage_retention_days"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    return AgentSettings(
        fetch=FetchSettings(prefetch=args.prefetch, inflight=args.inflight,
                            per_request=args.per_request, long_poll_ms=args.long_poll_ms,
                            long_poll_min_ms=args.long_poll_min_ms),
        detector=DetectorSettings(ping_interval=args.ping_interval,
                                  suspect_after=args.suspect_after),
        output_cap=args.output_cap, retry_s=args.retry_s,
        group_commit=not args.no_group_commit, start_file=args.start_file,
        lineage_retention_days=args.lineage_retention_days,
        lineage_index=not args.no_lineage_index,
        private_loop=False)  # a simulated stage runs no user code: one loop is enough


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fos-agent", description="Run a factoryOS node agent with a simulated "
                "stage (a cycle every --cycle-s seconds).",
                epilog="Every flag can also be set as FOS_AGENT_<FLAG> (e.g. "
                "FOS_AGENT_DATA_DIR); flags win over the environment.")
    add_version_argument(p)
    p.add_argument("--node-id", required=True)
    p.add_argument("--listen", required=True, help="HOST:PORT to serve on (port 0: any)")
    p.add_argument("--coordinators", required=True, help="coordinator gRPC ADDR,ADDR,...")
    p.add_argument("--data-dir", required=True, help="WAL and saved flow live here")
    p.add_argument("--produces", help="item:qty per batch (omit: use the catalog's spec)")
    p.add_argument("--requires", default="", help="item:qty,... inputs per cycle")
    p.add_argument("--capacity", type=int, default=1)
    p.add_argument("--cycle-s", type=float, default=1.0,
                   help="simulated cycle time; 0 = as fast as the WAL allows")
    p.add_argument("--workers", type=int, default=1, help="workers of the stage")
    p.add_argument("--advertise", metavar="HOST[:PORT]",
                   help="address peers and coordinators dial, registered instead of the "
                        "listen address; its port, if given, replaces the bound one (NAT). "
                        "Required with a wildcard --listen when the coordinators are on "
                        "other hosts")
    p.add_argument("--metrics", help="serve Prometheus /metrics on HOST:PORT")
    p.add_argument("--ready-file", help="write the bound address here once ready")
    add_tls_arguments(p)  # no env defaults: fosctl's FOS_TLS_* must not leak in here
    add_tuning(p)
    return p


def write_ready(path: str | None, text: str) -> None:
    if not path:
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, target)


def serve_metrics(where: str | None, agents: Sequence[Agent]) -> None:
    """/metrics, /healthz and /readyz (ready while every agent serves; fos_raft.runtime.http).
    Raises MetricsAddressError."""
    if not where:
        return
    registry, _ = registry_for(agents, process=True)

    def readiness() -> Readiness:
        for agent in agents:
            now = agent.health.current if agent.health else STARTING
            if not now.serving:
                return Readiness(False, f"{agent.node_id}: {now.reason}")
        return Readiness(True)

    serve_http(where, registry, readiness)


def agent_from_args(args: argparse.Namespace) -> Agent:
    if args.capacity < 1 or args.workers < 1 or args.cycle_s < 0:
        raise UsageError("--capacity and --workers must be >= 1, --cycle-s >= 0")
    parse_host_port(args.listen, "--listen")
    coordinators = [c.strip() for c in args.coordinators.split(",") if c.strip()]
    if not coordinators:
        raise UsageError("--coordinators needs at least one ADDR")
    produces = parse_item(args.produces) if args.produces else None
    requires = parse_items(args.requires)
    if requires and produces is None:
        raise UsageError("--requires needs --produces (or neither, to use the catalog spec)")
    settings = settings_from(args)
    try:  # checked here too, to name the flags (the Agent names its own arguments)
        advertised_host(args.listen, args.advertise, coordinators, flag="--advertise",
                        bind_flag="--listen", what="the coordinators and peers")
        tls = tls_from_args(args)
        return Agent(args.node_id, produces, requires, listen=args.listen,
                     coordinators=coordinators, data_dir=args.data_dir,
                     capacity=args.capacity, workers=args.workers, cycle_s=args.cycle_s,
                     advertise=args.advertise, settings=settings, tls=tls,
                     handle_signals=False)  # run() owns SIGTERM/SIGINT
    except (TlsError, AdvertiseError) as exc:
        raise UsageError(str(exc)) from None


async def run(agent: Agent, args: argparse.Namespace) -> int:
    try:
        serve_metrics(args.metrics, [agent])
    except MetricsAddressError as exc:
        sys.stderr.write(f"fos-agent: {exc}\n")
        return 1
    stopper = asyncio.ensure_future(wait_for_stop_signal())
    try:
        await agent.start()
    except Exception as exc:
        stopper.cancel()
        sys.stderr.write(f"fos-agent: cannot start {args.node_id}: {exc}\n")
        return 1
    agent.log.info("agent ready", address=agent.address, spec=str(agent.spec))
    write_ready(args.ready_file, agent.address)
    try:
        await stopper
    finally:
        await agent.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-lineage"]:
        return export_lineage.main(argv[1:])
    parser = build_parser()
    enable_completion(parser)
    try:  # every flag also as FOS_AGENT_<FLAG> (fos_raft.runtime.config); flags win
        argv = with_settings(parser, argv, ENV_PREFIX)
    except ConfigError as exc:
        parser.error(str(exc))
    args = parser.parse_args(argv)
    configure_logging("fos-agent", level=args.log_level, fmt=args.log_format,
                      node=args.node_id)
    try:
        agent = agent_from_args(args)
        if args.metrics:
            parse_host_port(args.metrics, "--metrics")
    except UsageError as exc:
        parser.error(str(exc))
    return asyncio.run(run(agent, args))


if __name__ == "__main__":
    sys.exit(main())
