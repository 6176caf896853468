"""factoryOS node agent: the library factory software imports (docs/agent.md).

    from fos_agent import Agent, ItemReq
The names below are imported lazily (PEP 562), so importing a pure module such as
``fos_agent.protocol.machine`` or ``fos_agent.testing`` does not pull in gRPC, LMDB or Prometheus.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Agent": "fos_agent.agent",
    "AgentSettings": "fos_agent.runtime.settings",
    "Inputs": "fos_agent.agent",
    "DetectorSettings": "fos_agent.runtime.detector",
    "FetchSettings": "fos_agent.runtime.inputs",
    "Batch": "fos_agent.protocol.records",
    "WalError": "fos_agent.storage.wal",
    "ItemReq": "fos_raft.model",
    "NodeSpec": "fos_raft.model",
}

__all__ = [
    "Agent", "AgentSettings", "Batch", "DetectorSettings", "FetchSettings", "Inputs",
    "ItemReq", "NodeSpec", "WalError",
]

if TYPE_CHECKING:
    from fos_agent.agent import Agent, Inputs
    from fos_agent.protocol.records import Batch
    from fos_agent.runtime.detector import DetectorSettings
    from fos_agent.runtime.inputs import FetchSettings
    from fos_agent.runtime.settings import AgentSettings
    from fos_agent.storage.wal import WalError
    from fos_raft.model import ItemReq, NodeSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fos_agent' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
