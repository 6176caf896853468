"""Where ``fosctl trace`` reads each node's index: its agent over the ``Lineage`` RPC
(online) or its data dir (offline, ``--data-dirs``), and the protobuf form of the answers
(shared with the agent's RPC handler, fos_agent.net.service)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import grpc

from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.lineage.index import AttrPairs, MadeEntry
from fos_raft.lineage.reader import (
    BatchView,
    IndexReader,
    LineageIndexError,
    agent_dirs,
    open_offline,
)
from fos_raft.lineage.trace import NodeAnswer, Unreachable
from fos_raft.security.tls import TlsConfig, aio_channel


def views_to_pb(node_id: str, views: dict[str, BatchView]) -> agent_pb2.LineageReply:
    reply = agent_pb2.LineageReply(node_id=node_id)
    for view in views.values():
        if (m := view.made) is not None:
            reply.made.append(agent_pb2.MadeBatch(
                batch_id=m.batch_id, item=m.item, qty=m.qty, seq=m.seq,
                made_at_ms=m.made_at_ms, delivered_to=m.delivered_to, state=m.state,
                reclaimed_from=m.reclaimed_from, sent_to=m.to,
                inputs=[agent_pb2.LineageInput(batch_id=i, supplier=s) for i, s in m.inputs]))
            for key, value in m.attrs:
                slot = reply.made[-1].attrs[key]
                if isinstance(value, str):
                    slot.text = value
                elif isinstance(value, int):
                    slot.integer = value
                else:
                    slot.number = value
        if (u := view.used) is not None:
            reply.used.append(agent_pb2.UsedBatch(
                batch_id=u.batch_id, supplier=u.supplier, item=u.item, qty=u.qty,
                into=u.into, used_at_ms=u.at_ms, scrapped=u.scrapped))
    return reply


def _attrs_from_pb(field: Any) -> AttrPairs:
    pairs = []
    for key, value in field.items():
        kind = value.WhichOneof("value")
        pairs.append((key, getattr(value, kind) if kind else ""))
    return tuple(sorted(pairs))


def pb_to_answers(reply: agent_pb2.LineageReply) -> dict[str, NodeAnswer]:
    made = {m.batch_id: MadeEntry(m.batch_id, reply.node_id, m.item, m.qty, m.seq,
                                  m.made_at_ms, tuple((i.batch_id, i.supplier)
                                                      for i in m.inputs),
                                  m.delivered_to, "", m.state, m.reclaimed_from, m.sent_to,
                                  _attrs_from_pb(m.attrs))
            for m in reply.made}
    used = {u.batch_id: u for u in reply.used}
    return {bid: NodeAnswer(made.get(bid), used[bid].into if bid in used else None,
                            used[bid].scrapped if bid in used else "")
            for bid in set(made) | set(used)}


def views_to_answers(views: dict[str, BatchView]) -> dict[str, NodeAnswer]:
    return {bid: NodeAnswer(v.made, v.used.into if v.used else None,
                            v.used.scrapped if v.used else "")
            for bid, v in views.items()}



class IndexSources:
    """Each node's index: offline readers (``--data-dirs``) first, else its agent online at
    the address the coordinator gave. Close with ``aclose``."""

    def __init__(self, addresses: dict[str, str], data_dirs: Iterable[str | os.PathLike[str]]
                 = (), *, tls: TlsConfig | None = None, timeout: float = 5.0,
                 no_address_reason: str = "not in the coordinator's catalog") -> None:
        self.addresses = dict(addresses)
        self.tls = tls
        self.timeout = timeout
        self.no_address_reason = no_address_reason
        self.offline: dict[str, IndexReader] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        for path in data_dirs:
            for data_dir in agent_dirs(path):
                reader = open_offline(data_dir)
                self.offline.setdefault(reader.node_id, reader)

    async def fetch(self, node: str, batch_ids: list[str]) -> dict[str, NodeAnswer]:
        reader = self.offline.get(node)
        if reader is not None:
            try:
                return views_to_answers(reader.lookup(batch_ids))
            except LineageIndexError as exc:  # a damaged record: reported, not raised
                raise Unreachable(str(exc)) from None
        address = self.addresses.get(node)
        if not address:
            raise Unreachable(self.no_address_reason)
        channel = self._channels.get(node)
        if channel is None:
            channel = self._channels[node] = aio_channel(address, self.tls, server_name=node)
        stub = agent_pb2_grpc.AgentStub(channel)
        try:
            reply = await stub.Lineage(agent_pb2.LineageRequest(batch_ids=batch_ids),
                                       timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise Unreachable(f"{address}: {e.code().name}: {e.details()}") from e
        return pb_to_answers(reply)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()),
                             return_exceptions=True)
        for reader in self.offline.values():
            reader.env.close()


__all__ = ["IndexSources", "LineageIndexError", "pb_to_answers", "views_to_pb"]
