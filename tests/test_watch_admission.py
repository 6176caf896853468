"""WatchHub admission (fos_raft.api.watch): limits per replica and per peer, leader shedding,
and where the redirect points. A stand-in replica: only the fields admission reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from fos_raft.api.watch import WatchHub, WatchLimits
from fos_raft.state.core import CoordinatorState

ME, OTHER, THIRD = "10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"
GRPC = {ME: "10.0.0.1:50051", OTHER: "10.0.0.2:50051", THIRD: "10.0.0.3:50051"}


@dataclass
class StandIn:
    leader: str = OTHER
    connected: dict[str, bool] = field(default_factory=lambda: {OTHER: True, THIRD: True})
    raft_address: str = ME
    grpc_address: str = GRPC[ME]
    state_listeners: list[object] = field(default_factory=list)
    published_state: CoordinatorState = field(
        default_factory=lambda: CoordinatorState(replicas=dict(GRPC)))

    @property
    def state(self) -> CoordinatorState:
        return self.published_state

    @property
    def is_leader(self) -> bool:
        return self.leader == ME

    def members(self) -> list[tuple[str, bool]]:
        return sorted([(ME, True), *self.connected.items()])


def hub(limits: WatchLimits, **replica: object) -> WatchHub:
    return WatchHub(StandIn(**replica), limits)  # type: ignore[arg-type]


def test_over_the_replica_limit_is_refused_with_a_redirect_to_a_follower() -> None:
    h = hub(WatchLimits(max_streams=2, max_per_peer=0, leader_streams=0))
    assert h.refusal("n1", "127.0.0.1") is None
    h.total = 2
    code, message, redirect = h.refusal("n1", "127.0.0.1") or (None, "", "")
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 2" in message
    assert redirect == GRPC[THIRD]  # not this replica, not the leader (OTHER)


def test_over_the_peer_limit_only_that_peer_is_refused() -> None:
    h = hub(WatchLimits(max_streams=0, max_per_peer=3, leader_streams=0))
    h.per_peer["10.1.1.1"] = 3
    refused = h.refusal("n1", "10.1.1.1")
    assert refused is not None and refused[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10.1.1.1" in refused[1]
    assert h.refusal("n1", "10.1.1.2") is None


def test_a_leader_sheds_to_followers_spread_by_node_and_only_with_one_connected() -> None:
    h = hub(WatchLimits(max_streams=0, max_per_peer=0, leader_streams=1), leader=ME)
    assert h.refusal("n1", "p") is None  # under its share
    h.total = 1
    targets = set()
    for node in (f"node-{i}" for i in range(40)):
        refused = h.refusal(node, "p")
        assert refused is not None and refused[0] is grpc.StatusCode.UNAVAILABLE
        targets.add(refused[2])
    assert targets == {GRPC[OTHER], GRPC[THIRD]}
    # no follower connected: the leader serves the watch itself rather than send it nowhere
    lonely = hub(WatchLimits(max_streams=0, max_per_peer=0, leader_streams=1), leader=ME,
                 connected={OTHER: False, THIRD: False})
    lonely.total = 5
    assert lonely.refusal("n1", "p") is None
