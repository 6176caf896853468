"""Fail-stop on pysyncobj errors that leave a replica's state unknown.

pysyncobj catches and only logs two kinds of failure inside its tick thread:

- ``failed to load full dump``: installing a snapshot raised part-way. Consumers' state may
  already be the snapshot's while the applied index is still the newer one, so the entries
  in between are never applied again: this replica silently diverges.
- ``failed _onTick``: an exception escaped a tick, possibly between applying a command and
  counting it applied, so the next tick may apply it twice.

Raft tolerates a crashed replica, not a wrong one. So when either record is logged this
process ends at once (exit status 70, EX_SOFTWARE) after saying why on stderr; restarted
from its data dir it reloads its last snapshot and journal, and the leader brings it up to
date. The handler sits on pysyncobj's logger, so it sees the record on the thread that
failed, before anything else runs there.
"""

from __future__ import annotations

import logging
import os
import sys

EXIT_STATUS = 70
FATAL_MESSAGES = ("failed to load full dump", "failed _onTick")
PYSYNCOBJ_LOGGER = "pysyncobj.syncobj"


class FailStopHandler(logging.Handler):
    """Ends the process on a pysyncobj record that means 'state unknown'."""

    def __init__(self, exit_status: int = EXIT_STATUS) -> None:
        super().__init__(level=logging.ERROR)
        self.exit_status = exit_status

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(FATAL_MESSAGES):
            return
        try:
            # Exiting here stops the record before the normal handlers: print its traceback.
            trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
            sys.stderr.write(
                f"fos-coordinator: fatal: pysyncobj reported '{message}': this replica's state "
                "is unknown, exiting so that a restart rebuilds it from its data dir\n"
                + (trace + "\n" if trace else "")
            )
            sys.stderr.flush()
        finally:
            os._exit(self.exit_status)  # no cleanup: nothing more may be applied or sent


def install() -> FailStopHandler:
    """Attach the handler to pysyncobj's logger once per process; returns it."""
    logger = logging.getLogger(PYSYNCOBJ_LOGGER)
    for handler in logger.handlers:
        if isinstance(handler, FailStopHandler):
            return handler
    handler = FailStopHandler()
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.ERROR:  # a quieter --log-level must not hide them
        logger.setLevel(logging.ERROR)
    return handler
