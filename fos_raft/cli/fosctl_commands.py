"""The commands of fosctl: each takes the client, the parsed arguments and the output, and
returns the exit code (expected failures raise CommandError or CoordinatorError)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

import grpc

from fos_raft.api.client import CoordinatorClient, CoordinatorError, CoordinatorUnavailable
from fos_raft.api.convert import edge_from_pb
from fos_raft.cli import render
from fos_raft.cli.catalog_file import UNKNOWN_ADDRESS, cycle_message, dump_catalog, load_catalog
from fos_raft.model import ModelError, NodeSpec, find_item_cycle
from fos_raft.textsafe import escape

EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 1, 2, 3, 130


class CommandError(Exception):
    """An expected failure with its exit code; printed as one line."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------- output


class Out:
    """Prints JSON, rich tables on a terminal, plain aligned columns otherwise.

    Every string shown passes `textsafe.escape` here, the one place output leaves fosctl:
    values come from the cluster (an agent picks its own address, an old journal may hold
    anything) and must not drive the terminal. JSON is ASCII-only (``ensure_ascii``), so
    no control or bidi character reaches the terminal raw there either; a consumer that
    decodes it gets the values exactly."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stdout.isatty()

    def json(self, data: object, compact: bool = False) -> None:
        text = (json.dumps(data, separators=(",", ":"), ensure_ascii=True) if compact
                else json.dumps(data, indent=2, ensure_ascii=True))
        print(text, flush=True)

    def line(self, text: str = "") -> None:
        print(escape(text, keep="\n"), flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
        rows = [[escape(c) for c in row] for row in rows]
        title = escape(title)
        if self.tty:
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            # Text cells: rich would read "[...]" in a value as markup.
            table = Table(*headers, title=Text(title) if title else None,
                          title_justify="left")
            for row in rows:
                table.add_row(*(Text(c) for c in row))
            Console().print(table)
            return
        if title:
            print(title)
        cells = [[h.upper() for h in headers], *[list(r) for r in rows]]
        widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
        for row in cells:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.flush()


def exit_code_of(exc: CoordinatorError) -> int:
    if isinstance(exc, CoordinatorUnavailable) or exc.code in (
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED
    ):
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


async def cmd_status(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    if args.all:
        return await _status_all(client, out)
    st = await client.cluster_status()
    if out.as_json:
        out.json(render.status_json(st))
        return 0
    leader = f"{st.leader} (grpc {st.leader_grpc or '?'})" if st.leader else "none known"
    out.line(f"replica      {st.replica_id} (raft {st.raft_address}, grpc {st.grpc_address})")
    out.line(f"leader       {leader}; quorum {'yes' if st.has_quorum else 'NO'}")
    out.line(f"raft         term {st.term}, commit {st.commit_index}, "
             f"applied {st.applied_index}")
    out.line(f"flow         version {st.flow_version}, {st.edges} edges")
    out.line(f"nodes        {st.nodes_total} total, {st.nodes_alive} alive, "
             f"{st.nodes_in_flow} in flow, {st.nodes_drained} drained")
    out.line(f"suspicions   {st.refuted_suspicions} refuted, {st.confirmed_suspicions} confirmed")
    out.line(f"digest       {st.state_digest}")
    out.table(render.REPLICA_HEADERS, render.replica_rows(st.replicas), title="replicas")
    return 0


async def _status_all(client: CoordinatorClient, out: Out) -> int:
    await client.cluster_status()  # learns the replicas' gRPC addresses
    results: list[dict] = []
    for address in client.addresses:
        try:
            results.append(render.status_json(await client.cluster_status(address)))
        except CoordinatorError as exc:
            # as it happened: "refused (...)", "timed out after 1.0 s", or the status
            results.append({"grpc_address": address, "error": exc.message})
    if out.as_json:
        out.json({"replicas": results})
        return 0
    headers = ("grpc address", "replica", "leader?", "term", "applied", "flow v", "digest")
    rows = [
        (r["grpc_address"], "unreachable", "", "", "", "", r["error"][:60]) if "error" in r else
        (r["grpc_address"], r["replica_id"], "yes" if r["leader"] == r["raft_address"] else "",
         str(r["term"]), str(r["applied_index"]), str(r["flow_version"]), r["state_digest"][:16])
        for r in results
    ]
    out.table(headers, rows)
    return 0


async def _links_everywhere(client: CoordinatorClient,
                            views: list[render.NodeView]) -> list[render.NodeView]:
    """Each replica keeps the link faults of the reports it received (an agent reports
    to the replica its client prefers): add every other replica's to ``views``."""
    seen = {f for v in views for f in v.links_down}
    for address in client.addresses:
        try:
            other = render.nodes_from_pb(await client.list_nodes(only=address, timeout=2.0))
        except CoordinatorError:
            continue  # an unreachable replica's soft state is not known
        seen |= {f for v in other for f in v.links_down}
    merged = render.earliest(seen)
    return [replace(v, links_down=tuple(
        f for f in merged if v.spec.node_id in (f.supplier, f.consumer))) for v in views]


