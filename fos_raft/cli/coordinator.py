"""``fos-coordinator``: run one replica of the coordinator cluster (docs/coordinator.md).

On start it binds gRPC (``--grpc HOST:0`` picks a free port), starts Raft, then prints one
JSON line on stdout ``{"event": "ready", "grpc": ..., "raft": ..., "metrics": ..., "pid": ...}``
and writes the bound gRPC address to ``DATA_DIR/grpc.addr`` (atomically) for launchers.
SIGTERM/SIGINT stop it cleanly: gRPC drained, Raft stopped, journal synced and closed, exit 0.

Operations (docs/operations.md): every flag also from ``--config FILE`` (TOML) or
``FOS_COORDINATOR_<FLAG>`` (flags > env > file); ``--metrics`` serves /metrics, /healthz and
/readyz; grpc.health.v1 says SERVING only with a leader and a quorum (fos_raft.api.health);
``--restore FILE`` seeds a new cluster from a ``fosctl snapshot save`` file.

Security (docs/security.md): ``--tls-cert/--tls-key/--tls-ca`` serve gRPC with mutual TLS and
authorise writes by the caller's certificate name (``--admin-names`` may act for any node);
``--raft-password-file`` encrypts Raft traffic between replicas (all need the same password).
Secure by default (fos_raft.runtime.secure_start): a Raft bind off loopback without a
password is refused unless ``--insecure-raft`` is given (then every start warns), and so is
a password file readable by group/others or a password under 16 bytes. gRPC resources per
client are bounded (fos_raft.runtime.limits: ``--grpc-max-*`` flags).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from fos_raft.api.backup import seed_from_snapshot
from fos_raft.api.health import ReplicaHealth
from fos_raft.api.metrics import LatencyHistograms, ReplicaCollector, RpcTimer
from fos_raft.api.production_metrics import ProductionCollector
from fos_raft.api.receipts import ReceiptWatcher
from fos_raft.api.service import CoordinatorService, ServiceSettings, start_server
from fos_raft.api.suspicion import ProbeSettings
from fos_raft.api.watch import WatchLimits
from fos_raft.replica.core import RaftTiming, Replica, data_dir_lock
from fos_raft.replica.failstop import EXIT_STATUS as STORAGE_FAULT_EXIT
from fos_raft.replica.storage_check import StorageFault
from fos_raft.runtime.advertise import (
    AdvertiseError,
    add_advertise_grpc_argument,
    add_advertise_raft_argument,
    coordinator_grpc_address,
    coordinator_grpc_host,
    coordinator_raft_addresses,
)
from fos_raft.runtime.config import (
    EXIT_BAD_CONFIG,
    ConfigError,
    OneLineParser,
    add_config_argument,
    enable_completion,
    with_settings,
)
from fos_raft.runtime.health import HealthPublisher
from fos_raft.runtime.http import MetricsAddressError, serve_http
from fos_raft.runtime.limits import (
    RpcLimiter,
    add_limit_arguments,
    limits_from_args,
    raise_nofile_limit,
)
from fos_raft.runtime.logging import add_log_format_argument, configure_logging, get_logger
from fos_raft.runtime.secure_start import check_raft_exposure, read_private_password
from fos_raft.runtime.stop_report import wait_for_stop_signal
from fos_raft.runtime.version import BuildInfoCollector, add_version_argument
from fos_raft.security.tls import (
    DEFAULT_ADMIN_NAMES,
    TlsConfig,
    TlsError,
    add_tls_arguments,
    parse_names,
    tls_from_args,
)
from fos_raft.state.snapshot import SnapshotError, decode

log = get_logger("fos_raft.cli.coordinator")
GRPC_ADDR_FILE = "grpc.addr"
ENV_PREFIX = "FOS_COORDINATOR_"


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
    parser = OneLineParser(
        prog="fos-coordinator", description="Run one replica of the factoryOS coordinator.",
        epilog=f"Every flag can also be set in the --config file (same names) or as "
        f"{ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}DATA_DIR); flags > environment > file.",
    )
    add_version_argument(parser)
    add_config_argument(parser, ENV_PREFIX)
    parser.add_argument("--id", required=True, help="replica id (for logs and status)")
    parser.add_argument("--raft", required=True, type=_host_port,
                        help="Raft HOST:PORT: this replica's name in the cluster, dialled by "
                             "peers, and bound unless --raft-bind is given")
    parser.add_argument("--raft-bind", type=_host_port, default=None, metavar="HOST:PORT",
                        help="bind Raft here instead of --raft (peers reach --raft through a "
                             "proxy or NAT: fault-injection tests)")
    add_advertise_raft_argument(parser)
    parser.add_argument(
        "--peers",
        type=_peers,
        default=[],
        help="comma-separated Raft HOST:PORT of all members (this one may be included)",
    )
    parser.add_argument("--grpc", required=True, type=_host_port, help="gRPC HOST:PORT (0: any)")
    add_advertise_grpc_argument(parser)  # bind and announce apart (fos_raft.runtime.advertise)
    parser.add_argument("--data-dir", required=True, type=Path, help="journal + snapshot dir")
    parser.add_argument("--metrics", type=_host_port, help="Prometheus HOST:PORT (0: any)")
    parser.add_argument(
        "--join",
        action="store_true",
        help="new replica for a running cluster: ask the --peers to add it as a member "
             "(needs --raft-password-file; without one, add it with fosctl members add)",
    )
    parser.add_argument(
        "--restore", type=Path, metavar="FILE",
        help="seed a NEW cluster with this snapshot (fosctl snapshot save) once it has a "
        "leader; ignored, with a warning, when the cluster already has state")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    add_log_format_argument(parser)
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
                        help="encrypt and authenticate Raft traffic with the password in FILE "
                        "(first line, at least 16 bytes; the file must be mode 0600)")
    parser.add_argument("--insecure-raft", action="store_true",
                        help="allow a Raft bind off loopback without a password: anyone who "
                        "reaches the port can run code in the replica (logged at every start)")
    add_limit_arguments(parser)
    return parser


def security_from_args(args: argparse.Namespace) -> tuple[TlsConfig | None, str | None]:
    """(TLS settings, Raft password) from the flags; raises TlsError (TLS) or ConfigError
    (password file) when unusable."""
    tls = tls_from_args(args)
    if tls is not None:
        tls.require_name(tls.coordinator_name, "the coordinator name")
    password = (read_private_password(args.raft_password_file) if args.raft_password_file
                else None)
    return tls, password


def read_snapshot(path: Path) -> bytes:
    """The --restore file, checked (checksum included) before anything starts."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--restore {path}: {exc.strerror or exc}") from None
    try:
        decode(blob)
    except SnapshotError as exc:
        raise ConfigError(f"--restore {path}: {exc.message}") from None
    return blob


