"""``fosctl trace BATCH_ID``: the genealogy of a batch (docs/genealogy.md).

Back (default) to its source batches, or forward to the final products it went into,
walking each node's genealogy index: online through the agents' ``Lineage`` RPC at the
addresses the coordinator lists, offline from agent data dirs given with ``--data-dirs``
(which win for the nodes they hold, so a killed node's part comes from its disk).
Exit codes: 0 complete, 4 partial (some node could not be read, or a record names an id
that is not a batch id; each is listed with the reason, never skipped), 1 unknown batch id,
3 coordinator unreachable with no data dirs.
"""

from __future__ import annotations

import argparse
import datetime as dt

from fos_raft.api.client import CoordinatorClient, CoordinatorError
from fos_raft.lineage.reader import LineageIndexError
from fos_raft.lineage.remote import IndexSources
from fos_raft.lineage.trace import BACK, FORWARD, Trace, UnknownBatch, trace, trace_to_json
from fos_raft.security.tls import TlsConfig, client_kwargs
from fos_raft.textsafe import escape

EXIT_PARTIAL = 4
_EXIT_REFUSED, _EXIT_USAGE, _EXIT_UNAVAILABLE = 1, 2, 3
HEADERS = ("batch", "node", "item", "qty", "made at (UTC)", "inputs", "outputs",
           "delivered to")


class TraceError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_trace_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("trace", help="a batch's genealogy: back to sources or forward to "
                                       "final products")
    cmd.add_argument("batch_id", metavar="BATCH_ID")
    way = cmd.add_mutually_exclusive_group()
    way.add_argument("--back", dest="direction", action="store_const", const=BACK,
                     help="to the source batches it was made from (default)")
    way.add_argument("--forward", dest="direction", action="store_const", const=FORWARD,
                     help="to the final products it went into")
    cmd.set_defaults(direction=BACK)
    cmd.add_argument("--depth", type=int, default=None, metavar="N",
                     help="stop N steps from the batch (default: no limit)")
    cmd.add_argument("--format", choices=("table", "json", "dot"), default="table")
    cmd.add_argument("--data-dirs", nargs="+", default=[], metavar="DIR",
                     help="read these agents' indexes from disk (an agent data dir or a "
                          "folder of them, e.g. what fos-sim --keep DIR leaves in DIR/agents)")


def made_at(ms: int) -> str:
    try:  # a damaged record's time is shown as such, not a traceback
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return f"(not a time: {ms})"


async def _addresses(coordinators: list[str], tls: TlsConfig | None, timeout: float,
                     have_dirs: bool) -> tuple[dict[str, str], str]:
    """Node -> agent address from the coordinator, and the reason to give for a node
    without one."""
    if not coordinators:
        if not have_dirs:
            raise TraceError("no coordinators and no --data-dirs: give --coordinators "
                             "HOST:PORT,... or --data-dirs DIR", _EXIT_USAGE)
        return {}, "not in --data-dirs (no coordinator given)"
    try:
        async with CoordinatorClient(coordinators, timeout=timeout,
                                     **client_kwargs(tls)) as client:
            reply = await client.list_nodes()
    except CoordinatorError as exc:
        if not have_dirs:
            raise TraceError(f"coordinator unreachable: {exc}", _EXIT_UNAVAILABLE) from exc
        return {}, f"not in --data-dirs and the coordinator is unreachable ({exc})"
    return ({n.spec.node_id: n.spec.address for n in reply.nodes if n.spec.address},
            "not in the coordinator's catalog nor in --data-dirs")


async def run_trace(args: argparse.Namespace, coordinators: list[str],
                    tls: TlsConfig | None) -> int:
    if args.depth is not None and args.depth < 0:
        raise TraceError("--depth must be >= 0", _EXIT_USAGE)
    addresses, why = await _addresses(coordinators, tls, args.timeout, bool(args.data_dirs))
    try:
        sources = IndexSources(addresses, args.data_dirs, tls=tls, timeout=args.timeout,
                               no_address_reason=why)
    except LineageIndexError as exc:
        raise TraceError(str(exc), _EXIT_USAGE) from exc
    try:
        result = await trace(args.batch_id, args.direction, sources.fetch, args.depth)
    except UnknownBatch as exc:
        raise TraceError(f"unknown batch: {exc}", _EXIT_REFUSED) from exc
    finally:
        await sources.aclose()
    fmt = "json" if getattr(args, "json", False) else args.format
    # Batch ids, nodes and reasons come from agents: escaped (JSON is ASCII-only already).
    print(escape(render_trace(result, fmt), keep="\n"), flush=True)
    return 0 if result.complete else EXIT_PARTIAL


def render_trace(t: Trace, fmt: str) -> str:
    import json

    if fmt == "json":
        return json.dumps(trace_to_json(t, made_at), indent=2)
    if fmt == "dot":
        return _dot(t)
    rows = [(b.batch_id, b.node, b.item, str(b.qty), made_at(b.made_at_ms),
             ",".join(b.inputs) or "-", ",".join(b.outputs) or "-", b.delivered_to or "-")
            for b in t.batches]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(HEADERS)]
    count = len(t.batches)
    lines = [f"{t.direction} trace of {t.batch}: {count} batch{'' if count == 1 else 'es'}"
             + ("" if t.complete else " (PARTIAL)")]
    for row in (HEADERS, *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for b in t.batches:  # below the table: wide, and absent for most batches
        if b.attrs:
            lines.append(f"attrs of {b.batch_id}: "
                         + ", ".join(f"{k}={v}" for k, v in b.attrs))
        if b.scrapped is not None:
            lines.append(f"scrapped: {b.batch_id} at {b.scrapped_at}: {b.scrapped}")
    lines += [f"unreachable: {node}: {reason}" for node, reason in t.unreachable]
    lines += [f"malformed: {bid} ({where}): not a batch id" for bid, where in t.malformed]
    return "\n".join(lines)


def _dot(t: Trace) -> str:
    def q(s: str) -> str:
        return '"' + s.replace('"', '\\"') + '"'

    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
    for b in t.batches:
        style = ", style=bold" if b.batch_id == t.batch else ""
        label = q(b.batch_id + "\\n" + f"{b.qty} x {b.item} @ {b.node}")
        lines.append(f"  {q(b.batch_id)} [label={label}{style}];")
    shown = {b.batch_id for b in t.batches}
    for b in t.batches:  # edges within the trace (a forward trace shows one path up)
        for src in b.inputs:
            if src in shown:
                lines.append(f"  {q(src)} -> {q(b.batch_id)};")
    for node, reason in t.unreachable:
        lines.append(f"  {q('unreachable ' + node)} [shape=note, label="
                     f"{q(f'{node} unreachable: {reason}')}];")
    for bid, where in t.malformed:
        lines.append(f"  {q('malformed ' + bid)} [shape=note, label="
                     f"{q(f'malformed id {bid} ({where})')}];")
    lines.append("}")
    return "\n".join(lines)
