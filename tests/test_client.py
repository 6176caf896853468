"""CoordinatorClient: backoff and leader hints (pure), the failover rules against scripted
gRPC replicas (real servers on loopback, answering what each case needs), and failover
against a real 3-replica coordinator cluster whose replicas are SIGKILLed (bottom half)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import time
from collections.abc import Callable

import grpc
import grpc.aio
import pytest

from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.api.client import (
    Backoff,
    CoordinatorClient,
    CoordinatorError,
    CoordinatorUnavailable,
    leader_hint,
    reply_version,
)
from fos_raft.model import ItemReq, NodeSpec
from fos_raft.runtime.grpc_runtime import keep_grpc_aio_running

# ---------------------------------------------------------------- pure parts


def test_backoff_grows_to_the_cap_with_jitter_inside_half_to_full():
    backoff = Backoff(base=0.1, factor=2.0, cap=1.0)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (60, 1.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # really jittered


@pytest.mark.parametrize(
    ("details", "metadata", "hint"),
    [
        ("not the leader", (("fos-leader-grpc", "127.0.0.1:5002"),), "127.0.0.1:5002"),
        ("no leader", (("fos-leader-grpc", b"10.0.0.1:7000"),), "10.0.0.1:7000"),
        ("not the leader; leader_grpc=127.0.0.1:5003", None, "127.0.0.1:5003"),
        ("forwarding failed, leader grpc is 127.0.0.1:5004.", (), "127.0.0.1:5004"),
        ("leader at host-b:7000", None, "host-b:7000"),
        ("no leader (last known leader raft 127.0.0.1:9001 grpc 127.0.0.1:5001)", None,
         "127.0.0.1:5001"),
        ("last known leader raft 127.0.0.1:9001 grpc unknown", None, None),
        ("no leader elected yet", None, None),
        ("", None, None),
    ],
)
def test_leader_hint_from_metadata_or_message(details, metadata, hint):
    assert leader_hint(details, metadata) == hint


def test_client_refuses_no_addresses_and_deduplicates():
    with pytest.raises(ValueError):
        CoordinatorClient([])
    with pytest.raises(ValueError):
        CoordinatorClient([" ", ""])
    client = CoordinatorClient(["a:1", "b:2", "a:1", " b:2 "])
    assert client.addresses == ["a:1", "b:2"]
    assert client.preferred == "a:1"


# ---------------------------------------------------------------- scripted replicas


Handler = Callable[[object, grpc.aio.ServicerContext], object]


class ScriptedReplica(pb_grpc.CoordinatorServicer):
    """A real gRPC server whose answers each test scripts; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, object]] = []
        self.handlers: dict[str, Handler] = {}
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        keep_grpc_aio_running()  # see fos_raft.runtime.grpc_runtime
        self.server = grpc.aio.server()
        pb_grpc.add_CoordinatorServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.requests if m == method)

    async def _handle(self, method: str, request, context):
        self.requests.append((method, request))
        handler = self.handlers.get(method)
        if handler is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} not scripted")
        result = handler(request, context)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def Drain(self, request, context):
        return await self._handle("Drain", request, context)

    async def ListNodes(self, request, context):
        return await self._handle("ListNodes", request, context)

    async def GetFlow(self, request, context):
        return await self._handle("GetFlow", request, context)

    async def ClusterStatus(self, request, context):
        return await self._handle("ClusterStatus", request, context)

    async def WatchFlow(self, request, context):
        self.requests.append(("WatchFlow", request))
        async for reply in self.handlers["WatchFlow"](request, context):
            yield reply


@pytest.fixture
async def replicas():
    started: list[ScriptedReplica] = []

    async def make(n: int) -> list[ScriptedReplica]:
        for _ in range(n):
            replica = ScriptedReplica()
            await replica.start()
            started.append(replica)
        return started[-n:]

    try:
        yield make
    finally:
        for replica in started:
            await replica.stop()


