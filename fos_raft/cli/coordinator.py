"""``fos-coordinator``: run one replica of the coordinator cluster (docs/coordinator.md).

On start it binds gRPC (``--grpc HOST:0`` picks a free port), starts Raft, then prints one
JSON line on stdout ``{"event": "ready", "grpc": ..., "raft": ..., "metrics": ..., "pid": ...}``
and writes the bound gRPC address to ``DATA_DIR/grpc.addr`` (atomically) for launchers.
SIGTERM/SIGINT stop it cleanly: gRPC drained, Raft stopped, journal synced and closed, exit 0.

Security (docs/security.md): ``--tls-cert/--tls-key/--tls-ca`` serve gRPC with mutual TLS and
authorise writes by the caller's certificate name (``--admin-names`` may act for any node);
``--raft-password-file`` encrypts Raft traffic between replicas (all need the same password).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import structlog

from fos_raft.api.service import CoordinatorService, ServiceSettings, start_server
from fos_raft.api.suspicion import ProbeSettings
from fos_raft.replica.core import RaftTiming, Replica, data_dir_lock
from fos_raft.runtime.logging import configure_logging
from fos_raft.runtime.stop_report import wait_for_stop_signal
from fos_raft.security.tls import (
    DEFAULT_ADMIN_NAMES,
    TlsConfig,
    TlsError,
    add_tls_arguments,
    parse_names,
    read_password_file,
    tls_from_args,
)

log = structlog.get_logger("fos_raft.cli.coordinator")
GRPC_ADDR_FILE = "grpc.addr"


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return value


def _peers(value: str) -> list[str]:
    return [_host_port(p.strip()) for p in value.split(",") if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    d = RaftTiming()
    p = ProbeSettings()
    s = ServiceSettings()
    parser = argparse.ArgumentParser(
        prog="fos-coordinator", description="Run one replica of the factoryOS coordinator."
    )
    parser.add_argument("--id", required=True, help="replica id (for logs and status)")
    parser.add_argument("--raft", required=True, type=_host_port,
                        help="Raft HOST:PORT: this replica's name in the cluster, dialled by "
                             "peers, and bound unless --raft-bind is given")
    parser.add_argument("--raft-bind", type=_host_port, default=None, metavar="HOST:PORT",
                        help="bind Raft here instead of --raft (peers reach --raft through a "
                             "proxy or NAT: fault-injection tests)")
    parser.add_argument(
        "--peers",
        type=_peers,
        default=[],
        help="comma-separated Raft HOST:PORT of all members (this one may be included)",
    )
    parser.add_argument("--grpc", required=True, type=_host_port, help="gRPC HOST:PORT (0: any)")
    parser.add_argument("--data-dir", required=True, type=Path, help="journal + snapshot dir")
    parser.add_argument("--metrics", type=_host_port, help="Prometheus HOST:PORT (0: any)")
    parser.add_argument(
        "--join",
        action="store_true",
        help="new replica for a running cluster: ask the --peers to add it as a member",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    timing = parser.add_argument_group("raft timing (seconds)")
    timing.add_argument("--raft-min-timeout", type=float, default=d.raft_min_timeout)
    timing.add_argument("--raft-max-timeout", type=float, default=d.raft_max_timeout)
    timing.add_argument("--append-entries-period", type=float, default=d.append_entries_period)
    timing.add_argument("--leader-fallback-timeout", type=float, default=d.leader_fallback_timeout)
    timing.add_argument("--connection-timeout", type=float, default=d.connection_timeout)
    timing.add_argument("--connection-retry-time", type=float, default=d.connection_retry_time)
    timing.add_argument(
        "--log-compaction-entries",
        type=int,
        default=d.log_compaction_entries,
        help="snapshot + truncate the journal after this many entries",
    )
    timing.add_argument("--log-compaction-time", type=float, default=d.log_compaction_time)
    probe = parser.add_argument_group("suspicion probe (ReportSuspect)")
    probe.add_argument("--probe-timeout", type=float, default=p.timeout, help="per try")
    probe.add_argument("--probe-tries", type=int, default=p.tries)
    probe.add_argument("--probe-interval", type=float, default=p.interval)
    probe.add_argument("--probe-patience", type=float, default=p.patience,
                       help="a suspect that does not answer (but does not refuse "
                       "connections) is probed this long before it is marked down")
    parser.add_argument(
        "--default-timeout",
        type=float,
        default=s.default_timeout,
        help="deadline for requests that carry none",
    )
    add_tls_arguments(parser)
    parser.add_argument(
        "--admin-names", type=parse_names, default=frozenset(DEFAULT_ADMIN_NAMES),
        metavar="NAME,...",
        help="with TLS: certificate names that may act for any node, decommission and "
        "change membership (default %(default)s)",
    )
    parser.add_argument("--raft-password-file", type=Path, metavar="FILE",
                        help="encrypt Raft traffic with the password in FILE (first line)")
    return parser


def security_from_args(args: argparse.Namespace) -> tuple[TlsConfig | None, str | None]:
    """(TLS settings, Raft password) from the flags; raises TlsError when unusable."""
    tls = tls_from_args(args)
    if tls is not None:
        tls.require_name(tls.coordinator_name, "the coordinator name")
    password = read_password_file(args.raft_password_file) if args.raft_password_file else None
    return tls, password


async def run(args: argparse.Namespace, tls: TlsConfig | None = None,
              password: str | None = None) -> int:
    data_dir: Path = args.data_dir
    lock_fd = data_dir_lock(data_dir)
    timing = RaftTiming(
        raft_min_timeout=args.raft_min_timeout,
        raft_max_timeout=args.raft_max_timeout,
        append_entries_period=args.append_entries_period,
        leader_fallback_timeout=args.leader_fallback_timeout,
        connection_timeout=args.connection_timeout,
        connection_retry_time=args.connection_retry_time,
        log_compaction_entries=args.log_compaction_entries,
        log_compaction_time=args.log_compaction_time,
    )
    replica = Replica(
        raft_address=args.raft, peers=args.peers, data_dir=data_dir, timing=timing, join=args.join,
        password=password, bind_address=args.raft_bind,
    )
    probe = ProbeSettings(
        timeout=args.probe_timeout, tries=args.probe_tries, interval=args.probe_interval,
        patience=args.probe_patience,
    )
    service = CoordinatorService(
        replica, args.id, ServiceSettings(default_timeout=args.default_timeout), probe,
        tls=tls, admin_names=args.admin_names,
    )
    server, port = await start_server(service, args.grpc)
    grpc_address = f"{args.grpc.rpartition(':')[0]}:{port}"
    replica.grpc_address = grpc_address
    try:
        await replica.start()
    except BaseException:
        await server.stop(0)
        raise

    metrics_address = ""
    if args.metrics:
        from prometheus_client import CollectorRegistry, start_http_server

        from fos_raft.api.metrics import ReplicaCollector

        registry = CollectorRegistry()
        registry.register(ReplicaCollector(replica, service.judge, args.id))
        host, _, mport = args.metrics.rpartition(":")
        httpd, _thread = start_http_server(int(mport), host, registry)
        metrics_address = f"{host}:{httpd.server_port}"

    tmp = data_dir / (GRPC_ADDR_FILE + ".tmp")
    tmp.write_text(grpc_address + "\n")
    os.replace(tmp, data_dir / GRPC_ADDR_FILE)
    ready = {
        "event": "ready",
        "id": args.id,
        "grpc": grpc_address,
        "raft": args.raft,
        "metrics": metrics_address,
        "pid": os.getpid(),
    }
    if tls is not None or password is not None:  # plaintext: the line stays as it was
        ready.update(tls=tls is not None, raft_encrypted=password is not None)
    print(json.dumps(ready), flush=True)
    log.info("coordinator ready", **{k: v for k, v in ready.items() if k != "event"})

    await wait_for_stop_signal()
    log.info("stopping")
    await server.stop(grace=1.0)
    await service.close()
    await replica.close()
    os.close(lock_fd)
    log.info("stopped cleanly")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("fos-coordinator", level=args.log_level, replica=args.id)
    try:
        tls, password = security_from_args(args)
    except TlsError as exc:
        log.error("cannot run", error=str(exc))
        print(f"fos-coordinator: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, tls, password))
    except RuntimeError as exc:  # bad data dir / bind failures: one line, non-zero
        log.error("cannot run", error=str(exc))
        print(f"fos-coordinator: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
