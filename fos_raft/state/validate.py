"""Validation of coordinator commands: the stateless checks any replica may run before
submitting (`validate_static`) and the checks against a state (`validate`), which `apply`
runs on the committed order. Pure; raises ModelError.

Every address the state holds (node specs, rejoin addresses, replica addresses) passes the
one grammar of `fos_raft.model.check_address`: all of them are dialled by someone, and all
of them end up on an operator's screen."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fos_raft.model import (
    ErrorCode,
    ModelError,
    NodeSpec,
    check_address,
    check_catalog_with,
    check_id,
)
from fos_raft.state.commands import (
    AnnounceReplica,
    Command,
    Decommission,
    Drain,
    ForgetReplica,
    MarkDown,
    MarkUp,
    NoteRefuted,
    Register,
    SeedState,
    Undrain,
    UpdateSpec,
)
from fos_raft.state.entry import NodeEntry, StateView

MAX_REASON_LEN = 512


def _entry(state: StateView, node_id: str) -> NodeEntry:
    if not isinstance(node_id, str):
        raise ModelError(ErrorCode.INVALID_ARGUMENT, "node id must be a string")
    check_id("node id", node_id)
    entry = state.nodes.get(node_id)
    if entry is None:
        raise ModelError(ErrorCode.NOT_FOUND, f"node {node_id!r} is not registered")
    return entry


def _check_spec_type(spec: Any) -> NodeSpec:
    if not isinstance(spec, NodeSpec):
        raise ModelError(ErrorCode.INVALID_ARGUMENT, "spec must be a NodeSpec")
    return spec


def validate_static(command: Command) -> None:
    """The checks that need no state (ids, specs, addresses, lengths). Any replica can run
    them before submitting; a lagging follower must not judge existence or versions."""
    if isinstance(command, Register | UpdateSpec):
        _check_spec_type(command.spec).validate()
    elif isinstance(command, MarkDown | MarkUp | Drain | Undrain | Decommission):
        if not isinstance(command.node_id, str):
            raise ModelError(ErrorCode.INVALID_ARGUMENT, "node id must be a string")
        check_id("node id", command.node_id)
        if isinstance(command, MarkDown) and (
            not isinstance(command.reason, str) or len(command.reason) > MAX_REASON_LEN
        ):
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT, f"reason must be a string of <= {MAX_REASON_LEN}"
            )
        if isinstance(command, MarkUp) and command.address:
            check_address("address", command.address)
    elif isinstance(command, SeedState):
        if not isinstance(command.snapshot, str):
            raise ModelError(ErrorCode.INVALID_ARGUMENT, "snapshot must be text")
    elif isinstance(command, NoteRefuted):
        check_id("node id", command.suspect)
    elif isinstance(command, AnnounceReplica):
        check_address("raft address", command.raft_address)
        check_address("gRPC address", command.grpc_address)
    elif isinstance(command, ForgetReplica):
        check_address("raft address", command.raft_address)
    else:
        raise ModelError(ErrorCode.INVALID_ARGUMENT, f"unknown command {type(command).__name__}")


def validate(state: StateView, command: Command) -> None:
    """Raise ModelError if ``command`` would be refused against ``state``; never mutates.

    `apply` runs it on the committed order (authoritative); the leader also runs it before
    submitting (fast error: its state is the newest), followers only `validate_static`.
    """
    validate_static(command)
    if isinstance(command, Register):
        spec = _check_spec_type(command.spec)
        check_catalog_with(state.catalog, spec)
        existing = state.nodes.get(spec.node_id)
        if existing is not None and existing.spec != spec:
            raise ModelError(
                ErrorCode.ALREADY_EXISTS,
                f"node {spec.node_id!r} is already registered with a different spec "
                "(use UpdateSpec to change it, or decommission it first)",
            )
    elif isinstance(command, UpdateSpec):
        spec = _check_spec_type(command.spec)
        spec.validate()
        entry = _entry(state, spec.node_id)
        expected = command.expected_version
        if expected is not None and expected != entry.spec_version:
            raise ModelError(
                ErrorCode.FAILED_PRECONDITION,
                f"node {spec.node_id!r} spec_version is {entry.spec_version}, "
                f"expected {expected}: the spec changed meanwhile; re-read and retry",
            )
        check_catalog_with(state.catalog, spec)
    elif isinstance(command, MarkDown):
        _entry(state, command.node_id)
        if not isinstance(command.reason, str) or len(command.reason) > MAX_REASON_LEN:
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT, f"reason must be a string of <= {MAX_REASON_LEN}"
            )
    elif isinstance(command, MarkUp):
        entry = _entry(state, command.node_id)
        if command.address:
            replace(entry.spec, address=command.address).validate()
    elif isinstance(command, Drain | Undrain | Decommission):
        _entry(state, command.node_id)
    elif isinstance(command, AnnounceReplica):
        check_address("raft address", command.raft_address)
        check_address("gRPC address", command.grpc_address)
    elif isinstance(command, ForgetReplica):
        check_address("raft address", command.raft_address)
    elif isinstance(command, NoteRefuted):
        _entry(state, command.suspect)
    elif isinstance(command, SeedState):  # the checksum is checked by apply
        validate_static(command)
        if state.nodes:
            raise ModelError(ErrorCode.FAILED_PRECONDITION, "the cluster already has nodes; "
                             "a snapshot only seeds a new cluster")
    else:
        raise ModelError(ErrorCode.INVALID_ARGUMENT, f"unknown command {type(command).__name__}")
