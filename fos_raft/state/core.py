"""The coordinator's replicated state: catalog, liveness, drain flags, flow, version, history.

Pure: no pysyncobj, no gRPC, no clock, no randomness. ``apply(state, request_id, command)``
returns a *new* state and an `Outcome`; the old state object is never mutated, so a reader on
another thread always sees one consistent version (the replica swaps a single reference).

Every replica applies the same commands in the same order and so computes byte-identical
state; `CoordinatorState.digest` hashes a canonical serialisation of all of it.

Flow version: a counter of accepted commands that changed the catalog, liveness or flags
(not the Raft log index: pysyncobj does not hand the index to apply, and a dense counter
makes every version name exactly one change). Idempotent repeats and refused commands leave
it unchanged. Internal bookkeeping commands (replica addresses, refuted suspicions) do not
bump it either: they change no flow.

Request ids make retries safe: the outcome of each of the last `REQUEST_MEMORY` accepted
request ids is remembered, and a command carrying a known id returns that outcome without
running again (a client retrying after a leader change whose first attempt did commit gets
its answer). Refusals are not remembered: they changed nothing, so a retry is judged anew.
The memory is a `RequestMemory` (``fos_raft.state.requests``): versions share one log, so
remembering an id costs O(1) instead of a copy of the whole memory.

Command checks are in ``fos_raft.state.validate`` and the canonical data behind the digest
in ``fos_raft.state.digest``; their public names are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from fos_raft.model import NOT_STARTED, Edge, ErrorCode, ModelError, NodeSpec, NodeStatus, Plan
from fos_raft.planner.plan import plan
from fos_raft.state.commands import (
    AnnounceReplica,
    Command,
    Decommission,
    Drain,
    ForgetReplica,
    MarkDown,
    MarkUp,
    NoteRefuted,
    Outcome,
    Register,
    SeedState,
    Undrain,
    UpdateSpec,
)
from fos_raft.state.digest import outcome_data, plan_data, spec_data, status_data
from fos_raft.state.entry import NodeEntry
from fos_raft.state.requests import RequestMemory
from fos_raft.state.snapshot_codec import checksum_error
from fos_raft.state.snapshot_codec import parse as parse_snapshot
from fos_raft.state.validate import MAX_REASON_LEN, validate, validate_static

__all__ = [
    "HISTORY_LIMIT", "MAX_REASON_LEN", "MAX_REQUEST_ID_LEN", "REQUEST_MEMORY",
    "CoordinatorState", "NodeEntry", "PlanFn", "RequestMemory", "apply", "full_plan", "validate",
    "validate_static",
]

HISTORY_LIMIT = 100
REQUEST_MEMORY = 1024
MAX_REQUEST_ID_LEN = 64


# ------------------------------------------------------------------------------------ state


PlanFn = Callable[[Mapping[str, NodeSpec], Mapping[str, NodeStatus], Plan, str], Plan]


def full_plan(
    catalog: Mapping[str, NodeSpec],
    status: Mapping[str, NodeStatus],
    previous: Plan,
    changed: str = "",
) -> Plan:
    """The default `PlanFn`: a full plan (``changed``, the node the command touched, is a hint
    that incremental planners such as `planner.Planner.after_change` use)."""
    return plan(catalog, status, previous)


class CoordinatorState:
    """One immutable version of the replicated state (treat every field as read-only)."""

    __slots__ = (
        "_cache",
        "confirmed",
        "flow",
        "history",
        "nodes",
        "refuted",
        "replicas",
        "requests",
        "version",
    )

    def __init__(
        self,
        version: int = 0,
        nodes: dict[str, NodeEntry] | None = None,
        flow: Plan | None = None,
        history: tuple[tuple[int, Plan], ...] | None = None,
        replicas: dict[str, str] | None = None,
        refuted: int = 0,
        confirmed: int = 0,
        requests: Mapping[str, Outcome] | None = None,
    ) -> None:
        self.version = version
        self.nodes = nodes if nodes is not None else {}
        self.flow = flow if flow is not None else Plan()
        self.history = history if history is not None else ((version, self.flow),)
        self.replicas = replicas if replicas is not None else {}
        self.refuted = refuted
        self.confirmed = confirmed
        self.requests = (
            requests if isinstance(requests, RequestMemory) else RequestMemory(
                requests.items() if requests is not None else ()
            )
        )
        self._cache: dict[str, Any] = {}

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "_cache"}

    # Pickled by pysyncobj snapshots: the lazily computed caches stay out, so a reloaded
    # state is field-for-field what was saved and recomputes the same digest. The request
    # memory goes as a plain dict (in order): the restricted unpickler of the Raft port and
    # of raft.dump, and replicas of earlier versions, know no other type.
    def __getstate__(self) -> dict[str, Any]:
        fields = self._fields()
        fields["requests"] = dict(self.requests.pairs())
        return fields

    def __setstate__(self, data: dict[str, Any]) -> None:
        for name, value in data.items():
            setattr(self, name, value)
        if not isinstance(self.requests, RequestMemory):
            self.requests = RequestMemory(self.requests.items())
        self._cache = {}

    def _evolve(self, **changes: Any) -> CoordinatorState:
        fields = self._fields()
        fields.update(changes)
        evolved = CoordinatorState(**fields)
        # derived data of fields that did not change stays valid (the digest never does)
        if "nodes" not in changes and "version" not in changes:
            for key in ("catalog", "status", "changed_node"):
                if key in self._cache:
                    evolved._cache[key] = self._cache[key]
        if "flow" not in changes and "edges_by_node" in self._cache:
            evolved._cache["edges_by_node"] = self._cache["edges_by_node"]
        return evolved

    # -------------------------------------------------------------------------- queries

    @property
    def catalog(self) -> dict[str, NodeSpec]:
        cached = self._cache.get("catalog")
        if cached is None:
            cached = {nid: e.spec for nid, e in self.nodes.items()}
            self._cache["catalog"] = cached
        return cached

    @property
    def status(self) -> dict[str, NodeStatus]:
        cached = self._cache.get("status")
        if cached is None:
            cached = {nid: e.status for nid, e in self.nodes.items()}
            self._cache["status"] = cached
        return cached

    def edges_of(self, node_id: str) -> tuple[Edge, ...]:
        """Flow edges where ``node_id`` is supplier or consumer (indexed once per version)."""
        index = self._cache.get("edges_by_node")
        if index is None:
            index = {}
            for edge in self.flow.edges:
                index.setdefault(edge.supplier, []).append(edge)
                if edge.consumer != edge.supplier:
                    index.setdefault(edge.consumer, []).append(edge)
            self._cache["edges_by_node"] = index
        return tuple(index.get(node_id, ()))

    @property
    def changed_node(self) -> str | None:
        """The node whose entry the command that made this version changed (added, replaced
        or removed), when this object was made by `apply`; None when unknown (a state read
        from a snapshot, or seeded). Not replicated: a hint for readers (WatchFlow)."""
        value = self._cache.get("changed_node")
        return value if isinstance(value, str) else None

    def note_edge_delta(self, gone: frozenset[Edge], came: frozenset[Edge]) -> None:
        """Record the edges this version's flow removed and added against the previous
        version's (the planner knows them). Not replicated; read by `edge_delta`."""
        self._cache["edge_delta"] = (gone, came)

    @property
    def edge_delta(self) -> tuple[frozenset[Edge], frozenset[Edge]] | None:
        """(removed, added) edges against the previous version when the planner said so
        (`note_edge_delta`); None when unknown."""
        value = self._cache.get("edge_delta")
        return value if isinstance(value, tuple) else None

    def flow_at(self, version: int) -> Plan | None:
        """The flow as it was at ``version``, if still in the bounded history."""
        for v, flow in reversed(self.history):
            if v == version:
                return flow
            if v < version:
                break
        return None

    @property
    def digest(self) -> str:
        cached = self._cache.get("digest")
        if cached is None:
            blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
            cached = hashlib.sha256(blob.encode()).hexdigest()
            self._cache["digest"] = cached
        return cached

    def canonical(self) -> dict[str, Any]:
        """Everything replicated, as sorted plain data (the digest's input)."""
        return {
            "version": self.version,
            "nodes": [
                [nid, spec_data(e.spec), status_data(e.status), e.spec_version, e.changed_version]
                for nid, e in sorted(self.nodes.items())
            ],
            "flow": plan_data(self.flow),
            "history": [[v, plan_data(p)] for v, p in self.history],
            "replicas": sorted(self.replicas.items()),
            "refuted": self.refuted,
            "confirmed": self.confirmed,
            # Insertion order is part of the state: it decides which id is forgotten next.
            "requests": [[rid, outcome_data(o)] for rid, o in self.requests.pairs()],
        }


