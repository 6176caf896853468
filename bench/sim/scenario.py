"""Scenario files for fos-sim (TOML): run settings, an optional catalog, timed events.

```toml
title = "window factory"
[sim]                       # any fos-sim option; the command line wins over these
duration = 60
cycle_s = 1.0
catalog = "window-factory.toml"   # or [[node]] tables here, or types/per_type to generate

[[event]]
at = "25%"                  # seconds (12.5) or a share of the duration ("25%")
action = "kill"             # kill restart drain undrain update-spec add-node
node = "frame-1"            # kill-leader restart-replica
```
See docs/experiments.md for every key. Parsing is pure; errors name the file and the event.
``[[node]]`` tables and the node specs of events are read by the catalog reader of
``fosctl apply`` (fos_raft.cli.catalog_file), so their errors are the same ``FILE:LINE:
message`` as there.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sim.events import NODE_ACTIONS, Action, ScenarioError, SimEvent
from fos_raft.cli import catalog_file
from fos_raft.model import NodeSpec

# [sim] keys -> (type, check); names follow the command-line options with '-' as '_'.
SIM_KEYS: dict[str, type] = {
    "types": int,
    "per_type": int,
    "duration": float,
    "cycle_s": float,
    "failure_rate": float,
    "recover_rate": float,
    "coordinator_kill_every": float,
    "replicas": int,
    "seed": int,
    "allow_unviable": bool,
    "agents_per_process": int,
    "catalog": str,
}
EVENT_KEYS = {"at", "action", "node", "replica", "produces", "requires", "capacity", "address"}
PLACEHOLDER_ADDRESS = "127.0.0.1:1"  # fos-sim gives every node a free loopback port


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """An event as written: its time may be a share of the duration and an update-spec lists
    only the fields it changes; both are resolved once the duration and catalog are known."""

    at: float
    at_is_share: bool
    action: Action
    node: str = ""
    replica: int | None = None
    fields: Mapping[str, Any] | None = None  # spec keys for update-spec / add-node
    where: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    path: Path
    title: str
    settings: Mapping[str, Any]  # validated [sim] values (catalog excluded)
    nodes: tuple[NodeSpec, ...] | None  # the catalog, or None to generate one
    events: tuple[EventTemplate, ...]

    def resolve_events(self, duration_s: float, specs: Iterable[NodeSpec]) -> list[SimEvent]:
        """Concrete events in time order for a run of ``duration_s`` over catalog ``specs``."""
        timed = sorted(self.events, key=lambda t: t.at * duration_s if t.at_is_share else t.at)
        current = {s.node_id: s for s in specs}
        events = []
        for t in timed:
            at = t.at * duration_s if t.at_is_share else t.at
            spec = None
            if t.action is Action.ADD_NODE:
                spec = node_from_table({"id": t.node, **(t.fields or {})}, t.where)
            elif t.action is Action.UPDATE_SPEC:
                base = current.get(t.node)
                if base is None:
                    raise ScenarioError(f"{t.where}: update-spec of unknown node {t.node!r}")
                spec = node_from_table({**spec_table(base), **(t.fields or {})}, t.where)
            if spec is not None:
                current[spec.node_id] = spec
            events.append(SimEvent(at, t.action, t.node, spec, t.replica))
        return events


def spec_table(spec: NodeSpec) -> dict[str, Any]:
    """A NodeSpec as a ``[[node]]`` table (the inverse of `node_from_table`)."""
    return {
        "id": spec.node_id,
        "address": spec.address,
        "produces": {"item": spec.produces.item, "qty": spec.produces.qty},
        "requires": [{"item": r.item, "qty": r.qty} for r in spec.requires],
        "capacity": spec.capacity,
    }


def node_from_table(table: Mapping[str, Any], where: str) -> NodeSpec:
    """The node spec of an add-node / update-spec event, read like a ``[[node]]`` table of a
    catalog file (address optional: fos-sim assigns ports)."""
    try:
        return catalog_file.spec_from_table(table, where, default_address=PLACEHOLDER_ADDRESS)
    except catalog_file.CatalogFileError as e:
        raise ScenarioError(str(e)) from None


def load_catalog(path: Path) -> tuple[NodeSpec, ...]:
    """Read a catalog file (the format of ``fosctl apply``, fully validated by fos_raft)."""
    try:
        return tuple(catalog_file.load_catalog(path))
    except catalog_file.CatalogFileError as e:
        raise ScenarioError(str(e)) from None


def _nodes(tables: Any, text: str, path: Path) -> tuple[NodeSpec, ...]:
    """The scenario's inline ``[[node]]`` tables, read by the catalog reader."""
    try:
        return tuple(catalog_file.specs_from_tables(tables, text, str(path),
                                                    default_address=PLACEHOLDER_ADDRESS))
    except catalog_file.CatalogFileError as e:
        raise ScenarioError(str(e)) from None


