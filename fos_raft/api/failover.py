"""The failover core of the coordinator client: one gRPC channel per replica, the preferred
replica, the flow-version floor and the retry loop every call goes through.

`CoordinatorClient` (fos_raft.api.client) is this class plus the coordinator's calls; the failover
rules are described there and the pure policy (codes, backoff, leader hints) is in
``fos_raft.api.policy``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any, Self

import grpc
import grpc.aio

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.api.policy import (
    CALL_BACKOFF,
    RETRYABLE,
    STATE_DEPENDENT,
    WATCH_BACKOFF,
    Backoff,
    CoordinatorError,
    CoordinatorUnavailable,
    leader_hint,
    reply_version,
)
from fos_raft.runtime.grpc_runtime import DEFAULT_CHANNEL_OPTIONS, keep_grpc_aio_running
from fos_raft.runtime.logging import get_logger

# Same logger name as before the split: log consumers filter on it.
log = get_logger("fos_raft.api.client")


class FailoverChannels:
    """Channels to the replicas and the failover loop (`_call`); subclassed by
    `CoordinatorClient`, which adds the coordinator's calls."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout: float = 5.0,
        attempt_timeout: float | None = None,
        channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
        credentials: grpc.ChannelCredentials | None = None,
        backoff: Backoff = CALL_BACKOFF,
        watch_backoff: Backoff = WATCH_BACKOFF,
        min_version: int = 0,
        watch_check_interval: float = 10.0,
    ) -> None:
        """``addresses``: gRPC host:port of the replicas (order = preference when none is
        known). ``timeout``: overall deadline of one call, all retries included.
        ``attempt_timeout``: deadline of one attempt (default ``timeout / 2``).
        ``min_version``: a flow version the caller already saw (e.g. restored from disk).
        ``watch_check_interval``: silence after which a watch checks its replica's health."""
        unique = list(dict.fromkeys(a.strip() for a in addresses if a.strip()))
        if not unique:
            raise ValueError("CoordinatorClient needs at least one replica address")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._addresses = unique
        self._timeout = timeout
        self._attempt_timeout = attempt_timeout or timeout / 2
        self._options = list(channel_options)
        self._credentials = credentials
        self._backoff = backoff
        self._watch_backoff = watch_backoff
        self._rng = random.Random()
        self._preferred = unique[0]
        self._floor = min_version
        self._watch_check = watch_check_interval
        self._channels: dict[str, tuple[grpc.aio.Channel, pb_grpc.CoordinatorStub]] = {}
        self._closed = False

    # ------------------------------------------------------------ state

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    @property
    def preferred(self) -> str:
        """The replica the next call goes to first."""
        return self._preferred

    @property
    def flow_version(self) -> int:
        """Highest flow version seen: no read returns anything older."""
        return self._floor

    def observe_version(self, version: int) -> None:
        self._floor = max(self._floor, int(version))

    def _order(self) -> list[str]:
        i = self._addresses.index(self._preferred)
        return self._addresses[i:] + self._addresses[:i]

    def _demote(self, address: str) -> None:
        """Stop preferring a replica that failed: the next one in the list goes first."""
        if self._preferred == address and len(self._addresses) > 1:
            i = self._addresses.index(address)
            self._preferred = self._addresses[(i + 1) % len(self._addresses)]

    def _prefer(self, address: str | None) -> bool:
        if address and address in self._addresses:
            self._preferred = address
            return True
        return False

    def _learn(self, replicas: Sequence[pb.ReplicaStatus], leader_grpc: str = "") -> None:
        """Add replicas' gRPC addresses the cluster reports; prefer its leader."""
        for replica in replicas:
            if replica.grpc_address and replica.grpc_address not in self._addresses:
                self._addresses.append(replica.grpc_address)
        self._prefer(leader_grpc)

    def _stub(self, address: str) -> pb_grpc.CoordinatorStub:
        if self._closed:
            raise RuntimeError("CoordinatorClient is closed")
        entry = self._channels.get(address)
        if entry is None:
            keep_grpc_aio_running()
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, self._options)
            else:
                channel = grpc.aio.insecure_channel(address, self._options)
            entry = (channel, pb_grpc.CoordinatorStub(channel))
            self._channels[address] = entry
        return entry[1]

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------ the retry loop

    async def _call(
        self,
        method: str,
        request: Any,
        *,
        version_of: Callable[[Any], int] | None = None,
        timeout: float | None = None,
        only: str | None = None,
        sync_node: str | None = None,
    ) -> Any:
        """Send ``request`` with failover; ``version_of`` extracts the reply's flow version
        (replies older than the floor are dropped). ``only``: this replica, no failover.
        ``sync_node``: for writes about that node, a refusal that depends on the replica's
        state (NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS) is trusted only once the
        replica has applied everything this client has seen: otherwise the client makes it
        catch up (GetFlow with min_version) and sends the write there once more. A replica
        checks writes against its own applied state, which may lag the client's last write
        made through another replica."""
        loop = asyncio.get_running_loop()
        total = timeout or self._timeout
        deadline = loop.time() + total
        tried: set[str] = set()
        failures: dict[str, str] = {}  # address -> its last failure, for the final error
        last_code = grpc.StatusCode.UNAVAILABLE
        rounds = 0
        synced: set[str] = set()
        retry_here: str | None = None
        while True:
            if retry_here:
                candidates, retry_here = [retry_here], None
            elif only:
                if only in tried:
                    break  # one replica asked for by name: one attempt, no failover
                candidates = [only]
            else:
                candidates = [a for a in self._order() if a not in tried]
            if not candidates:
                pause = self._backoff.delay(rounds, self._rng)
                if loop.time() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
                rounds += 1
                tried.clear()
                continue
            address = candidates[0]
            tried.add(address)
            remaining = deadline - loop.time()
            if remaining <= 0.005:
                break
            try:
                reply = await getattr(self._stub(address), method)(
                    request, timeout=remaining if only else min(remaining, self._attempt_timeout)
                )
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if (
                    code in STATE_DEPENDENT and sync_node is not None and self._floor > 0
                    and address not in synced
                ):
                    synced.add(address)
                    log.debug("coordinator_refusal_recheck", method=method, address=address,
                              code=code.name, details=details, floor=self._floor)
                    if await self._catch_up(address, sync_node, deadline):
                        retry_here = address
                        continue
                    code, details = grpc.StatusCode.UNAVAILABLE, "could not catch up"
                if code not in RETRYABLE:
                    raise CoordinatorError(code, details, method) from None
                last_code = code
                failures[address] = f"{address}: {code.name}: {details}"
                log.debug("coordinator_failover", method=method, address=address,
                          code=code.name, details=details)
                self._demote(address)
                self._prefer(leader_hint(details, exc.trailing_metadata()))
                continue
            if version_of is not None:
                version = version_of(reply)
                if version < self._floor:
                    failures[address] = (
                        f"{address}: answered version {version} < {self._floor}"
                    )
                    self._demote(address)
                    continue
                self.observe_version(version)
            if not only:
                self._preferred = address
            return reply
        tail = "; ".join(failures.values()) or "no attempt fitted in the deadline"
        raise CoordinatorUnavailable(
            last_code, f"no coordinator replica answered within {total:g} s ({tail})", method
        )

    async def _catch_up(self, address: str, node_id: str, deadline: float) -> bool:
        """Wait until ``address`` has applied this client's floor version (True), or fail."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0.005:
            return False
        request = pb.GetFlowRequest(node_id=node_id, min_version=self._floor)
        try:
            reply = await self._stub(address).GetFlow(
                request, timeout=min(remaining, self._attempt_timeout)
            )
        except grpc.aio.AioRpcError:
            return False
        return reply_version(reply) >= self._floor

    async def _write(
        self, method: str, request: Any, node_id: str, timeout: float | None
    ) -> int:
        reply = await self._call(
            method, request, version_of=lambda r: int(r.flow_version), timeout=timeout,
            sync_node=node_id,
        )
        return int(reply.flow_version)
