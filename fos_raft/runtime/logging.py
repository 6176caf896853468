"""structlog setup shared by every factoryOS process.

JSON lines to stderr (machine-readable, one event per line), or human-readable colourless
console output when stderr is a TTY. Standard-library logging (pysyncobj, grpc) is routed
through the same renderer so a replica's stderr is one consistent stream.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def configure_logging(component: str, level: str | None = None, **bind: Any) -> None:
    """Configure structlog + stdlib logging for this process; ``bind`` adds context to every
    event (node id, replica id, ...). ``level`` defaults to $FOS_LOG_LEVEL or INFO."""
    level_name = (level or os.environ.get("FOS_LOG_LEVEL") or "INFO").upper()
    numeric = getattr(logging, level_name, logging.INFO)
    renderer: Any
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(component=component, **bind)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
