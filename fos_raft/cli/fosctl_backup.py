"""``fosctl snapshot save FILE`` and ``fosctl snapshot inspect FILE`` (docs/operations.md).

save asks the leader for its applied state (Snapshot RPC); when no replica is leader (the
majority is lost) it takes the most advanced answer of the replicas given and says so. The
file is checked (decoded, checksum recomputed) before it is written, then written
atomically and fsynced: a backup that exists is a whole one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.cli.fosctl_commands import EXIT_UNAVAILABLE, EXIT_USAGE, CommandError, Out
from fos_raft.security.tls import TlsConfig, aio_channel
from fos_raft.state.snapshot import SnapshotError, decode


async def _snapshot(address: str, tls: TlsConfig | None, timeout: float
                    ) -> pb.SnapshotReply | str:
    channel = aio_channel(address, tls)
    try:
        return await pb_grpc.CoordinatorStub(channel).Snapshot(pb.SnapshotRequest(),
                                                               timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return f"{address}: {exc.code().name}: {(exc.details() or '')[:100]}"
    finally:
        await channel.close()


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def cmd_snapshot(addresses: list[str], args: argparse.Namespace,
                       tls: TlsConfig | None, out: Out) -> int:
    replies, errors = [], []
    for address in addresses:
        reply = await _snapshot(address, tls, args.timeout)
        if isinstance(reply, str):
            errors.append(reply)
            continue
        replies.append(reply)
        if reply.from_leader:
            break
    if not replies:
        raise CommandError("no replica answered: " + "; ".join(errors), EXIT_UNAVAILABLE)
    best = max(replies, key=lambda r: (r.from_leader, r.applied_index, r.flow_version))
    try:
        state, _ = decode(best.snapshot)
    except SnapshotError as exc:  # never write a backup that would not restore
        raise CommandError(
            f"replica {best.replica_id} sent a bad snapshot: {exc.message}") from None
    path = Path(args.file)
    try:
        write_atomically(path, best.snapshot)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    source = "leader" if best.from_leader else "NOT a leader: no quorum; newest answer"
    summary = {"file": str(path), "flow_version": state.version, "nodes": len(state.nodes),
               "digest": state.digest, "replica_id": best.replica_id,
               "from_leader": best.from_leader, "applied_index": best.applied_index}
    if out.as_json:
        out.json(summary)
    else:
        out.line(f"saved {path}: flow version {state.version}, {len(state.nodes)} nodes, "
                 f"digest {state.digest[:16]} (from {best.replica_id}, {source})")
    return 0


def inspect(path: Path, out: Out) -> int:
    try:
        state, meta = decode(path.read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except SnapshotError as exc:
        raise CommandError(f"{path}: {exc.message}", EXIT_USAGE) from None
    summary = {"file": str(path), "flow_version": state.version, "nodes": len(state.nodes),
               "alive": sum(1 for e in state.nodes.values() if e.status.alive),
               "edges": len(state.flow.edges), "digest": state.digest, "meta": meta}
    if out.as_json:
        out.json(summary)
    else:
        out.line(f"{path}: valid; flow version {state.version}, {summary['nodes']} nodes "
                 f"({summary['alive']} alive), {summary['edges']} edges, digest "
                 f"{state.digest[:16]}, taken from {meta.get('replica_id', '?')}")
    return 0
