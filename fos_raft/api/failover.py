"""The failover core of the coordinator client: one gRPC channel per replica, the preferred
replica, the flow-version floor and the retry loop every call goes through.

`CoordinatorClient` (fos_raft.api.client) is this class plus the coordinator's calls; the failover
rules are described there and the pure policy (codes, backoff, leader hints) is in
``fos_raft.api.policy``.
"""

from __future__ import annotations

import asyncio
import random
import zlib
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

# channel states in which an attempt goes ahead: connected, or failed fast (the RPC then
# fails at once with the reason); CONNECTING/IDLE mean "wait, up to the connect budget"
_SETTLED = frozenset({grpc.ChannelConnectivity.READY,
                      grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                      grpc.ChannelConnectivity.SHUTDOWN})


# calls that may be sent to a second replica while the first is slow to answer
HEDGED_READS = frozenset({"GetFlow", "ListNodes", "ClusterStatus", "ListMembers"})


def describe_failure(code: grpc.StatusCode, details: str, took: float) -> str:
    """One attempt's failure as it happened: refused, timed out after N s, or the status."""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timed out after {took:.1f} s"
    if code is grpc.StatusCode.UNAVAILABLE and "timed out" in details.lower():
        return f"timed out after {took:.1f} s ({details})"  # e.g. no HTTP/2 handshake
    if code is grpc.StatusCode.UNAVAILABLE and "connection refused" in details.lower():
        return f"refused ({details})"
    return f"{code.name}: {details}"


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
        connect_timeout: float | None = None,
    ) -> None:
        """``addresses``: gRPC host:port of the replicas (order = preference when none is
        known). ``timeout``: overall deadline of one call, all retries included.
        ``attempt_timeout``: deadline of one attempt (default ``timeout / 2``).
        ``min_version``: a flow version the caller already saw (e.g. restored from disk).
        ``watch_check_interval``: silence after which a watch checks its replica's health.
        ``connect_timeout``: how long an attempt waits for a replica it has no connection to
        (default ``min(attempt_timeout, 1 s)``): a replica that neither answers nor refuses
        (a black-holing link, a hung host) is left after this, not after ``attempt_timeout``,
        and a read it has not answered by then goes to the next replica too (HEDGED_READS),
        so it does not take half of every call's deadline from those that answer."""
        unique = list(dict.fromkeys(a.strip() for a in addresses if a.strip()))
        if not unique:
            raise ValueError("CoordinatorClient needs at least one replica address")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._addresses = unique
        self._timeout = timeout
        self._attempt_timeout = attempt_timeout or timeout / 2
        self._connect_timeout = connect_timeout or min(self._attempt_timeout, 1.0)
        self._options = list(channel_options)
        self._credentials = credentials
        self._backoff = backoff
        self._watch_backoff = watch_backoff
        self._rng = random.Random()
        self._preferred = unique[0]
        self._leader = ""  # the leader's gRPC address when a reply or an error named it
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

    def _prefer_leader(self, address: str | None) -> None:
        """An answer named the leader: calls go there first, watches elsewhere."""
        if self._prefer(address):
            self._leader = address or ""

    def _learn(self, replicas: Sequence[pb.ReplicaStatus], leader_grpc: str = "") -> None:
        """Add replicas' gRPC addresses the cluster reports; prefer its leader."""
        for replica in replicas:
            if replica.grpc_address and replica.grpc_address not in self._addresses:
                self._addresses.append(replica.grpc_address)
        self._prefer_leader(leader_grpc)

    def _watch_order(self, key: str) -> list[str]:
        """Replicas in the order a watch of ``key`` tries them: followers first (the
        leader's event loop serves every write), spread over them by ``key`` so that many
        watchers share the followers; the leader last, when it is known."""
        others = [a for a in self._addresses if a != self._leader]
        start = zlib.crc32(key.encode()) % len(others) if others else 0
        return others[start:] + others[:start] + [a for a in self._addresses
                                                 if a == self._leader]

    def _stub(self, address: str) -> pb_grpc.CoordinatorStub:
        if self._closed:
            raise RuntimeError("CoordinatorClient is closed")
        entry = self._channels.get(address)
        if entry is None:
            channel = self._new_channel(address)
            entry = (channel, pb_grpc.CoordinatorStub(channel))
            self._channels[address] = entry
        return entry[1]

    def _new_channel(self, address: str) -> grpc.aio.Channel:
        keep_grpc_aio_running()
        if self._credentials is not None:
            return grpc.aio.secure_channel(address, self._credentials, self._options)
        return grpc.aio.insecure_channel(address, self._options)

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
        """See ``_attempts``. A call to one replica by name (a diagnostic: ``fosctl status
        --all``) goes over a channel of its own, so that what it reports (refused, timed out
        after N s) is what that replica did now, not an earlier call's connection failure."""
        if only is None or self._closed:
            return await self._attempts(method, request, version_of=version_of,
                                        timeout=timeout, sync_node=sync_node)
        channel = self._new_channel(only)
        try:
            return await self._attempts(method, request, version_of=version_of,
                                        timeout=timeout, only=only, sync_node=sync_node,
                                        channel=channel)
        finally:
            await channel.close()

    async def _attempts(
        self,
        method: str,
        request: Any,
        *,
        version_of: Callable[[Any], int] | None = None,
        timeout: float | None = None,
        only: str | None = None,
        sync_node: str | None = None,
        channel: grpc.aio.Channel | None = None,
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
        # attempts left running on a replica slow to answer (an established connection to
        # a hung or vanished host answers nothing until the attempt's deadline): the next
        # replica is asked meanwhile and the first usable answer wins
        slow: dict[asyncio.Future[Any], tuple[str, float]] = {}

        async def settle(fut: asyncio.Future[Any], address: str, started: float) -> Any:
            """The reply of a finished attempt, or None (recorded) to go on; raises
            CoordinatorError for an answer retrying cannot change."""
            nonlocal last_code, retry_here
            try:
                reply = fut.result()
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
                        return None
                    code, details = grpc.StatusCode.UNAVAILABLE, "could not catch up"
                if code not in RETRYABLE:
                    raise CoordinatorError(code, details, method) from None
                last_code = code
                failures[address] = f"{address}: " + describe_failure(
                    code, details, loop.time() - started)
                log.debug("coordinator_failover", method=method, address=address,
                          code=code.name, details=details)
                self._demote(address)
                self._prefer_leader(leader_hint(details, exc.trailing_metadata()))
                return None
            if version_of is not None:
                version = version_of(reply)
                if version < self._floor:
                    failures[address] = f"{address}: answered version {version} < {self._floor}"
                    self._demote(address)
                    return None
                self.observe_version(version)
            if not only:
                self._preferred = address
            return reply

        async def wait_slow(wait: float, also: asyncio.Future[Any] | None = None) -> Any:
            """Wait up to ``wait`` for ``also`` or a slow attempt; a usable reply, or None."""
            pending = {*slow, *([also] if also is not None else [])}
            if not pending:
                await asyncio.sleep(wait)
                return None
            done, _ = await asyncio.wait(pending, timeout=max(wait, 0),
                                         return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                address, started = slow.pop(fut) if fut in slow else also_of
                reply = await settle(fut, address, started)
                if reply is not None:
                    return reply
            return None

        also_of: tuple[str, float] = ("", 0.0)
        try:
            while True:
                if retry_here:
                    candidates, retry_here = [retry_here], None
                elif only:
                    if only in tried:
                        break  # one replica asked for by name: one attempt, no failover
                    candidates = [only]
                else:
                    busy = {a for a, _ in slow.values()}
                    candidates = [a for a in self._order() if a not in tried | busy]
                if not candidates:
                    pause = self._backoff.delay(rounds, self._rng)
                    if loop.time() + pause >= deadline:
                        if slow:  # nothing else to ask: the slow ones may still answer
                            reply = await wait_slow(deadline - loop.time())
                            if reply is not None:
                                return reply
                        break
                    reply = await wait_slow(pause)
                    if reply is not None:
                        return reply
                    rounds += 1
                    tried.clear()
                    continue
                address = candidates[0]
                tried.add(address)
                remaining = deadline - loop.time()
                if remaining <= 0.005:
                    break
                started = loop.time()  # the connection wait counts in "timed out after"
                stub = pb_grpc.CoordinatorStub(channel) if channel else self._stub(address)
                unreachable = await self._connect(
                    channel or self._channels[address][0],
                    remaining if only else min(remaining, self._connect_timeout))
                if unreachable is not None:
                    last_code = grpc.StatusCode.DEADLINE_EXCEEDED
                    failures[address] = f"{address}: {unreachable}"
                    log.debug("coordinator_failover", method=method, address=address,
                              reason=unreachable)
                    self._demote(address)
                    continue
                attempt = asyncio.ensure_future(getattr(stub, method)(
                    request, timeout=remaining if only else min(remaining, self._attempt_timeout)
                ))
                also_of = (address, started)
                # reads only: a write sent twice may apply once and then be refused (a
                # compare-and-set), so a write still waits for its attempt's own deadline
                others = not only and method in HEDGED_READS and len(self._addresses) > 1
                hedge = self._connect_timeout if others else remaining + 1.0
                reply = await wait_slow(hedge, attempt)
                if reply is not None:
                    return reply
                if not attempt.done():
                    slow[attempt] = (address, started)
                    failures[address] = f"{address}: no answer within {hedge:.1f} s"
                    log.debug("coordinator_hedge", method=method, address=address,
                              after=hedge)
                    self._demote(address)
        finally:
            for fut, (address, started) in slow.items():
                fut.cancel()
                failures[address] = (f"{address}: timed out after "
                                     f"{loop.time() - started:.1f} s (no answer)")
        tail = "; ".join(failures.values()) or "no attempt fitted in the deadline"
        took = loop.time() - (deadline - total)
        if only:  # one replica asked for by name: say what it did, as it happened
            raise CoordinatorUnavailable(
                last_code, failures.get(only, tail).removeprefix(f"{only}: "), method)
        raise CoordinatorUnavailable(
            last_code, f"no coordinator replica answered (gave up after {took:.1f} s of "
            f"{total:g} s: {tail})", method)

    @staticmethod
    async def _connect(channel: grpc.aio.Channel, budget: float) -> str | None:
        """Wait up to ``budget`` for ``channel`` to connect; None when connected, or when
        the connection failed fast (refused: the call then fails at once with gRPC's own
        reason); else why it was given up."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        state = channel.get_state(try_to_connect=True)
        while state not in _SETTLED:
            remaining = started + budget - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                break
            state = channel.get_state(try_to_connect=True)
        if state in _SETTLED:
            return None
        return f"timed out after {loop.time() - started:.1f} s (no connection)"

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
