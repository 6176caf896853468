"""A chain of real WALs driven by the real protocol, in one process, with no network:
``n0 -> n1 -> ... -> n{depth-1}``, each node making one item from the previous node's.

For tests and benchmarks of what the WAL keeps (genealogy index, compaction, recovery):
every step is a real synced LMDB transaction; only the messages travel by function call.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import FlowChanged, Message, NewRequest, Produce
from fos_agent.storage.wal import Wal, wal_path
from fos_raft.model import ItemReq


class WalChain:
    def __init__(self, root: Path, depth: int) -> None:
        self.root = Path(root)
        self.ids = [f"n{k}" for k in range(depth)]
        self.wals: dict[str, Wal] = {}
        self.nodes: dict[str, Node] = {}
        for k, node_id in enumerate(self.ids):
            requires = (ItemReq(f"i{k - 1}", 1),) if k else ()
            config = NodeConfig(node_id, ItemReq(f"i{k}", 1), requires, immediate_arrival=True)
            wal = Wal.open(wal_path(self.data_dir(node_id)), node_id)
            node, _ = Node.recover(config, wal.load(), wal.settled)
            consumers = {self.ids[k + 1]} if k + 1 < depth else set()
            node.handle(FlowChanged(1, frozenset(consumers)))
            self.wals[node_id], self.nodes[node_id] = wal, node

    def data_dir(self, node_id: str) -> Path:
        return self.root / "agents" / node_id

    def _handle(self, node_id: str, event: object) -> list[Message]:
        effects = self.nodes[node_id].handle(event)  # type: ignore[arg-type]
        self.wals[node_id].commit(effects.writes)
        out = list(effects.messages)
        if effects.reply is not None:
            out.append(effects.reply)
        return out

    def _deliver(self, messages: list[Message]) -> None:
        queue = deque(messages)
        while queue:
            msg = queue.popleft()
            queue.extend(self._handle(msg.to, msg))

    def final_product(self) -> str:
        """Push one batch through every stage; returns the id of the last stage's output."""
        self._handle(self.ids[0], Produce(()))
        for supplier, consumer in zip(self.ids, self.ids[1:], strict=False):
            item = self.nodes[supplier].config.produces.item
            self._deliver(self._handle(consumer, NewRequest(supplier, item, flow_version=1)))
            inputs = self.nodes[consumer].hold_inputs()
            assert inputs is not None, f"{consumer} got no input from {supplier}"
            self._handle(consumer, Produce(inputs))
        last = self.nodes[self.ids[-1]]
        return max(last.outbound_records(), key=lambda r: r.batch.seq).batch_id

    def final_products_fast(self, count: int, chunk: int = 500) -> None:
        """Push ``count`` batches through every stage, committing each node's groups in
        transactions of up to ``chunk`` groups (what group commit does under load): for
        building long histories quickly. Nothing crashes here, so deferring the commits
        leaves the same durable state as committing each step."""
        pending: dict[str, list[tuple]] = {n: [] for n in self.ids}

        def handle(node_id: str, event: object) -> list[Message]:
            effects = self.nodes[node_id].handle(event)  # type: ignore[arg-type]
            if effects.writes:
                pending[node_id].append(effects.writes)
            out = list(effects.messages)
            if effects.reply is not None:
                out.append(effects.reply)
            return out

        def flush() -> None:
            for node_id, groups in pending.items():
                if groups:
                    errors = self.wals[node_id].commit_groups(groups)
                    assert not any(errors), errors
                    groups.clear()

        for done in range(1, count + 1):
            handle(self.ids[0], Produce(()))
            for supplier, consumer in zip(self.ids, self.ids[1:], strict=False):
                item = self.nodes[supplier].config.produces.item
                queue = deque(handle(consumer, NewRequest(supplier, item, flow_version=1)))
                while queue:
                    msg = queue.popleft()
                    queue.extend(handle(msg.to, msg))
                inputs = self.nodes[consumer].hold_inputs()
                assert inputs is not None
                handle(consumer, Produce(inputs))
            if done % chunk == 0:
                flush()
        flush()

    def compact(self) -> None:
        for node_id, wal in self.wals.items():
            out_ids, in_ids = wal.compact(self.nodes[node_id].settled_ids())
            self.nodes[node_id].forget(out_ids, in_ids)

    def close(self) -> None:
        for wal in self.wals.values():
            wal.close()