def _at(value: Any, where: str) -> tuple[float, bool]:
    if isinstance(value, str) and value.endswith("%"):
        try:
            share = float(value[:-1]) / 100.0
        except ValueError:
            share = -1.0
        if not 0.0 <= share <= 1.0:
            raise ScenarioError(f"{where}: at = {value!r} must be a share 0%..100%")
        return share, True
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError(f'{where}: at must be seconds >= 0 or a share like "25%"')
    return float(value), False


def _event(table: Any, where: str) -> EventTemplate:
    if not isinstance(table, Mapping):
        raise ScenarioError(f"{where}: expected a table")
    unknown = set(table) - EVENT_KEYS
    if unknown:
        allowed = sorted(EVENT_KEYS)
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}; allowed {allowed}")
    if "at" not in table or "action" not in table:
        raise ScenarioError(f"{where}: needs 'at' and 'action'")
    at, share = _at(table["at"], where)
    try:
        action = Action(table["action"])
    except ValueError:
        names = ", ".join(a.value for a in Action)
        bad = table["action"]
        raise ScenarioError(f"{where}: unknown action {bad!r}; one of {names}") from None
    node = table.get("node", "")
    if action in NODE_ACTIONS and (not isinstance(node, str) or not node):
        raise ScenarioError(f'{where}: {action.value} needs node = "<id>"')
    if action not in NODE_ACTIONS and node:
        raise ScenarioError(f"{where}: {action.value} takes no node")
    spec_keys = {"produces", "requires", "capacity", "address"} & set(table)
    if spec_keys and action not in (Action.UPDATE_SPEC, Action.ADD_NODE):
        raise ScenarioError(f"{where}: {sorted(spec_keys)} only go with update-spec / add-node")
    replica = table.get("replica")
    if replica is not None and (
        action is not Action.RESTART_REPLICA
        or isinstance(replica, bool)
        or not isinstance(replica, int)
        or replica < 0
    ):
        raise ScenarioError(f"{where}: replica = <index >= 0> only goes with restart-replica")
    fields = {k: table[k] for k in spec_keys}
    if action is Action.ADD_NODE:
        if "produces" not in table:
            raise ScenarioError(f"{where}: add-node needs produces = {{ item, qty }}")
        node_from_table({"id": node, **fields}, where)  # fail early on a bad spec
    elif action is Action.UPDATE_SPEC and not spec_keys - {"address"}:
        raise ScenarioError(f"{where}: update-spec needs produces, requires or capacity")
    elif action is Action.UPDATE_SPEC:
        node_from_table({"id": node, "produces": {"item": "x", "qty": 1}, **fields}, where)
    return EventTemplate(at, share, action, node, replica, fields or None, where)


def parse_scenario(text: str, path: Path) -> Scenario:
    """Parse scenario TOML ``text`` (``path`` locates relative catalog files and errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    unknown = set(data) - {"title", "sim", "node", "event"}
    if unknown:
        raise ScenarioError(f"{path}: unknown top-level keys {sorted(unknown)}")
    sim = data.get("sim", {})
    if not isinstance(sim, Mapping):
        raise ScenarioError(f"{path}: [sim] must be a table")
    settings: dict[str, Any] = {}
    for key, value in sim.items():
        kind = SIM_KEYS.get(key)
        if kind is None:
            raise ScenarioError(f"{path} [sim]: unknown key {key!r}; allowed {sorted(SIM_KEYS)}")
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ScenarioError(f"{path} [sim]: {key} must be {kind.__name__}, got {value!r}")
        settings[key] = value
    nodes: tuple[NodeSpec, ...] | None = None
    catalog = settings.pop("catalog", None)
    if catalog is not None and "node" in data:
        raise ScenarioError(f"{path}: give either [sim] catalog or [[node]] tables, not both")
    if catalog is not None:
        nodes = load_catalog(path.parent / catalog)
    elif "node" in data:
        nodes = _nodes(data["node"], text, path)
    if nodes is not None and ({"types", "per_type"} & set(settings)):
        raise ScenarioError(f"{path}: types/per_type generate a catalog; this one has nodes")
    raw_events = data.get("event", [])
    if not isinstance(raw_events, list):
        raise ScenarioError(f"{path}: events are [[event]] tables")
    events = tuple(_event(t, f"{path} event[{i}]") for i, t in enumerate(raw_events))
    title = data.get("title", path.stem)
    return Scenario(path, str(title), settings, nodes, events)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"scenario {path}: {e.strerror or e}") from None
    return parse_scenario(text, path)