async def run(args: argparse.Namespace, tls: TlsConfig | None = None,
              password: str | None = None, snapshot: bytes | None = None,
              insecure_raft: bool = False) -> int:
    data_dir: Path = args.data_dir
    lock_fd = data_dir_lock(data_dir)
    if insecure_raft:
        log.warning("INSECURE: Raft listens off loopback without a password (--insecure-raft):"
                    " anyone who reaches it can run code in this replica",
                    raft=args.raft_bind or args.raft)
    open_files, _ = raise_nofile_limit()
    limits = limits_from_args(args)
    limiter = RpcLimiter(limits.max_rpcs, limits.max_rpcs_per_peer)
    service_limits = {**limits.as_dict(), "open_files": open_files}
    log.info("grpc limits", **service_limits)
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
        watch_limits=WatchLimits(limits.max_watch_streams, limits.max_watch_per_peer,
                                 limits.leader_watch_streams),
    )
    health = ReplicaHealth(replica)
    registry = histograms = httpd = None
    metrics_address = ""
    if args.metrics:  # bound first: a port in use fails before Raft starts
        registry = CollectorRegistry()
        histograms = LatencyHistograms(registry)
        replica.commit_observer = histograms.commit.observe
        httpd, metrics_address = serve_http(args.metrics, registry, lambda: health.last)
    # the limiter first: a refused RPC costs no handler and no timing
    interceptors: tuple[Any, ...] = (limiter,)
    if histograms is not None:
        interceptors += (RpcTimer(histograms.rpc),)
    # stop signals are ours before the ready line: a supervisor that reacts to it at once
    # with SIGTERM gets a clean stop, not the default handler's death
    stopper = asyncio.ensure_future(wait_for_stop_signal())
    server, port = await start_server(service, args.grpc, interceptors,
                                      options=limits.server_options())
    grpc_address = coordinator_grpc_address(args, port)  # announced: clients dial this
    replica.grpc_address = grpc_address
    try:
        await replica.start()
    except BaseException:
        stopper.cancel()
        await server.stop(0)
        raise
    if histograms is not None and replica.journal is not None:
        replica.journal.fsync_observer = histograms.journal_fsync.observe
    publisher = HealthPublisher(service.health, ("", "fos.v1.Coordinator"), health.check)
    await publisher.publish_once()
    health_task = asyncio.ensure_future(publisher.run())
    restore_task = (asyncio.ensure_future(seed_from_snapshot(replica, snapshot))
                    if snapshot is not None else None)
    watcher: ReceiptWatcher | None = None
    if registry is not None:
        watcher = ReceiptWatcher(replica, tls)
        watcher.start()
        for collector in (
            ReplicaCollector(replica, service.judge, args.id, health, watcher.receipts),
            ProductionCollector(replica, service.production, args.id),
            BuildInfoCollector(), ProcessCollector(registry=None), PlatformCollector(None),
        ):
            registry.register(collector)

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
    if insecure_raft:
        ready["insecure_raft"] = True
    print(json.dumps(ready), flush=True)
    log.info("coordinator ready", **{k: v for k, v in ready.items() if k != "event"})

    await stopper
    log.info("stopping")
    health_task.cancel()
    if restore_task is not None:
        restore_task.cancel()
    if watcher is not None:
        await watcher.close()
    if httpd is not None:
        await asyncio.to_thread(httpd.shutdown)
    await server.stop(grace=1.0)
    await service.close()
    await replica.close()
    os.close(lock_fd)
    log.info("stopped cleanly")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    enable_completion(parser)
    try:
        argv = with_settings(parser, argv, ENV_PREFIX, config_flag=True)
    except ConfigError as exc:
        print(f"fos-coordinator: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    args = parser.parse_args(argv)
    configure_logging("fos-coordinator", level=args.log_level, fmt=args.log_format,
                      replica=args.id)
    try:
        tls, password = security_from_args(args)
        insecure_raft = check_raft_exposure(args.raft_bind or args.raft, password is not None,
                                            args.insecure_raft)
        args.raft, args.raft_bind = coordinator_raft_addresses(args)
        snapshot = read_snapshot(args.restore) if args.restore else None
        coordinator_grpc_host(args)  # a wildcard/loopback announce is refused before binding
    except (TlsError, ConfigError, AdvertiseError) as exc:
        log.error("cannot run", error=str(exc))
        print(f"fos-coordinator: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, tls, password, snapshot, insecure_raft))
    except StorageFault as exc:  # a damaged or lost journal / snapshot: never started,
        # with the fail-stop status: this replica cannot trust its own state
        _cannot_run(str(exc))
        return STORAGE_FAULT_EXIT
    except (RuntimeError, MetricsAddressError) as exc:  # data dir in use, bind failures
        return _cannot_run(str(exc))
    except OSError as exc:  # e.g. an unwritable data dir: one line, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        return _cannot_run(f"{exc.strerror or exc}:{where}")


def _cannot_run(reason: str) -> int:
    log.error("cannot run", error=reason)
    print(f"fos-coordinator: {reason}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
