"""A simulated agent's durable store on the real LMDB WAL (fos_agent.storage.wal), for
simulations that want the real storage under the protocol: every step's writes are one
synced ``Wal.commit`` (re-checked by the WAL's own transition rules), a restart reopens
the WAL (a new incarnation) and recovers from what it loads. Pass
``WalStores(root)`` as the simulated factory's ``store`` (public via fos_agent.testing)
and ``close()`` it when done."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fos_agent.protocol.records import Batch, DurableState, InboundRecord, OutboundRecord, Write
from fos_agent.protocol.transitions import apply_writes
from fos_agent.storage.wal import Wal, wal_path


class WalStore:
    def __init__(self, data_dir: Path, node_id: str) -> None:
        self.node_id = node_id
        self.path = wal_path(data_dir)
        self.wal = Wal.open(self.path, node_id)
        self.durable = self.wal.load()
        # nothing is compacted in a simulation: no record leaves the live state
        self.settled_out: dict[str, OutboundRecord] = {}
        self.settled_in: dict[str, InboundRecord] = {}

    def apply(self, writes: Sequence[Write]) -> None:
        self.wal.commit(writes)
        apply_writes(self.durable, writes)  # the WAL's records, kept in memory for reads

    def full(self) -> DurableState:
        return self.wal.load()

    def restart(self) -> DurableState:
        """The process died and starts again: reopen the WAL (a new incarnation)."""
        self.wal.close()
        self.wal = Wal.open(self.path, self.node_id)
        self.durable = self.wal.load()
        return self.durable.copy()

    def settled_inbound(self, batch_id: str) -> str | None:
        return self.wal.settled.settled_inbound(batch_id)

    def settled_request(self, consumer: str, request_id: str) -> Batch | None:
        return self.wal.settled.settled_request(consumer, request_id)

    def close(self) -> None:
        self.wal.close()


class WalStores:
    """Makes one WalStore per node under ``root`` (the factory's ``store``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.opened: list[WalStore] = []

    def __call__(self, node_id: str) -> WalStore:
        store = WalStore(self.root / node_id, node_id)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        self.opened.clear()
