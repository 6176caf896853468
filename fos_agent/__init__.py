"""factoryOS node agent: the library factory software imports (docs/agent.md).

    from fos_agent import Agent, ItemReq        # asyncio code
    from fos_agent import SyncAgent, ItemReq    # synchronous code

Every error the agent raises on purpose derives from ``FosError`` (docs/agent.md, "Errors").
The names below are imported lazily (PEP 562), so importing a pure module such as
``fos_agent.protocol.machine`` or ``fos_agent.testing`` does not pull in gRPC, LMDB or Prometheus.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Agent": "fos_agent.agent",
    "SyncAgent": "fos_agent.sync",
    "AgentNotRunning": "fos_agent.sync",
    "FosError": "fos_raft.model",
    "ModelError": "fos_raft.model",
    "CoordinatorError": "fos_raft.api.policy",
    "CoordinatorUnavailable": "fos_raft.api.policy",
    "StartTimeout": "fos_agent.runtime.errors",
    "NotInCatalog": "fos_agent.runtime.errors",
    "ListenError": "fos_agent.runtime.errors",
    "AdvertiseError": "fos_agent.runtime.errors",
    "InputsAlreadyEmitted": "fos_agent.runtime.errors",
    "TlsError": "fos_raft.security.tls",
    "TlsConfig": "fos_raft.security.tls",
    "CommitFailed": "fos_agent.storage.wal",
    "AgentSettings": "fos_agent.runtime.settings",
    "Inputs": "fos_agent.agent",
    "DetectorSettings": "fos_agent.rules.suspicion",
    "FetchSettings": "fos_agent.rules.fetch",
    "Batch": "fos_agent.protocol.records",
    "WalError": "fos_agent.storage.wal",
    "ItemReq": "fos_raft.model",
    "NodeSpec": "fos_raft.model",
}

__all__ = [
    "AdvertiseError", "Agent", "AgentNotRunning", "AgentSettings", "Batch", "CommitFailed",
    "CoordinatorError", "CoordinatorUnavailable", "DetectorSettings", "FetchSettings",
    "FosError", "Inputs", "InputsAlreadyEmitted", "ItemReq", "ListenError", "ModelError",
    "NodeSpec", "NotInCatalog",
    "StartTimeout", "SyncAgent", "TlsConfig", "TlsError", "WalError",
]

if TYPE_CHECKING:
    from fos_agent.agent import Agent, Inputs
    from fos_agent.protocol.records import Batch
    from fos_agent.rules.fetch import FetchSettings
    from fos_agent.rules.suspicion import DetectorSettings
    from fos_agent.runtime.errors import (
        AdvertiseError,
        InputsAlreadyEmitted,
        ListenError,
        NotInCatalog,
        StartTimeout,
    )
    from fos_agent.runtime.settings import AgentSettings
    from fos_agent.storage.wal import CommitFailed, WalError
    from fos_agent.sync import AgentNotRunning, SyncAgent
    from fos_raft.api.policy import CoordinatorError, CoordinatorUnavailable
    from fos_raft.model import FosError, ItemReq, ModelError, NodeSpec
    from fos_raft.security.tls import TlsConfig, TlsError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fos_agent' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
