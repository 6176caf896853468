"""fosctl: the factoryOS admin CLI (docs/fosctl.md).

Talks to the coordinator cluster through CoordinatorClient (failover, retries, versions
that never go backwards). Every data-printing command takes --json. Expected failures end
with one line on stderr, ``fosctl: <command>: <reason>``, and a non-zero exit code:
1 refused by the coordinator (or another failure), 2 bad usage or input file,
3 coordinator unreachable, 130 interrupted.

With ``--tls-cert/--tls-key/--tls-ca`` (or FOS_TLS_CERT/FOS_TLS_KEY/FOS_TLS_CA) it talks
mutual TLS; its certificate's name must be one of the coordinator's admin names for writes
on other nodes, decommission and membership (docs/security.md).

``health`` and ``snapshot`` ask each replica directly, not through the failover client
(fosctl_health, fosctl_backup; docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.cli import render
from fos_raft.cli.catalog_file import CatalogFileError
from fos_raft.cli.fosctl_backup import cmd_snapshot
from fos_raft.cli.fosctl_backup import inspect as inspect_snapshot
from fos_raft.cli.fosctl_commands import (
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_USAGE,
    CommandError,
    Out,
    cmd_apply,
    cmd_flow,
    cmd_members,
    cmd_node_write,
    cmd_nodes,
    cmd_status,
    cmd_update_spec,
    cmd_watch,
    exit_code_of,
)
from fos_raft.cli.fosctl_health import cmd_health
from fos_raft.cli.fosctl_production import add_production_parser, cmd_production
from fos_raft.cli.fosctl_trace import TraceError, add_trace_parser, run_trace
from fos_raft.model import ItemReq
from fos_raft.runtime.config import enable_completion
from fos_raft.runtime.logging import add_log_format_argument, configure_logging
from fos_raft.runtime.version import add_version_argument
from fos_raft.security.tls import TlsError, add_tls_arguments, client_kwargs, tls_from_args
from fos_raft.textsafe import escape

__all__ = ["CommandError", "Out", "build_parser", "command_label", "main"]


# ---------------------------------------------------------------- argument parsing


def _item_req(text: str) -> ItemReq:
    item, sep, qty = text.strip().rpartition(":")
    if not sep or not item or not qty.strip().lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected item:qty (e.g. wood:3), got {text!r}")
    return ItemReq(item.strip(), int(qty))


def _item_reqs(text: str) -> tuple[ItemReq, ...]:
    if text.strip().lower() in ("", "none", "-"):
        return ()
    return tuple(_item_req(part) for part in text.split(","))


READ_CONSISTENCY = {"linearizable": pb.LINEARIZABLE, "serializable": pb.SERIALIZABLE}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fosctl", description="Administer a factoryOS coordinator cluster."
    )
    add_version_argument(parser)
    parser.add_argument(
        "--coordinators", default=os.environ.get("FOS_COORDINATORS", ""),
        help="comma-separated gRPC addresses of the replicas (env FOS_COORDINATORS)",
    )
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="overall deadline of each call in seconds, retries included")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--consistency", choices=tuple(READ_CONSISTENCY), default=None,
        help="reads: linearizable (default for nodes, flow) confirms through the leader "
             "first, never stale; serializable (default for status, which must work without "
             "a quorum) answers from the replica at once, may be stale")
    parser.add_argument("-v", "--verbose", action="store_true", help="log failovers")
    add_log_format_argument(parser)
    # --json is accepted after the subcommand too; SUPPRESS keeps the global value otherwise.
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                           help="print JSON")
    add_tls_arguments(parser, env=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser("status", parents=[json_flag], help="cluster status")
    status.add_argument("--all", action="store_true", help="ask every replica")
    nodes = sub.add_parser("nodes", parents=[json_flag], help="registered nodes")
    nodes.add_argument("--toml", action="store_true", help="print as a catalog file")
    flow = sub.add_parser("flow", parents=[json_flag], help="the flow")
    flow.add_argument("--format", choices=("table", "json", "dot", "svg"), default="table")
    flow.add_argument("--at-version", type=int, default=0, metavar="V",
                      help="a past version from the coordinator's bounded history")
    flow.add_argument("--node", metavar="N", help="only N's neighbourhood")
    apply = sub.add_parser("apply", parents=[json_flag], help="register/update from TOML")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="validate and show, send nothing")
    apply.add_argument("--force", action="store_true",
                       help="also change the product or inputs of stages that are alive")
    for name, text in (("drain", "move consumers off a node for maintenance"),
                       ("undrain", "bring a drained node back"),
                       ("decommission", "remove a node from the catalog")):
        cmd = sub.add_parser(name, parents=[json_flag], help=text)
        cmd.add_argument("node")
    upd = sub.add_parser("update-spec", parents=[json_flag], help="change one node's spec")
    upd.add_argument("node")
    upd.add_argument("--file", help="take the spec of NODE from this catalog file")
    upd.add_argument("--address")
    upd.add_argument("--produces", type=_item_req, metavar="ITEM:QTY")
    upd.add_argument("--requires", type=_item_reqs, metavar="ITEM:QTY,...|none")
    upd.add_argument("--capacity", type=int)
    upd.add_argument("--expected-version", type=int, metavar="V",
                     help="apply only if the node's spec_version is V (default: as read)")
    members = sub.add_parser("members", help="coordinator replicas")
    msub = members.add_subparsers(dest="members_command", required=True, metavar="ACTION")
    msub.add_parser("list", parents=[json_flag], help="list replicas")
    for name in ("add", "remove"):
        cmd = msub.add_parser(name, parents=[json_flag], help=f"{name} a replica")
        cmd.add_argument("raft_address", metavar="RAFT_ADDR")
        cmd.add_argument("--grpc", default="", metavar="GRPC_ADDR",
                         help="the replica's gRPC address")
    health = sub.add_parser(
        "health", parents=[json_flag],
        help="exit 0 only if every endpoint serves and the cluster has a leader and quorum")
    health.add_argument("agents", nargs="*", metavar="[NODE@]AGENT_ADDR",
                        help="agents to check too (NODE: the name its TLS certificate carries)")
    snap = sub.add_parser("snapshot", help="back up the replicated state (docs/operations.md)")
    ssub = snap.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")
    save = ssub.add_parser("save", parents=[json_flag],
                           help="write a checksummed snapshot of the leader's state to FILE")
    save.add_argument("file", metavar="FILE")
    check = ssub.add_parser("inspect", parents=[json_flag],
                            help="verify a snapshot file's checksum and summarise it")
    check.add_argument("file", metavar="FILE")
    watch = sub.add_parser("watch", parents=[json_flag], help="print the flow on every change")
    watch.add_argument("--node", metavar="N", help="only N's neighbourhood")
    watch.add_argument("--count", type=int, default=0, help="stop after this many updates")
    add_production_parser(sub, json_flag)
    add_trace_parser(sub)
    return parser


def command_label(args: argparse.Namespace) -> str:
    """The command as the user typed it, for one-line error messages."""
    if args.command == "members":
        extra = getattr(args, "raft_address", "")
        return " ".join(filter(None, ("members", args.members_command, extra)))
    if args.command == "snapshot":
        return f"snapshot {args.snapshot_command} {args.file}"
    target = getattr(args, "node", None) or getattr(args, "file", None)
    if args.command == "trace":
        target = args.batch_id if len(args.batch_id) <= 200 else f"{args.batch_id[:40]}..."
    if args.command in ("flow", "watch", "health", "production"):
        target = None
    return f"{args.command} {target}" if target else args.command


COMMANDS = {
    "status": cmd_status, "nodes": cmd_nodes, "flow": cmd_flow, "apply": cmd_apply,
    "drain": cmd_node_write, "undrain": cmd_node_write, "decommission": cmd_node_write,
    "update-spec": cmd_update_spec, "members": cmd_members, "watch": cmd_watch,
    "production": cmd_production,
}


def _default_mode(args: argparse.Namespace) -> str:
    # status is what an operator runs when the cluster is broken: it must answer without a
    # quorum (it shows has_quorum); reads that feed decisions are linearizable.
    return "serializable" if args.command == "status" else "linearizable"


async def run(args: argparse.Namespace) -> int:
    if args.command == "snapshot" and args.snapshot_command == "inspect":  # offline
        return inspect_snapshot(Path(args.file), Out(args.json))
    addresses = [a.strip() for a in args.coordinators.split(",") if a.strip()]
    if args.command == "trace":  # may work offline, without a coordinator
        try:
            tls = tls_from_args(args)
        except TlsError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        try:
            return await run_trace(args, addresses, tls)
        except TraceError as exc:
            raise CommandError(str(exc), exc.exit_code) from None
    if not addresses:
        raise CommandError("no coordinators: give --coordinators HOST:PORT,... "
                           "or set FOS_COORDINATORS", EXIT_USAGE)
    try:
        tls = tls_from_args(args)
    except TlsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    out = Out(args.json)
    if args.command == "health":  # each endpoint on its own: no failover client
        return await cmd_health(addresses, args, tls, out)
    if args.command == "snapshot":  # leader first, a lone survivor too: no failover client
        return await cmd_snapshot(addresses, args, tls, out)
    async with CoordinatorClient(addresses, timeout=args.timeout,
                                 **client_kwargs(tls)) as client:
        client.read_consistency = READ_CONSISTENCY[args.consistency or _default_mode(args)]
        return await COMMANDS[args.command](client, args, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    configure_logging("fosctl", level="DEBUG" if args.verbose else "WARNING",
                      fmt=args.log_format)
    label = command_label(args)
    try:
        return asyncio.run(run(args))
    except CommandError as exc:
        code, reason = exc.exit_code, str(exc)
    except CoordinatorError as exc:
        code, reason = exit_code_of(exc), str(exc)
    except (CatalogFileError, render.RenderError) as exc:
        code, reason = (EXIT_USAGE if isinstance(exc, CatalogFileError) else EXIT_REFUSED,
                        str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into e.g. `head`: not an error; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    # The reason may quote what the coordinator or a file said: one escaped line.
    print(escape(f"fosctl: {label}: {reason}"), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