# --------------------------------------------------------------------------------- apply


def apply(
    state: CoordinatorState,
    request_id: str,
    command: Command,
    planner: PlanFn | None = None,
) -> tuple[CoordinatorState, Outcome]:
    """Apply one committed command. Never raises for bad input: a refusal is an Outcome with
    ``error`` set and the state unchanged (only the request id is remembered)."""
    if not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID_LEN:
        return state, Outcome(state.version, False, ErrorCode.INVALID_ARGUMENT, "bad request id")
    known = state.requests.lookup(request_id) if request_id else None
    if known is not None:
        return state, known
    try:
        validate(state, command)
        new_state, outcome = _apply_valid(state, command, planner or full_plan)
    except ModelError as exc:
        new_state, outcome = state, Outcome(state.version, False, exc.code, exc.message)
    except Exception as exc:  # a planner bug must not wedge the log: refuse, deterministically
        message = f"internal error applying {type(command).__name__}: {type(exc).__name__}"
        refused = Outcome(state.version, False, ErrorCode.FAILED_PRECONDITION, message)
        new_state, outcome = state, refused
    # Only accepted commands are remembered: a refusal changed nothing, so a retry may
    # simply be judged again (and a refused command leaves the digest untouched).
    if request_id and outcome.error is None:
        requests = new_state.requests.remember(request_id, outcome, REQUEST_MEMORY)
        new_state = new_state._evolve(requests=requests)
    return new_state, outcome


