"""The ``--metrics`` HTTP endpoint of every factoryOS process.

``/metrics`` Prometheus text from the given registry, ``/healthz`` 200 while the process
runs (liveness), ``/readyz`` 200 while it serves, 503 with the reason otherwise
(readiness, the same answer as grpc.health.v1). Served from a daemon thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from fos_raft.runtime.health import Readiness


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the process at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class MetricsAddressError(Exception):
    """The --metrics address cannot be served (bad form, port in use, no permission)."""


def split_host_port(address: str, flag: str = "--metrics") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise MetricsAddressError(f"{flag} {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def health_app(registry: CollectorRegistry, readiness: Callable[[], Readiness]) -> Any:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ready = readiness()
            if ready.serving:
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"not serving: {ready.reason}\n".encode()]
        return metrics(environ, start_response)

    return app


def serve_http(address: str, registry: CollectorRegistry,
               readiness: Callable[[], Readiness]) -> tuple[Any, str]:
    """Start serving; returns (server, bound HOST:PORT). Raises MetricsAddressError."""
    host, port = split_host_port(address)
    try:
        httpd = make_server(host, port, health_app(registry, readiness),
                            _Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise MetricsAddressError(
            f"cannot serve --metrics on {address}: {exc.strerror or exc}") from None
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd, f"{host}:{httpd.server_port}"
