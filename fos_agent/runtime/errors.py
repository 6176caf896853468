"""The errors an agent raises to its caller, beyond those of the parts it is made of.

Every one derives from `fos_raft.model.FosError` (re-exported as ``fos_agent.FosError``),
so ``except FosError`` catches everything factoryOS raises on purpose; docs/agent.md lists
when each happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from fos_raft.api.client import CoordinatorUnavailable
from fos_raft.model import FosError
from fos_raft.runtime import advertise


class NotInCatalog(FosError, LookupError):
    """Started without a spec (``produces=None``) for a node the catalog does not know."""


class AdvertiseError(FosError, advertise.AdvertiseError):
    """The address the agent would register is one its peers cannot dial (a wildcard, or
    loopback while the coordinators are on other hosts); the message says what to set."""


class ListenError(FosError, OSError):
    """The agent cannot serve on its ``listen`` address (port taken, bad host)."""


class StartTimeout(CoordinatorUnavailable):
    """No coordinator answered within ``settings.start_timeout`` at start, and there is no
    saved flow to trade on meanwhile."""

    def __init__(self, timeout: float, coordinators: Sequence[str], last: str) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE,
                         f"no coordinator answered within {timeout:g} s at start "
                         f"(tried {', '.join(coordinators)}; last error: {last})",
                         "start")


class InputsAlreadyEmitted(FosError, ValueError):
    """``emit(inputs)`` for inputs already emitted (or released when their cycle ended)."""