def _seeded(current: CoordinatorState, snapshot: str) -> CoordinatorState:
    """A new cluster takes a snapshot's state: all of it except the replica addresses (this
    cluster's own) and remembered request ids (another cluster's clients)."""
    if current.version != 0 or current.nodes:
        raise ModelError(ErrorCode.FAILED_PRECONDITION,
                         f"the cluster already has state (flow version {current.version}); "
                         "a snapshot only seeds a new cluster")
    fields, digest, _ = parse_snapshot(snapshot.encode())
    restored = CoordinatorState(**fields)
    if restored.digest != digest:
        raise checksum_error(digest, restored.digest)
    return restored._evolve(replicas=dict(current.replicas), requests={})


def _apply_valid(
    state: CoordinatorState, command: Command, planner: PlanFn
) -> tuple[CoordinatorState, Outcome]:
    unchanged = state, Outcome(state.version, False)
    nodes = state.nodes
    version = state.version + 1  # the version this command gets if it changes anything

    if isinstance(command, AnnounceReplica):
        if state.replicas.get(command.raft_address) == command.grpc_address:
            return unchanged
        replicas = dict(state.replicas)
        replicas[command.raft_address] = command.grpc_address
        return state._evolve(replicas=replicas), Outcome(state.version, True)
    if isinstance(command, ForgetReplica):
        if command.raft_address not in state.replicas:
            return unchanged
        replicas = dict(state.replicas)
        del replicas[command.raft_address]
        return state._evolve(replicas=replicas), Outcome(state.version, True)
    if isinstance(command, NoteRefuted):
        return state._evolve(refuted=state.refuted + 1), Outcome(state.version, True)
    if isinstance(command, SeedState):
        seeded = _seeded(state, command.snapshot)
        return seeded, Outcome(seeded.version, True)

    confirmed = state.confirmed
    new_entry: NodeEntry | None
    if isinstance(command, Register):
        node_id = command.spec.node_id
        entry_or_none = nodes.get(node_id)
        if entry_or_none is not None:  # identical spec (validate refused a different one)
            if not command.started or entry_or_none.status.started:
                return unchanged
            # the agent of a catalog node registers: from not-started to alive
            status = replace(entry_or_none.status, alive=True, down_reason="", started=True)
            new_entry = replace(entry_or_none, status=status, changed_version=version)
        else:
            status = NodeStatus() if command.started else NOT_STARTED
            new_entry = NodeEntry(command.spec, status, version, version)
    elif isinstance(command, UpdateSpec):
        node_id = command.spec.node_id
        entry = nodes[node_id]
        if entry.spec == command.spec:
            return unchanged
        new_entry = replace(entry, spec=command.spec, spec_version=version, changed_version=version)
    elif isinstance(command, MarkDown):
        node_id = command.node_id
        entry = nodes[node_id]
        if not entry.status.alive:
            return unchanged
        status = replace(entry.status, alive=False, down_reason=command.reason)
        new_entry = replace(entry, status=status, changed_version=version)
        confirmed += 1 if command.suspicion else 0
    elif isinstance(command, MarkUp):
        node_id = command.node_id
        entry = nodes[node_id]
        spec = entry.spec
        if command.address and command.address != spec.address:
            spec = replace(spec, address=command.address)
        if entry.status.alive and entry.status.started and spec == entry.spec:
            return unchanged
        spec_version = version if spec != entry.spec else entry.spec_version
        status = replace(entry.status, alive=True, down_reason="", started=True)
        new_entry = NodeEntry(spec, status, spec_version, version)
    elif isinstance(command, Drain | Undrain):
        node_id = command.node_id
        entry = nodes[node_id]
        drained = isinstance(command, Drain)
        if entry.status.drained == drained:
            return unchanged
        status = replace(entry.status, drained=drained)
        new_entry = replace(entry, status=status, changed_version=version)
    elif isinstance(command, Decommission):
        node_id = command.node_id
        new_entry = None
    else:  # pragma: no cover - validate() refused it already
        raise ModelError(ErrorCode.INVALID_ARGUMENT, f"unknown command {command!r}")

    new_nodes = dict(nodes)
    if new_entry is None:
        del new_nodes[node_id]
    else:
        new_nodes[node_id] = new_entry
    # One entry changed: copy the previous maps (a C-level copy) and patch it, instead of
    # rebuilding both from every node (the same dicts, same order, at 10k nodes in a tenth
    # of the time). Order: a replaced key keeps its place, a new one goes last, as in nodes.
    catalog = dict(state.catalog)
    status_map = dict(state.status)
    if new_entry is None:
        del catalog[node_id]
        del status_map[node_id]
    else:
        catalog[node_id] = new_entry.spec
        status_map[node_id] = new_entry.status
    flow = planner(catalog, status_map, state.flow, node_id)
    history = (*state.history, (version, flow))[-HISTORY_LIMIT:]
    new_state = state._evolve(
        version=version, nodes=new_nodes, flow=flow, history=history, confirmed=confirmed
    )
    new_state._cache["catalog"] = catalog
    new_state._cache["status"] = status_map
    new_state._cache["changed_node"] = node_id
    return new_state, Outcome(version, True)
