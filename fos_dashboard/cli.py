"""fos-dashboard: the floor display, a read-only web view of a factoryOS cluster.

    fos-dashboard --coordinators 127.0.0.1:7000,127.0.0.1:7001 --listen 127.0.0.1:8080

It is a client of the coordinator API (and reads agents' Stats); see docs/dashboard.md.
With ``--ready-file`` it writes its URL to that file once it serves (fos-sim waits on it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from fos_dashboard.collector import Collector
from fos_dashboard.server import build_app
from fos_raft.api.client import CoordinatorClient
from fos_raft.runtime.logging import add_log_format_argument, configure_logging, get_logger
from fos_raft.runtime.version import add_version_argument
from fos_raft.security.tls import (
    TlsConfig,
    TlsError,
    add_tls_arguments,
    client_kwargs,
    tls_from_args,
)

log = get_logger("fos_dashboard")


class UsageError(Exception):
    """Bad command line: one line on stderr, exit 2."""


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fos-dashboard",
        description="Serve a read-only live web view of a factoryOS cluster: the flow graph, "
                    "node table, recent events and the coordinator cluster (docs/dashboard.md).",
    )
    p.add_argument("--coordinators", required=True, metavar="ADDR,...",
                   help="gRPC host:port of the coordinator replicas, comma separated")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve HTTP (port 0 picks a free one) [127.0.0.1:8080]")
    p.add_argument("--ready-file", type=Path, metavar="FILE",
                   help="write the page's URL to FILE once serving")
    p.add_argument("--target", action="append", default=[], metavar="ITEM=PER_HOUR",
                   help="production target of a final item, finished batches per hour "
                        "(as the catalog's target_per_hour); repeatable")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    add_log_format_argument(p)
    add_version_argument(p)
    add_tls_arguments(p, env=True)
    return p


def parse_targets(given: Sequence[str]) -> dict[str, float]:
    targets: dict[str, float] = {}
    for text in given:
        item, sep, value = text.partition("=")
        try:
            per_hour = float(value)
        except ValueError:
            per_hour = 0.0
        if not sep or not item.strip() or not per_hour > 0:
            raise UsageError(f"--target {text!r} is not ITEM=PER_HOUR (a positive number)")
        targets[item.strip()] = per_hour
    return targets


async def serve(addresses: list[str], host: str, port: int, tls: TlsConfig | None,
                ready_file: Path | None, targets: dict[str, float] | None = None) -> None:
    # the stop signals are ours before anything starts: a supervisor that stops us while we
    # start gets the clean stop too, not the default handler's death
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with CoordinatorClient(addresses, timeout=5.0, **client_kwargs(tls)) as client:
        collector = Collector(client, tls, targets=targets or {})
        runner = web.AppRunner(build_app(collector), shutdown_timeout=1.0,
                               handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                raise UsageError(f"--listen {host}:{port}: {exc.strerror or exc}") from None
            bound = runner.addresses[0][1]
            shown = f"[{host}]" if ":" in host else host
            url = f"http://{shown}:{bound}/"
            log.info("serving", url=url, coordinators=addresses)
            print(f"fos-dashboard: serving {url}", file=sys.stderr, flush=True)
            if ready_file is not None:
                ready_file.write_text(url + "\n")
            collecting = asyncio.create_task(collector.run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({collecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            collecting.cancel()
            stopping.cancel()
            failed, _ = await asyncio.gather(collecting, stopping, return_exceptions=True)
            if isinstance(failed, Exception):  # the loops survive outages: this is a bug
                log.error("collector_failed", error=repr(failed))
                raise RuntimeError(f"the collector stopped: {failed!r}") from failed
        finally:
            await runner.cleanup()
            await collector.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("fos-dashboard", level="DEBUG" if args.verbose else "WARNING",
                      fmt=args.log_format)
    try:
        addresses = [a.strip() for a in args.coordinators.split(",") if a.strip()]
        if not addresses:
            raise UsageError("--coordinators needs at least one HOST:PORT")
        host, port = parse_listen(args.listen)
        try:
            tls = tls_from_args(args)
        except TlsError as exc:
            raise UsageError(str(exc)) from None
        targets = parse_targets(args.target)
        asyncio.run(serve(addresses, host, port, tls, args.ready_file, targets))
    except UsageError as exc:
        print(f"fos-dashboard: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"fos-dashboard: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
