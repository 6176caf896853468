"""factoryOS node agent: the library factory software imports (DESIGN.md section 5).

    from fos_agent import Agent, ItemReq
"""

from fos_agent.agent import Agent, AgentSettings, Inputs
from fos_agent.detector import DetectorSettings
from fos_agent.inputs import FetchSettings
from fos_agent.records import Batch
from fos_agent.wal import WalError
from fos_raft.model import ItemReq, NodeSpec

__all__ = [
    "Agent", "AgentSettings", "Batch", "DetectorSettings", "FetchSettings", "Inputs",
    "ItemReq", "NodeSpec", "WalError",
]
