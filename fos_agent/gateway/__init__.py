"""Edge gateway: a stage whose cycles a machine carries out behind an OPC UA server.

The pure parts (``config``: the TOML mapping and its validation; ``cycle``: what to do on
done, reject, timeout and reconnect) import nothing of asyncua, so they load fast and are
tested without a server.
"""
from fos_agent.gateway.config import ConfigError, GatewayConfig, MachineMapping, load_config
from fos_agent.gateway.cycle import Action, CycleMachine, Event, Phase

__all__ = ["Action", "ConfigError", "CycleMachine", "Event", "GatewayConfig", "MachineMapping",
           "Phase", "load_config"]
