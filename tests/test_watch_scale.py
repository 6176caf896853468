"""WatchFlow under many streams, against real fos-coordinator processes (fos_raft.api.watch).

A seeded 60-node catalog (``--restore``); a few hundred streams over several connections.
The bench's own model of the state (the pure ``apply``, bench.bench_watchers.Model) says
which neighbourhoods each write changes; the streams must get exactly those.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from bench.bench_watchers import Model, pick_targets, seed_state
from fos_pb import coordinator_pb2 as pb
from fos_pb import coordinator_pb2_grpc as pb_grpc
from fos_raft.api.client import CoordinatorClient
from fos_raft.api.views import content_key
from fos_raft.cli.launcher import LocalCluster
from fos_raft.state.commands import Drain, Undrain
from fos_raft.state.snapshot import encode

NODES = 60
OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


def seeded_cluster(base: Path, **flags: object) -> tuple[LocalCluster, Model]:
    state = seed_state(NODES, 3)
    snap = base / "seed.json"
    snap.write_bytes(encode(state))
    cluster = LocalCluster(3, base / "c", **flags)
    cluster.replica_flags[0] = ["--restore", str(snap)]
    cluster.start()
    cluster.wait_ready(30)
    deadline = time.monotonic() + 30
    while min(v for v, _ in cluster.digests().values()) < 1:
        assert time.monotonic() < deadline, "the seed did not reach every replica"
        time.sleep(0.05)
    return cluster, Model(state)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Model]]:
    cluster, model = seeded_cluster(tmp_path_factory.mktemp("watch"),
                                    grpc_leader_watch_streams=0)
    try:
        yield cluster, model
    finally:
        cluster.stop()


class Streams:
    """``copies`` streams per node on one replica; every message kept with its version."""

    def __init__(self, address: str, nodes: list[str], copies: int) -> None:
        self.channels = [grpc.aio.insecure_channel(address, OPTIONS) for _ in range(4)]
        self.keys = [(n, c) for n in nodes for c in range(copies)]
        self.got: dict[tuple[str, int], list[pb.GetFlowReply]] = {k: [] for k in self.keys}
        self.tasks = [asyncio.ensure_future(self._one(k, i)) for i, k in enumerate(self.keys)]

    async def _one(self, key: tuple[str, int], i: int) -> None:
        stub = pb_grpc.CoordinatorStub(self.channels[i % len(self.channels)])
        async for reply in stub.WatchFlow(pb.WatchFlowRequest(node_id=key[0])):
            self.got[key].append(reply)

    def versions(self, key: tuple[str, int]) -> list[int]:
        return [r.neighbourhood.version for r in self.got[key]]

    async def until(self, predicate: object, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            for task in self.tasks:
                if task.done() and task.exception() is not None:
                    raise AssertionError(f"a stream failed: {task.exception()}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def write(address: str, command: Drain | Undrain) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        method = stub.Drain if isinstance(command, Drain) else stub.Undrain
        reply = await method(pb.NodeRequest(node_id=command.node_id), timeout=10)
        return int(reply.flow_version)


def test_only_changed_neighbourhoods_are_pushed_and_the_latest_always_arrives(
        seeded: tuple[LocalCluster, Model]) -> None:
    cluster, model = seeded
    leader = cluster.wait_for_leader(10)
    follower = next(i for i in range(3) if i != leader)
    nodes = sorted(model.state.nodes)
    targets = pick_targets(model.state, 8, 5)

    async def scenario() -> None:
        streams = Streams(cluster.grpc_addresses[follower], nodes, copies=4)  # 240 streams
        try:
            await streams.until(lambda: all(streams.got[k] for k in streams.keys),
                                "every stream's first message")
            for k in streams.keys:
                assert len(streams.got[k]) == 1
            for command in (Drain(targets[0][0]), Undrain(targets[0][0])):
                version = await write(cluster.grpc_addresses[leader], command)
                affected = model.step(command)
                assert version == model.state.version and affected
                await streams.until(
                    lambda v=version, a=affected: all(  # type: ignore[misc]
                        v in streams.versions(k) for k in streams.keys if k[0] in a),
                    f"every affected watcher at version {version}")
                # one version after, the unaffected have still received nothing for it
                for key in streams.keys:
                    if key[0] not in affected:
                        assert version not in streams.versions(key), key
                    else:
                        assert streams.versions(key).count(version) == 1
            # a burst: watchers fall several versions behind; each ends at its latest view
            for supplier, _ in targets[1:6]:
                await write(cluster.grpc_addresses[leader], Drain(supplier))
                model.step(Drain(supplier))
            final = model.state.version
            async with grpc.aio.insecure_channel(cluster.grpc_addresses[follower]) as ch:
                stub = pb_grpc.CoordinatorStub(ch)
                want = {}
                for node in nodes:
                    reply = await stub.GetFlow(pb.GetFlowRequest(node_id=node,
                                                                 min_version=final), timeout=10)
                    want[node] = content_key(reply)
            await streams.until(
                lambda: all(content_key(streams.got[k][-1]) == want[k[0]] for k in streams.keys),
                "every stream at its latest neighbourhood")
        finally:
            await streams.close()
        for supplier, _ in targets[1:6]:
            await write(cluster.grpc_addresses[leader], Undrain(supplier))
            model.step(Undrain(supplier))

    asyncio.run(scenario())


def test_a_leader_with_hundreds_of_watchers_keeps_its_role(
        seeded: tuple[LocalCluster, Model]) -> None:
    cluster, model = seeded
    leader = cluster.wait_for_leader(10)
    before = cluster.status(leader)
    nodes = sorted(model.state.nodes)
    targets = pick_targets(model.state, 10, 7)

    async def scenario() -> None:
        streams = Streams(cluster.grpc_addresses[leader], nodes, copies=5)  # 300 streams
        try:
            await streams.until(lambda: all(streams.got[k] for k in streams.keys),
                                "every stream's first message")
            for supplier, _ in targets:
                for command in (Drain(supplier), Undrain(supplier)):
                    version = await write(cluster.grpc_addresses[leader], command)
                    affected = model.step(command)
                    await streams.until(
                        lambda v=version, a=affected: all(  # type: ignore[misc]
                            any(x >= v for x in streams.versions(k))
                            for k in streams.keys if k[0] in a),
                        f"every affected watcher at version {version}")
        finally:
            await streams.close()

    asyncio.run(scenario())
    after = cluster.status(leader)
    assert (after.term, after.leader) == (before.term, before.leader)


def test_limits_refuse_with_a_redirect_and_a_leader_sheds(tmp_path: Path) -> None:
    cluster, model = seeded_cluster(tmp_path, grpc_max_watch_streams=6,
                                    grpc_leader_watch_streams=2)
    try:
        leader = cluster.wait_for_leader(10)
        follower = next(i for i in range(3) if i != leader)
        supplier, node = pick_targets(model.state, 1, 1)[0]  # node consumes from supplier

        async def scenario() -> None:
            held = Streams(cluster.grpc_addresses[follower], [node], copies=6)
            try:
                await held.until(lambda: all(held.got[k] for k in held.keys), "six streams")
                async with grpc.aio.insecure_channel(cluster.grpc_addresses[follower]) as ch:
                    call = pb_grpc.CoordinatorStub(ch).WatchFlow(pb.WatchFlowRequest(node_id=node))
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await call.read()
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                redirect = dict(refused.value.trailing_metadata() or ())["fos-redirect-grpc"]
                assert redirect in cluster.grpc_addresses
                assert redirect not in (cluster.grpc_addresses[follower],
                                        cluster.grpc_addresses[leader])
                # the six held streams are unaffected: a change still reaches them
                version = await write(cluster.grpc_addresses[leader], Drain(supplier))
                assert node in model.step(Drain(supplier))
                await held.until(lambda: all(version in held.versions(k) for k in held.keys),
                                 "the held streams get the change")
                # the leader holds two, then sheds to a follower; the client follows there
                on_leader = Streams(cluster.grpc_addresses[leader], [node], copies=2)
                await on_leader.until(lambda: all(on_leader.got[k] for k in on_leader.keys),
                                      "two streams on the leader")
                client = CoordinatorClient([cluster.grpc_addresses[leader]], timeout=10)
                try:
                    watch = client.watch_flow(node).__aiter__()
                    first = await asyncio.wait_for(watch.__anext__(), 20)
                    assert first.neighbourhood.node_id == node
                    assert set(client.addresses) - {cluster.grpc_addresses[leader]}
                    await watch.aclose()  # type: ignore[attr-defined]
                finally:
                    await client.close()
                await on_leader.close()
            finally:
                await held.close()

        asyncio.run(scenario())
    finally:
        cluster.stop()
