"""The dashboard's HTTP side (aiohttp): the page and its assets, the state as JSON, and a
server-sent event stream that pushes the state whenever the collector publishes a new one.

Read-only: every route is a GET. The page loads nothing from elsewhere (a strict
Content-Security-Policy says so to the browser too).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from importlib import resources
from typing import Any

from aiohttp import web

from fos_dashboard.collector import Collector
from fos_raft.lineage.remote import IndexSources
from fos_raft.lineage.trace import UnknownBatch, trace_to_json
from fos_raft.lineage.trace import trace as trace_walk
from fos_raft.model import split_batch_id
from fos_raft.textsafe import page_json

COLLECTOR = web.AppKey("collector", Collector)
TRACE_RPC_TIMEOUT_S = 3.0  # one agent's Lineage answer; past it the node is "unreachable"
KEEPALIVE_S = 15.0  # an SSE comment line this often keeps proxies from closing the stream
ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> bytes:
    return resources.files("fos_dashboard").joinpath("static", name).read_bytes()


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


async def index(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(body=_asset(name), content_type=ASSETS[name], charset="utf-8")


async def state(request: web.Request) -> web.Response:
    collector = request.app[COLLECTOR]
    return web.Response(text=collector.document, content_type="application/json")


async def events(request: web.Request) -> web.StreamResponse:
    """``text/event-stream``: the whole state now, then again on every change."""
    collector = request.app[COLLECTOR]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    generation = -1
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while True:
            if collector.generation > generation:
                generation = collector.generation
                await response.write(f"event: state\ndata: {collector.document}\n\n".encode())
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await collector.wait_change(generation)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
    return response


def _json(body: Any, status: int = 200) -> web.Response:
    """JSON the page shows: strings escaped, no raw markup (`textsafe.page_json`)."""
    return web.Response(text=page_json(body), status=status, content_type="application/json")


def made_at(ms: int) -> str:
    try:  # a damaged record's time must not turn the answer into a 500
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return f"(not a time: {ms})"


async def trace(request: web.Request) -> web.Response:
    """Genealogy of a batch (``?batch=ID[&direction=back|forward][&depth=N]``): the same walk
    as ``fosctl trace``, over the agents' Lineage RPC at the addresses the coordinator
    gave. 200 with the trace (``complete`` false and ``unreachable`` listed when an agent
    did not answer), 404 for a batch no agent knows, 400 for bad parameters."""
    collector = request.app[COLLECTOR]
    batch_id = request.query.get("batch", "").strip()
    direction = request.query.get("direction", "back")
    depth_text = request.query.get("depth", "").strip()
    if split_batch_id(batch_id) is None:
        return _json({"error": "give ?batch=<producer>:<seq>"}, status=400)
    if direction not in ("back", "forward"):
        return _json({"error": "direction is back or forward"}, status=400)
    depth: int | None = None
    if depth_text:
        if not depth_text.isdigit():
            return _json({"error": "depth is a whole number >= 0"}, status=400)
        depth = int(depth_text)
    addresses = {n.node_id: n.address for n in collector.snapshot.nodes if n.address}
    sources = IndexSources(addresses, tls=collector.tls, timeout=TRACE_RPC_TIMEOUT_S,
                           no_address_reason="not in the coordinator's catalog")
    try:
        result = await trace_walk(batch_id, direction, sources.fetch, depth)
    except UnknownBatch as exc:
        return _json({"error": f"unknown batch: {exc}"}, status=404)
    finally:
        await sources.aclose()
    body = trace_to_json(result, made_at)
    body["complete"] = result.complete
    return _json(body)


def build_app(collector: Collector) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[COLLECTOR] = collector
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/trace", trace)
    return app