def closed_port_address() -> str:
    """An address nothing listens on (bound, then closed): connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def write_reply(version: int) -> Handler:
    return lambda request, context: pb.WriteReply(flow_version=version)


def abort_with(code: grpc.StatusCode, details: str, metadata=()) -> Handler:
    async def handler(request, context):
        if metadata:
            context.set_trailing_metadata(metadata)
        await context.abort(code, details)

    return handler


async def test_non_retryable_error_is_raised_at_once_with_code_and_message(replicas):
    a, b = await replicas(2)
    a.handlers["Drain"] = abort_with(grpc.StatusCode.NOT_FOUND, "node 'press-7' is not registered")
    b.handlers["Drain"] = write_reply(9)
    async with CoordinatorClient([a.address, b.address]) as client:
        with pytest.raises(CoordinatorError) as info:
            await client.drain("press-7")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.message == "node 'press-7' is not registered"
    assert str(info.value) == "NOT_FOUND: node 'press-7' is not registered"
    assert not isinstance(info.value, CoordinatorUnavailable)
    assert (a.count("Drain"), b.count("Drain")) == (1, 0)  # never retried elsewhere


async def test_refusal_from_a_lagging_replica_is_rechecked_once_it_caught_up(replicas):
    """A replica behind the client's last write may refuse NOT_FOUND from stale state: the
    client makes it catch up to what it has seen and asks again; a refusal it repeats then
    is final."""
    a, b = await replicas(2)
    refusals = iter([True, False])

    async def drain(request, context):
        if next(refusals):
            await context.abort(grpc.StatusCode.NOT_FOUND, "node 'n' is not registered")
        return pb.WriteReply(flow_version=11)

    a.handlers["Drain"] = drain
    a.handlers["GetFlow"] = lambda r, c: pb.GetFlowReply(
        neighbourhood=pb.Neighbourhood(version=r.min_version, node_id=r.node_id, known=True))
    b.handlers["Drain"] = write_reply(99)
    async with CoordinatorClient([a.address, b.address], min_version=10) as client:
        assert await client.drain("n") == 11
        (catch_up,) = [r for m, r in a.requests if m == "GetFlow"]
        assert (catch_up.node_id, catch_up.min_version) == ("n", 10)

        a.handlers["Drain"] = abort_with(grpc.StatusCode.NOT_FOUND, "node 'm' is not registered")
        with pytest.raises(CoordinatorError, match="NOT_FOUND: node 'm' is not registered"):
            await client.drain("m")
    assert (a.count("Drain"), a.count("GetFlow"), b.count("Drain")) == (4, 2, 0)


async def test_dead_replica_is_skipped_and_the_answering_one_preferred(replicas):
    (b,) = await replicas(1)
    b.handlers["Drain"] = write_reply(4)
    dead = closed_port_address()
    async with CoordinatorClient([dead, b.address], timeout=5.0) as client:
        assert await client.drain("x") == 4
        assert client.preferred == b.address
        assert await client.drain("x") == 4
    assert b.count("Drain") == 2
    assert client.flow_version == 4


async def test_unavailable_naming_the_leader_sends_the_retry_there(replicas):
    a, b, c = await replicas(3)
    a.handlers["Drain"] = abort_with(
        grpc.StatusCode.UNAVAILABLE, "not the leader", (("fos-leader-grpc", c.address),)
    )
    b.handlers["Drain"] = write_reply(5)
    c.handlers["Drain"] = write_reply(6)
    async with CoordinatorClient([a.address, b.address, c.address]) as client:
        assert await client.drain("x") == 6
        assert client.preferred == c.address
    assert (a.count("Drain"), b.count("Drain"), c.count("Drain")) == (1, 0, 1)


async def test_all_unavailable_fails_within_the_deadline(replicas):
    a, b = await replicas(2)
    for r in (a, b):
        r.handlers["Drain"] = abort_with(grpc.StatusCode.UNAVAILABLE, "no leader")
    async with CoordinatorClient([a.address, b.address], timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(CoordinatorUnavailable) as info:
            await client.drain("x")
        elapsed = time.monotonic() - started
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    # says how long it tried (it stops when the next round would not fit), not the deadline;
    # printed to 0.1 s, so 0.96 s shows as 1.0
    tried = re.search(r"no coordinator replica answered \(gave up after (\d+\.\d) s of 1 s: ",
                      info.value.message)
    assert tried is not None, info.value.message
    assert float(tried.group(1)) <= 1.0
    assert "no leader" in info.value.message
    assert elapsed < 3.0
    # retried with backoff, several rounds over both replicas, not a hot loop
    assert 2 <= a.count("Drain") <= 20 and 2 <= b.count("Drain") <= 20


async def test_hung_replica_costs_one_attempt_timeout_then_fails_over(replicas):
    a, b = await replicas(2)

    async def hang(request, context):
        await asyncio.sleep(30)

    a.handlers["Drain"] = hang
    b.handlers["Drain"] = write_reply(3)
    async with CoordinatorClient([a.address, b.address], timeout=4.0,
                                 attempt_timeout=0.3) as client:
        assert await client.drain("x") == 3


async def test_reply_older_than_seen_is_dropped_and_reads_send_min_version(replicas):
    a, b = await replicas(2)
    a.handlers["Drain"] = write_reply(10)
    a.handlers["ListNodes"] = abort_with(grpc.StatusCode.UNAVAILABLE, "restarting")
    b.handlers["ListNodes"] = lambda r, c: pb.ListNodesReply(flow_version=7)  # lagging
    async with CoordinatorClient([a.address, b.address], timeout=0.8) as client:
        assert await client.drain("x") == 10
        with pytest.raises(CoordinatorUnavailable, match="answered version 7 < 10"):
            await client.list_nodes()
        b.handlers["ListNodes"] = lambda r, c: pb.ListNodesReply(flow_version=11)
        assert (await client.list_nodes()).flow_version == 11
        b.handlers["GetFlow"] = lambda r, c: pb.GetFlowReply(flow=pb.Flow(version=12))
        a.handlers["GetFlow"] = b.handlers["GetFlow"]
        assert (await client.get_flow()).flow.version == 12
    get_flows = [r for m, r in a.requests + b.requests if m == "GetFlow"]
    assert get_flows and all(r.min_version == 11 for r in get_flows)
    assert client.flow_version == 12


def flow_reply(version: int) -> pb.GetFlowReply:
    return pb.GetFlowReply(flow=pb.Flow(version=version, members=[f"v{version}"]))


async def test_watch_reconnects_to_another_replica_and_never_goes_back(replicas):
    a, b = await replicas(2)

    async def stream_a(request, context):
        for v in (3, 4):
            yield flow_reply(v)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "replica shutting down")

    async def stream_b(request, context):
        # b lags at first: an older and an equal version, then newer ones
        for v in (2, 4, 5, 5, 6):
            yield flow_reply(v)
        await asyncio.sleep(30)

    a.handlers["WatchFlow"] = stream_a
    b.handlers["WatchFlow"] = stream_b
    seen = []
    async with CoordinatorClient([a.address, b.address]) as client:
        async with contextlib.aclosing(client.watch_flow()) as updates:
            async for reply in updates:
                seen.append(reply_version(reply))
                if len(seen) == 4:
                    break
        assert client.flow_version == 6
    assert seen == [3, 4, 5, 6]
    (b_request,) = [r for m, r in b.requests if m == "WatchFlow"]
    assert b_request.min_version == 4  # reconnect asks for nothing older than seen


async def test_quiet_watch_leaves_a_replica_cut_off_from_the_quorum(replicas):
    """A partitioned replica keeps the stream open and silent; the health check notices."""
    a, b = await replicas(2)
    quorum = {a.address: False, b.address: True}

    async def silent_after_first(request, context):
        yield flow_reply(3)
        await asyncio.sleep(30)

    async def current(request, context):
        yield flow_reply(3)
        yield flow_reply(4)
        await asyncio.sleep(30)

    a.handlers["WatchFlow"] = silent_after_first
    b.handlers["WatchFlow"] = current
    for r in (a, b):
        r.handlers["ClusterStatus"] = lambda req, ctx, r=r: pb.ClusterStatusReply(
            has_quorum=quorum[r.address], flow_version=3)
    seen = []
    client = CoordinatorClient([a.address, b.address], watch_check_interval=0.2)
    async with asyncio.timeout(20), client, \
            contextlib.aclosing(client.watch_flow()) as updates:
        async for reply in updates:
            seen.append(reply_version(reply))
            if len(seen) == 2:
                break
    assert seen == [3, 4]
    assert a.count("ClusterStatus") >= 1 and b.count("WatchFlow") == 1


async def test_watch_raises_errors_retrying_cannot_fix(replicas):
    (a,) = await replicas(1)

    async def refuse(request, context):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node id must not be empty")
        yield  # pragma: no cover - makes this an async generator

    a.handlers["WatchFlow"] = refuse
    async with CoordinatorClient([a.address]) as client:
        with pytest.raises(CoordinatorError, match="INVALID_ARGUMENT"):
            async for _ in client.watch_flow("bad id"):
                pass


# ---------------------------------------------------------------- a real 3-replica cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from fos_raft.cli.launcher import LocalCluster

    local = LocalCluster(3, tmp_path_factory.mktemp("client-cluster"))
    try:
        local.start()
        local.wait_for_leader(timeout=30.0)
        yield local
    finally:
        local.stop()


def spec(node_id: str, item: str, port: int, requires: tuple = ()) -> NodeSpec:
    return NodeSpec(node_id, f"127.0.0.1:{port}", ItemReq(item, 1),
                    tuple(ItemReq(r, 1) for r in requires))


async def restart(cluster, index: int) -> None:
    await asyncio.to_thread(cluster.restart, index)


async def test_calls_keep_working_when_the_replica_in_use_is_killed(cluster):
    async with CoordinatorClient(cluster.grpc_addresses, timeout=20.0) as client:
        # the test stands in for the agents (alive at once)
        versions = [await client.register(spec("kc-saw", "kc-wood", 7301), from_agent=True)]
        versions.append(await client.register(spec("kc-press", "kc-frame", 7302, ("kc-wood",)),
                                              from_agent=True))
        for _ in range(2):  # twice: the second time another replica is the one in use
            victim = cluster.grpc_addresses.index(client.preferred)
            cluster.kill(victim)
            try:
                versions.append(await client.drain("kc-saw"))
                versions.append(await client.undrain("kc-saw"))
                nodes = await client.list_nodes()
                assert nodes.flow_version >= versions[-1]
                assert {"kc-saw", "kc-press"} <= {n.spec.node_id for n in nodes.nodes}
                hood = (await client.get_flow("kc-press")).neighbourhood
                assert hood.version >= versions[-1] and hood.in_flow
                assert client.preferred != cluster.grpc_addresses[victim]
            finally:
                await restart(cluster, victim)
        assert versions == sorted(set(versions))  # every write a new, higher version
        with pytest.raises(CoordinatorError) as info:
            await client.drain("kc-no-such-node")
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        status = await client.cluster_status()
        assert status.leader_grpc and client.preferred == status.leader_grpc


async def test_watch_never_goes_backwards_across_a_reconnect(cluster):
    leader = await asyncio.to_thread(cluster.wait_for_leader, 30.0)
    # The watcher talks to the leader first: killing it forces a reconnect elsewhere.
    order = [cluster.grpc_addresses[leader]] + [
        a for i, a in enumerate(cluster.grpc_addresses) if i != leader]
    seen: list[int] = []
    hood_seen: list[int] = []
    async with CoordinatorClient(order, timeout=20.0) as watcher, \
            CoordinatorClient(cluster.grpc_addresses, timeout=20.0) as writer:
        await writer.register(spec("kw-saw", "kw-wood", 7311), from_agent=True)
        await writer.register(spec("kw-press", "kw-frame", 7312, ("kw-wood",)), from_agent=True)

        async def follow(node_id, into):
            async with contextlib.aclosing(watcher.watch_flow(node_id)) as updates:
                async for reply in updates:
                    into.append(reply_version(reply))

        tasks = [asyncio.create_task(follow(None, seen)),
                 asyncio.create_task(follow("kw-press", hood_seen))]
        try:
            first = await writer.drain("kw-saw")
            await wait_for(lambda: seen and seen[-1] >= first and hood_seen
                           and hood_seen[-1] >= first)
            cluster.kill(leader)
            try:
                last = await writer.undrain("kw-saw")
                await wait_for(lambda: seen[-1] >= last and hood_seen[-1] >= last)
                assert watcher.preferred != cluster.grpc_addresses[leader]  # reconnected
            finally:
                await restart(cluster, leader)
            last = await writer.drain("kw-saw")
            await wait_for(lambda: seen[-1] >= last and hood_seen[-1] >= last)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert seen == sorted(set(seen)) and hood_seen == sorted(set(hood_seen))
    assert len(seen) >= 3


async def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_watch_asks_again_when_a_push_is_older_than_what_the_client_saw_since(cluster):
    async with CoordinatorClient(cluster.grpc_addresses, timeout=20.0) as client, \
            CoordinatorClient(cluster.grpc_addresses, timeout=20.0) as other:
        await client.register(spec("ks-press", "ks-frame", 7321, ("ks-wood",)), from_agent=True)
        async with contextlib.aclosing(client.watch_flow("ks-press")) as updates:
            first = await asyncio.wait_for(anext(updates), 20)
            assert not first.neighbourhood.edges
            async with contextlib.aclosing(other.watch_flow("ks-press")) as probe:
                await asyncio.wait_for(anext(probe), 20)
                supplied = await other.register(spec("ks-saw", "ks-wood", 7322), from_agent=True)
                while reply_version(await asyncio.wait_for(anext(probe), 20)) < supplied:
                    pass  # the push about ks-saw is out (to `client` too)
            # Before `client` reads that push, another of its calls sees a newer version,
            # from a change that does not concern ks-press: no push will ever follow it.
            newer = await client.register(spec("ks-bolt", "ks-bolt", 7323), from_agent=True)
            reply = await asyncio.wait_for(anext(updates), 20)
    assert reply_version(reply) >= newer
    assert [e.supplier for e in reply.neighbourhood.edges] == ["ks-saw"]
