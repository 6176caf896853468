"""Three real fos-coordinator processes on loopback: API, bad input, watch, suspicion,
leader kill, catch-up, mixed workload, full stop and SIGKILL of every replica.

One cluster serves the whole module (tests run in file order; each leaves it with a leader
and all replicas running).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from pathlib import Path

import grpc
import pytest
from coord_util import (
    WINDOW_FACTORY,
    register_all,
    retry_unavailable,
    spec,
    start_health_server,
    wait_until,
)

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.journal import read_journal


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    # A generous probe timeout: the slow health endpoint below must never time out a try.
    c = LocalCluster(3, tmp_path_factory.mktemp("c3"), probe_timeout=2.0)
    try:
        c.start()
        c.wait_ready()
        register_all(c, 0, WINDOW_FACTORY)
        c.wait_converged()
        yield c
    finally:
        c.stop()


def follower(c: LocalCluster) -> int:
    leader = c.wait_for_leader(timeout=20)
    return next(i for i in c.running() if i != leader)


def test_catalog_is_replicated_and_served_by_every_replica(cluster: LocalCluster):
    digest = cluster.wait_converged()
    for i in range(3):
        nodes = cluster.stub(i).ListNodes(pb.ListNodesRequest(), timeout=5).nodes
        assert [n.spec.node_id for n in nodes] == sorted(s.node_id for s in WINDOW_FACTORY)
        assert all(n.alive and n.in_flow and not n.drained for n in nodes)
        status = cluster.status(i)
        assert status.state_digest == digest and status.has_quorum
        assert status.nodes_total == 8 and status.nodes_in_flow == 8 and status.edges > 0
        assert status.leader == cluster.raft_addresses[cluster.wait_for_leader()]
        assert status.leader_grpc == cluster.grpc_addresses[cluster.wait_for_leader()]
        assert sorted(r.raft_address for r in status.replicas) == sorted(cluster.raft_addresses)
        assert {r.grpc_address for r in status.replicas} == set(cluster.grpc_addresses)
        assert status.applied_index >= status.flow_version
    hood = cluster.stub(1).GetFlow(pb.GetFlowRequest(node_id="window-1"), timeout=5).neighbourhood
    assert hood.known and hood.in_flow and {e.item for e in hood.edges} >= {"frame", "glass"}
    assert all(n.address.startswith("127.0.0.1:72") for n in hood.neighbours)
    flow = cluster.stub(2).GetFlow(pb.GetFlowRequest(), timeout=5).flow
    assert len(flow.members) == 8 and flow.version == cluster.status(2).flow_version
    # The bounded history: the flow as it was after the first registration (one source).
    first = cluster.stub(1).GetFlow(pb.GetFlowRequest(at_version=1), timeout=5).flow
    assert first.version == 1 and list(first.members) == ["saw-1"] and not first.edges


def _bad_inputs():
    stale = pb.UpdateSpecRequest(spec=WINDOW_FACTORY[0], expected_version=10_000)
    other_saw = spec("saw-1", 7999, ("wood", 3))
    cases = {
        "unknown node drain": ("Drain", pb.NodeRequest(node_id="ghost"), "NOT_FOUND", "ghost"),
        "unknown node update": (
            "UpdateSpec",
            pb.UpdateSpecRequest(spec=spec("ghost", 7300, ("wood", 1))),
            "NOT_FOUND",
            "ghost",
        ),
        "unknown node rejoin": ("Rejoin", pb.RejoinRequest(node_id="ghost"), "NOT_FOUND", ""),
        "unknown suspect": (
            "ReportSuspect",
            pb.ReportSuspectRequest(reporter="saw-1", suspect="ghost"),
            "NOT_FOUND",
            "ghost",
        ),
        "cyclic spec": (
            "Register",
            pb.RegisterRequest(spec=spec("saw-9", 7301, ("wood", 1), [("window", 1)])),
            "INVALID_ARGUMENT",
            "cyclic",
        ),
        "self-requiring spec": (
            "Register",
            pb.RegisterRequest(spec=spec("loop-1", 7302, ("wood", 1), [("wood", 1)])),
            "INVALID_ARGUMENT",
            "own product",
        ),
        "zero quantity": (
            "Register",
            pb.RegisterRequest(spec=spec("z-1", 7303, ("wood", 0))),
            "INVALID_ARGUMENT",
            "positive",
        ),
        "negative required quantity": (
            "Register",
            pb.RegisterRequest(spec=spec("z-2", 7304, ("beam", 1), [("wood", -3)])),
            "INVALID_ARGUMENT",
            "positive",
        ),
        "empty id": (
            "Register",
            pb.RegisterRequest(spec=spec("", 7305, ("wood", 1))),
            "INVALID_ARGUMENT",
            "empty",
        ),
        "over-long id": (
            "Register",
            pb.RegisterRequest(spec=spec("x" * 300, 7306, ("wood", 1))),
            "INVALID_ARGUMENT",
            "limit",
        ),
        "no spec at all": ("Register", pb.RegisterRequest(), "INVALID_ARGUMENT", ""),
        "duplicate with different spec": (
            "Register",
            pb.RegisterRequest(spec=other_saw),
            "ALREADY_EXISTS",
            "saw-1",
        ),
        "stale expected_version": ("UpdateSpec", stale, "FAILED_PRECONDITION", "10000"),
        "flow version not applied yet": (
            "GetFlow",
            pb.GetFlowRequest(at_version=500, min_version=0),
            "UNAVAILABLE",  # a near-future version: waits for it until the deadline
            "not yet",
        ),
        "flow version never written": (
            "GetFlow",
            pb.GetFlowRequest(at_version=1_000_000, min_version=0),
            "OUT_OF_RANGE",  # far beyond the applied version: at once
            "never written",
        ),
        "bad member address": (
            "AddMember",
            pb.MemberRequest(raft_address="nonsense"),
            "INVALID_ARGUMENT",
            "host:port",
        ),
        "over-long node id in GetFlow": (
            "GetFlow",
            pb.GetFlowRequest(node_id="y" * 500),
            "INVALID_ARGUMENT",
            "limit",
        ),
    }
    return [pytest.param(*v, id=k) for k, v in cases.items()]


@pytest.mark.parametrize(("method", "request_msg", "code", "fragment"), _bad_inputs())
def test_bad_input_is_refused_with_a_clear_status_and_changes_nothing(
    cluster: LocalCluster, method, request_msg, code, fragment
):
    target = follower(cluster)
    before = cluster.wait_converged()
    with pytest.raises(grpc.RpcError) as info:
        getattr(cluster.stub(target), method)(request_msg, timeout=1.0)
    assert info.value.code() == getattr(grpc.StatusCode, code), info.value.details()
    assert fragment in (info.value.details() or "")
    assert cluster.wait_converged() == before


def test_watch_flow_pushes_changes_fast_and_never_goes_back(cluster: LocalCluster):
    leader = cluster.wait_for_leader()
    watched, writer = [i for i in range(3) if i != leader][:2] if leader != 1 else (0, 2)
    call = cluster.stub(watched).WatchFlow(pb.WatchFlowRequest(node_id="frame-1"), timeout=30)
    received: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for reply in call:
                received.put((time.monotonic(), reply.neighbourhood))
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    try:
        _, first = received.get(timeout=10)
        assert first.version == cluster.status(watched).flow_version  # newest first
        assert not first.drained
        t0 = time.monotonic()
        reply = cluster.stub(writer).Drain(pb.NodeRequest(node_id="frame-1"), timeout=5)
        arrived, pushed = received.get(timeout=5)
        assert pushed.version == reply.flow_version and pushed.drained
        assert arrived - t0 < 1.0, f"change reached the subscriber after {arrived - t0:.3f}s"
    finally:
        call.cancel()

    # A lagging replica holds a reconnecting subscriber until it has caught up.
    lagging = next(i for i in range(3) if i not in (leader, writer))
    cluster.kill(lagging)
    newest = cluster.stub(writer).Undrain(pb.NodeRequest(node_id="frame-1"), timeout=5)
    cluster.restart(lagging)
    call = cluster.stub(lagging).WatchFlow(
        pb.WatchFlowRequest(node_id="frame-1", min_version=newest.flow_version), timeout=15
    )
    try:
        first_after = next(iter(call)).neighbourhood
        assert first_after.version >= newest.flow_version and not first_after.drained
    finally:
        call.cancel()
    cluster.wait_converged()


def test_report_suspect_probes_once_and_decides_by_health(cluster: LocalCluster):
    server, health, port = start_health_server(delay=0.3, node_id="lathe-1")
    try:
        node = spec("lathe-1", port, ("bolt", 1))
        register_all(cluster, 0, [node])
        before = cluster.status(0)
        target = follower(cluster)  # forwarded to the leader, which probes
        replies: list[pb.ReportSuspectReply] = []
        together = threading.Barrier(5)

        def report() -> None:
            req = pb.ReportSuspectRequest(reporter="saw-1", suspect="lathe-1", reason="silent")
            together.wait(10)
            replies.append(cluster.stub(target).ReportSuspect(req, timeout=10))

        threads = [threading.Thread(target=report) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert [r.outcome for r in replies] == [pb.ReportSuspectReply.REFUTED] * 5
        assert health.checks == 1  # five concurrent reports shared one probe
        cluster.wait_converged()
        after = cluster.status(0)
        assert after.refuted_suspicions == before.refuted_suspicions + 1
        assert after.flow_version == before.flow_version
    finally:
        server.stop(0).wait()

    req = pb.ReportSuspectRequest(reporter="saw-1", suspect="lathe-1", reason="silent")
    reply = cluster.stub(target).ReportSuspect(req, timeout=10)
    assert reply.outcome == pb.ReportSuspectReply.MARKED_DOWN
    assert reply.flow_version == after.flow_version + 1
    cluster.wait_converged()
    status = cluster.status(target)
    assert status.confirmed_suspicions == before.confirmed_suspicions + 1
    nodes = {n.spec.node_id: n for n in cluster.stub(target).ListNodes(pb.ListNodesRequest()).nodes}
    assert not nodes["lathe-1"].alive and "saw-1" in nodes["lathe-1"].down_reason
    again = cluster.stub(target).ReportSuspect(req, timeout=10)
    assert again.outcome == pb.ReportSuspectReply.ALREADY_DOWN
    rejoined = cluster.stub(target).Rejoin(pb.RejoinRequest(node_id="lathe-1"), timeout=5)
    assert rejoined.flow_version == reply.flow_version + 1
    cluster.stub(0).Decommission(pb.NodeRequest(node_id="lathe-1"), timeout=5)


def test_leader_sigkill_then_write_on_survivor_and_catch_up(cluster: LocalCluster):
    leader = cluster.wait_for_leader()
    cluster.kill(leader)
    survivor = next(i for i in range(3) if i != leader)
    reply = retry_unavailable(
        lambda: cluster.stub(survivor).Drain(pb.NodeRequest(node_id="saw-2"), timeout=5)
    )
    survivors = [i for i in range(3) if i != leader]
    digest = cluster.wait_converged(survivors)
    assert all(v == reply.flow_version for v, _ in cluster.digests(survivors).values())
    new_leader = cluster.wait_for_leader()
    assert new_leader != leader
    cluster.restart(leader)
    assert cluster.wait_converged() == digest  # the restarted one caught up
    retry_unavailable(
        lambda: cluster.stub(leader).Undrain(pb.NodeRequest(node_id="saw-2"), timeout=5)
    )
    cluster.wait_converged()


def replicated_part(reply: pb.ListNodesReply) -> bytes:
    """ListNodes without what each replica knows on its own (when it last heard from an
    agent, and so whether it calls the node stale): the rest must be equal everywhere."""
    copy = pb.ListNodesReply()
    copy.CopyFrom(reply)
    for info in copy.nodes:
        info.ClearField("contact_age_s")
        info.ClearField("state")
    return copy.SerializeToString(deterministic=True)


def test_mixed_workload_with_leader_kill_converges(cluster: LocalCluster):
    rng = random.Random(7)
    stop = threading.Event()
    errors: list[BaseException] = []
    acked: list[int] = []

    def worker(seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            i = r.choice(cluster.running() or [0])
            node = r.choice(WINDOW_FACTORY)
            op = r.choice(["drain", "undrain", "update", "register", "down", "rejoin"])
            stub = cluster.stub(i)
            try:
                if op == "drain":
                    reply = stub.Drain(pb.NodeRequest(node_id=node.node_id), timeout=3)
                elif op == "undrain":
                    reply = stub.Undrain(pb.NodeRequest(node_id=node.node_id), timeout=3)
                elif op == "rejoin" or op == "down":
                    reply = stub.Rejoin(pb.RejoinRequest(node_id=node.node_id), timeout=3)
                elif op == "update":
                    changed = pb.NodeSpec()
                    changed.CopyFrom(node)
                    changed.capacity = r.randint(1, 3)
                    reply = stub.UpdateSpec(pb.UpdateSpecRequest(spec=changed), timeout=3)
                else:
                    extra = spec(f"extra-{r.randint(0, 9)}", 7400, ("wood", 1))
                    reply = stub.Register(pb.RegisterRequest(spec=extra, from_agent=True),
                                          timeout=3)
                acked.append(reply.flow_version)
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.ALREADY_EXISTS,
                    grpc.StatusCode.CANCELLED,
                ):
                    errors.append(exc)
            except Exception as exc:  # a test bug must fail the test, not hang it
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(rng.random(),)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 30, timeout=30, what="30 acknowledged writes")
        leader = cluster.wait_for_leader()
        cluster.kill(leader)
        count = len(acked)
        wait_until(lambda: len(acked) >= count + 30, timeout=30, what="writes after the kill")
        cluster.restart(leader)
        count = len(acked)
        wait_until(lambda: len(acked) >= count + 20, timeout=30, what="writes after restart")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not errors, errors[:3]
    cluster.wait_converged()
    node_lists = [replicated_part(cluster.stub(i).ListNodes(pb.ListNodesRequest(), timeout=5))
                  for i in range(3)]
    assert len(set(node_lists)) == 1


def _snapshot(cluster: LocalCluster, i: int) -> tuple[str, int, bytes]:
    status = cluster.status(i)
    nodes = cluster.stub(i).ListNodes(pb.ListNodesRequest(), timeout=5)
    return status.state_digest, status.flow_version, replicated_part(nodes)


def test_full_stop_and_restart_restores_everything(cluster: LocalCluster):
    retry_unavailable(lambda: cluster.stub(0).Drain(pb.NodeRequest(node_id="glass-2"), timeout=5))
    cluster.wait_converged()
    before = _snapshot(cluster, 0)
    assert [cluster.terminate(i) for i in range(3)] == [0, 0, 0]  # SIGTERM: clean exit
    cluster.start()
    cluster.wait_for_leader(timeout=20)
    cluster.wait_converged()
    assert all(_snapshot(cluster, i) == before for i in range(3))


def test_sigkill_of_every_replica_loses_nothing(cluster: LocalCluster):
    reply = retry_unavailable(
        lambda: cluster.stub(1).Undrain(pb.NodeRequest(node_id="glass-2"), timeout=5)
    )
    cluster.wait_converged()
    before = _snapshot(cluster, 0)
    leader = cluster.wait_for_leader()
    terms = [cluster.status(i).term for i in range(3)]
    applied = [cluster.status(i).applied_index for i in range(3)]
    for i in range(3):
        cluster.kill(i)
    for i in range(3):
        entries, term, vote = read_journal(str(Path(cluster.data_dir(i)) / "raft.lmdb"))
        assert term == terms[i]  # the term survived SIGKILL ...
        assert entries and entries[-1][1] >= applied[i]  # ... and every applied entry
        if i == leader:
            assert vote == cluster.raft_addresses[i]  # ... and the vote (for itself)
    cluster.start()
    cluster.wait_for_leader(timeout=20)
    cluster.wait_converged()
    assert all(_snapshot(cluster, i) == before for i in range(3))
    assert before[1] == reply.flow_version


def test_membership_join_and_remove(cluster: LocalCluster):
    new = cluster.add_replica()  # started with --join
    raft_new = cluster.raft_addresses[new]
    # Plaintext Raft: the members refuse the join request from the network (test_raft_wire),
    # so the operator's AddMember adds it.
    retry_unavailable(lambda: cluster.stub(0).AddMember(
        pb.MemberRequest(raft_address=raft_new, grpc_address=cluster.grpc_addresses[new]),
        timeout=10))
    members = wait_until(
        lambda: [
            r
            for r in cluster.stub(0).ListMembers(pb.ClusterStatusRequest(), timeout=5).replicas
            if r.raft_address == raft_new and r.grpc_address == cluster.grpc_addresses[new]
        ],
        timeout=20,
        what="the joining replica to be a member with its gRPC address",
    )
    assert members
    digest = cluster.wait_converged()  # the new member caught up
    assert cluster.status(new).state_digest == digest
    follower_index = follower(cluster)
    reply = cluster.stub(follower_index).RemoveMember(
        pb.MemberRequest(raft_address=raft_new), timeout=10
    )
    assert raft_new not in {r.raft_address for r in reply.replicas}
    cluster.terminate(new)
    leader = cluster.wait_for_leader()
    left = {r.raft_address for r in cluster.status(leader).replicas}
    assert left == set(cluster.raft_addresses[:3])
    retry_unavailable(
        lambda: cluster.stub(leader).Drain(pb.NodeRequest(node_id="saw-1"), timeout=5)
    )
    cluster.wait_converged([0, 1, 2])