async def cmd_nodes(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    reply = await client.list_nodes()
    views = await _links_everywhere(client, render.nodes_from_pb(reply))
    if args.toml:
        toml = dump_catalog([v.spec for v in views],
                            header=f"exported by fosctl at flow version {reply.flow_version}")
        # Unsafe characters only occur inside its strings; \uNNNN reads back the same.
        print(escape(toml, keep="\n", unicode_style=True), flush=True)
    elif out.as_json:
        out.json(render.nodes_json(int(reply.flow_version), views))
    else:
        out.table(render.NODE_HEADERS, render.node_rows(views),
                  title=f"{len(views)} nodes at flow version {reply.flow_version}")
        for fault in render.links_down(views):
            out.line(render.link_text(fault))
    return 0


async def cmd_flow(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    fmt = "json" if out.as_json else args.format
    flow = render.flow_from_pb((await client.get_flow()).flow)
    if args.at_version > flow.version:
        # The coordinator would wait for this version to exist; say so at once instead.
        raise CommandError(f"NOT_FOUND: flow version {args.at_version} does not exist yet "
                           f"(current version {flow.version})")
    if args.at_version:
        flow = render.flow_from_pb((await client.get_flow(at_version=args.at_version)).flow)
    if args.node and fmt in ("table", "json"):
        nb = (await client.get_flow(args.node, at_version=args.at_version)).neighbourhood
        if not nb.known:
            raise CommandError(f"NOT_FOUND: node {args.node!r} is not registered")
        if fmt == "json":
            out.json(render.neighbourhood_json(nb))
        else:
            _print_neighbourhood(nb, out)
        return 0
    if fmt == "json":
        out.json(render.flow_json(flow))
        return 0
    if fmt == "table":
        out.table(render.FLOW_HEADERS, render.flow_rows(flow.edges),
                  title=f"flow version {flow.version}: {len(flow.members)} nodes in the flow, "
                        f"{len(flow.edges)} edges")
        return 0
    views = render.nodes_from_pb(await client.list_nodes())
    if args.node:
        keep = {args.node} | {e.supplier for e in flow.edges if e.consumer == args.node} | {
            e.consumer for e in flow.edges if e.supplier == args.node}
        flow = replace(flow, edges=tuple(e for e in flow.edges
                                         if args.node in (e.supplier, e.consumer)))
        views = [v for v in views if v.spec.node_id in keep]
    dot = render.flow_dot(flow, views)
    sys.stdout.write(dot if fmt == "dot" else render.dot_to_svg(dot))
    sys.stdout.flush()
    return 0


def _print_neighbourhood(nb, out: Out) -> None:
    state = "in flow" if nb.in_flow else "not in flow"
    if not nb.alive:
        state += ", down"
    if nb.drained:
        state += ", drained"
    out.table(render.FLOW_HEADERS,
              render.flow_rows(edge_from_pb(e) for e in nb.edges),
              title=f"{nb.node_id} at flow version {nb.version}: {state}")
    rows = [(n.node_id, n.address, "alive" if n.alive else "down") for n in nb.neighbours]
    out.table(("neighbour", "address", "state"), rows)


async def cmd_apply(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    specs = load_catalog(args.file)
    reply = await client.list_nodes()
    current = {v.spec.node_id: v for v in render.nodes_from_pb(reply)}
    merged = {node_id: v.spec for node_id, v in current.items()}
    merged.update((s.node_id, s) for s in specs)
    cycle = find_item_cycle(merged.values())
    if cycle is not None:
        raise CommandError("INVALID_ARGUMENT: with the nodes already registered, "
                           + cycle_message(cycle, merged.values()), EXIT_USAGE)
    changes = _stage_changes(specs, current)
    if changes and not (args.force or args.dry_run):
        raise CommandError(
            "would change what running stages make or take ("
            + "; ".join(f"{n}: {what}" for n, what in changes.items())
            + "); check the catalog, or apply with --force", EXIT_USAGE)
    results: list[dict] = []
    moved: dict[str, tuple[str, str]] = {}
    for given in specs:
        view = current.get(given.node_id)
        spec = _with_agent_address(given, view)
        if view is not None and spec.address != given.address \
                and given.address != UNKNOWN_ADDRESS:
            moved[spec.node_id] = (given.address, spec.address)
        if view is not None and view.spec == spec:
            action, version = "unchanged", int(reply.flow_version)
        elif args.dry_run:
            action, version = ("would register" if view is None else "would update"), 0
        else:
            try:
                if view is None:
                    action, version = "registered", await client.register(spec)
                else:
                    version = await client.update_spec(spec, expected_version=view.spec_version)
                    action = "updated"
            except CoordinatorError as exc:
                _report_apply(results, out)
                raise CommandError(f"node {spec.node_id!r}: {exc}", exit_code_of(exc)) from None
        result = {"node_id": spec.node_id, "action": action, "flow_version": version}
        if spec.node_id in changes:
            result["stage_change"] = changes[spec.node_id]
        if spec.node_id in moved:
            result["catalog_address"], result["agent_address"] = moved[spec.node_id]
        results.append(result)
        if not out.as_json:
            at = f" (flow version {version})" if action in ("registered", "updated") else ""
            what = f": {changes[spec.node_id]}" if spec.node_id in changes else ""
            if spec.node_id in moved:
                what += (f" (catalog address {moved[spec.node_id][0]}; its agent listens at "
                         f"{moved[spec.node_id][1]}, which stays)")
            out.line(f"{action:<15} {spec.node_id}{at}{what}")
    _report_apply(results, out, final=True, version=client.flow_version,
                  dry_run=args.dry_run)
    return 0


def _with_agent_address(spec: NodeSpec, view: render.NodeView | None) -> NodeSpec:
    """The spec to send: a node whose agent has registered keeps the address its agent
    advertised (the agent knows where it listens; a catalog under version control and an
    agent on port 0 must not fight), and so does a catalog entry that gives no address."""
    if view is None:
        return spec
    if view.started or spec.address == UNKNOWN_ADDRESS:
        return replace(spec, address=view.spec.address)
    return spec


def _stage_changes(specs: list[NodeSpec], current: dict[str, render.NodeView]) -> dict[str, str]:
    """What the catalog would change in the product or inputs of stages that are alive: such a
    change switches a running machine to other work, so a typo must not do it silently."""
    changes: dict[str, str] = {}
    for spec in specs:
        view = current.get(spec.node_id)
        if view is None or not view.alive:
            continue
        old = view.spec
        parts = []
        if old.produces != spec.produces:
            parts.append(f"produces {old.produces} -> {spec.produces}")
        if sorted(old.requires) != sorted(spec.requires):
            was = ", ".join(map(str, old.requires)) or "nothing"
            now = ", ".join(map(str, spec.requires)) or "nothing"
            parts.append(f"requires {was} -> {now}")
        if parts:
            changes[spec.node_id] = ", ".join(parts)
    return changes


def _report_apply(
    results: list[dict], out: Out, final: bool = False, version: int = 0,
    dry_run: bool = False,
) -> None:
    if out.as_json and (final or results):
        out.json({"results": results, "flow_version": version, "complete": final,
                  "dry_run": dry_run})
    elif final:
        counts = {a: sum(r["action"] == a for r in results) for a in
                  ("registered", "updated", "unchanged", "would register", "would update")}
        summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
        out.line(f"{summary}; flow version {version}"
                 + ("; dry run, nothing sent" if dry_run else ""))


async def cmd_node_write(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    version = await getattr(client, args.command)(args.node)
    past = {"drain": "drained", "undrain": "undrained", "decommission": "decommissioned"}
    if out.as_json:
        out.json({"node_id": args.node, "action": args.command, "flow_version": version})
    else:
        out.line(f"{past[args.command]} {args.node} (flow version {version})")
    return 0


async def cmd_update_spec(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    flags = {k: getattr(args, k) for k in ("address", "produces", "requires", "capacity")}
    given = {k: v for k, v in flags.items() if v is not None}
    if args.file and given:
        raise CommandError("give either --file or field flags, not both", EXIT_USAGE)
    if not args.file and not given:
        raise CommandError("nothing to change: give --file or at least one of "
                           "--address/--produces/--requires/--capacity", EXIT_USAGE)
    views = {v.spec.node_id: v for v in render.nodes_from_pb(await client.list_nodes())}
    view = views.get(args.node)
    if view is None:
        raise CommandError(f"NOT_FOUND: node {args.node!r} is not registered "
                           "(apply a catalog file to add it)")
    if args.file:
        from_file = {s.node_id: s for s in load_catalog(args.file)}
        if args.node not in from_file:
            raise CommandError(f"{args.file} has no node {args.node!r}", EXIT_USAGE)
        spec = from_file[args.node]
    else:
        spec = replace(view.spec, **given)
    try:
        spec.validate()
    except ModelError as exc:
        raise CommandError(f"INVALID_ARGUMENT: {exc.message}", EXIT_USAGE) from None
    expected = view.spec_version if args.expected_version is None else args.expected_version
    if spec == view.spec and args.expected_version is None:
        action, version = "unchanged", client.flow_version
    else:
        action, version = "updated", await client.update_spec(spec, expected_version=expected)
    if out.as_json:
        out.json({"node_id": args.node, "action": action, "flow_version": version,
                  "spec": render.spec_dict(spec)})
    else:
        out.line(f"{action} {args.node} (flow version {version})")
    return 0


async def cmd_members(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    if args.members_command == "list":
        reply = await client.list_members()
    elif args.members_command == "add":
        reply = await client.add_member(args.raft_address, args.grpc)
    else:
        reply = await client.remove_member(args.raft_address, args.grpc)
    if out.as_json:
        out.json({"replicas": [render.replica_dict(r) for r in reply.replicas]})
    else:
        out.table(render.REPLICA_HEADERS, render.replica_rows(reply.replicas),
                  title=f"{len(reply.replicas)} replicas")
    return 0


async def cmd_watch(client: CoordinatorClient, args: argparse.Namespace, out: Out) -> int:
    seen = 0
    async with contextlib.aclosing(client.watch_flow(args.node)) as updates:
        async for reply in updates:
            if args.node:
                nb = reply.neighbourhood
                if out.as_json:
                    out.json(render.neighbourhood_json(nb), compact=True)
                else:
                    out.line(f"flow version {nb.version}: {nb.node_id} "
                             f"{'in flow' if nb.in_flow else 'not in flow'}, "
                             f"{len(nb.edges)} edges")
                    _print_edges(edge_from_pb(e) for e in nb.edges)
            else:
                flow = render.flow_from_pb(reply.flow)
                if out.as_json:
                    out.json(render.flow_json(flow), compact=True)
                else:
                    out.line(f"flow version {flow.version}: {len(flow.members)} nodes in the "
                             f"flow, {len(flow.edges)} edges")
                    _print_edges(flow.edges)
            seen += 1
            if args.count and seen >= args.count:
                break
    return 0


def _print_edges(edges) -> None:
    for item, supplier, consumer, qty, rank in render.flow_rows(edges):
        print(escape(f"  {item}: {supplier} -> {consumer} x{qty} {rank}"))
    sys.stdout.flush()
