"""Logging for factoryOS: the libraries log through stdlib `logging`; the CLIs configure it.

Library code (fos_agent, fos_raft) takes its loggers from `get_logger(name)`: a structlog
bound logger (``log.bind(node=...)``, ``log.info("event", key=value)``) that hands each
event to ``logging.getLogger(name)`` and configures nothing, so a program that imports
fos_agent decides where (and whether) its logs go with ordinary ``logging`` setup; without
any, Python prints only warnings and errors, to stderr.

`configure_logging` is for the CLIs (fos-coordinator, fos-agent, the agent host, fosctl,
fos-sim) and the examples: one stderr handler on the root logger rendering every record,
ours and foreign (pysyncobj, grpc), as JSON lines or as human-readable console lines
(``--log-format json|console``; default: console on a TTY, JSON otherwise).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

from fos_raft.textsafe import escape

LOG_FORMATS = ("json", "console")
_MULTILINE = frozenset({"exception", "stack"})  # tracebacks keep their line breaks


def escape_strings(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: every string value (and key) with control and bidi characters
    spelt out (`fos_raft.textsafe`). Console lines need it: a logged address or reason
    comes from the cluster and must not drive the terminal reading the log. (JSON lines are
    ASCII-only already; other values the console renderer shows by repr, which escapes.)"""
    return {
        escape(key): (escape(value, keep="\n" if key in _MULTILINE else "")
                      if isinstance(value, str) else value)
        for key, value in event_dict.items()
    }


def get_logger(name: str) -> Any:
    """A structlog logger that emits through ``logging.getLogger(name)`` (no global setup)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger)


def add_log_format_argument(parser: Any) -> None:
    """``--log-format json|console`` on an argparse parser (every CLI has it)."""
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="log lines on stderr: json, or console (default: console on "
                             "a terminal, json otherwise)")


def configure_logging(component: str, level: str | None = None, fmt: str | None = None,
                      stream: TextIO | None = None, **bind: Any) -> None:
    """Configure stdlib logging (and structlog, routed through it) for this process; ``bind``
    adds context to every event (node id, replica id, ...). ``level`` defaults to
    $FOS_LOG_LEVEL or INFO; ``fmt`` is "json" or "console" (None: console on a TTY);
    ``stream``: where the lines go (default stderr)."""
    stream = stream or sys.stderr
    level_name = (level or os.environ.get("FOS_LOG_LEVEL") or "INFO").upper()
    numeric = getattr(logging, level_name, logging.INFO)
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    renderer: Any
    escaping: list[Any] = []
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        escaping = [escape_strings]
    elif fmt == "json":
        renderer = structlog.processors.JSONRenderer()  # ensure_ascii: no raw control char
    else:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    structlog.configure(  # apps' own structlog.get_logger() goes the same way as the libs'
        processors=[structlog.stdlib.filter_by_level,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(component=component, **bind)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *escaping,
            renderer,
        ]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
