"""The failure detector's asyncio driver (fos_agent.runtime.detector), with scripted
neighbours and coordinator (short intervals, real clock): that it carries out the rules
(pings, reports and their retries, wake-ups, the stall pardon of a blocked loop). The
rules' own properties, in virtual time: test_rules_suspicion.py. The real peers and
coordinator: test_agent_peer.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from agent_util import eventually

from fos_agent.core.metrics import Metrics
from fos_agent.runtime.detector import DetectorSettings, FailureDetector

FAST = DetectorSettings(ping_interval=0.05, suspect_after=0.15, ping_timeout=0.05,
                        report_backoff=0.02)


class World:
    """Neighbours that answer or not, and a coordinator that is up or not."""

    def __init__(self) -> None:
        self.dead: set[str] = set()
        self.coordinator_up = True
        self.outcome = "MARKED_DOWN"
        self.pings: dict[str, int] = {}
        self.reports: list[str] = []
        self.detector: FailureDetector | None = None

    async def ping(self, node: str, timeout: float) -> None:
        self.pings[node] = self.pings.get(node, 0) + 1
        assert self.detector is not None
        self.detector.contact(node, node not in self.dead)  # what PeerClient does
        if node in self.dead:
            raise ConnectionError(node)

    async def report(self, suspect: str, reason: str) -> str:
        if not self.coordinator_up:
            raise ConnectionError("no leader")
        self.reports.append(suspect)
        return self.outcome


def make(world: World, settings: DetectorSettings = FAST
         ) -> tuple[FailureDetector, asyncio.Task[None]]:
    detector = FailureDetector("me", world.ping, world.report, Metrics("me"), settings)
    world.detector = detector
    return detector, asyncio.ensure_future(detector.run())


async def test_idle_links_are_pinged_and_a_dead_neighbour_is_reported_once():
    world = World()
    detector, task = make(world)
    try:
        detector.watch({"alive", "dead", "me"})
        assert detector.watched == {"alive", "dead"}
        await eventually(lambda: world.pings.get("alive", 0) >= 3, what="pings of idle link")
        world.dead.add("dead")
        await eventually(lambda: world.reports == ["dead"], what="report")
        assert ("dead", "MARKED_DOWN") in detector.outcomes
        pings = world.pings["dead"]
        await asyncio.sleep(0.3)  # absence check: a reported node is left alone
        assert world.reports == ["dead"] and world.pings["dead"] == pings
        assert "alive" not in world.reports
        assert detector.metrics["suspicions_reported"] == 1
        assert detector.metrics["heartbeats"] >= 3
        # the flow says it is back: watched again, fresh
        world.dead.discard("dead")
        detector.watch({"alive", "dead"})
        await eventually(lambda: world.pings["dead"] > pings, what="pinged again")
    finally:
        task.cancel()
        await detector.close()


async def test_reports_wait_for_the_coordinator_and_refuted_ones_come_back():
    world = World()
    world.coordinator_up = False
    world.outcome = "REFUTED"
    detector, task = make(world)
    try:
        detector.watch({"flaky"})
        world.dead.add("flaky")
        await asyncio.sleep(0.4)
        assert world.reports == []  # undeliverable, still pending
        world.coordinator_up = True
        await eventually(lambda: len(world.reports) >= 1, what="delivered after the outage")
        # refuted but still silent to us: reported again after another window
        await eventually(lambda: len(world.reports) >= 2, what="second report")
        # heard from again: no more reports
        world.dead.discard("flaky")
        await eventually(lambda: not detector.suspected(), what="contact again")
        count = len(world.reports)
        await asyncio.sleep(0.3)
        assert len(world.reports) == count
    finally:
        task.cancel()
        await detector.close()


async def test_a_stalled_agent_suspects_nobody_for_its_own_silence():
    world = World()
    detector, task = make(world, replace(FAST, stall_after=0.1))
    try:
        detector.watch({"n"})
        await eventually(lambda: world.pings.get("n", 0) >= 1, what="a ping")
        time.sleep(0.5)  # this agent's loop does not run (starved, stopped, blocked) ...
        detector.contact("n", False)  # ... so its calls in flight time out meanwhile
        detector.contact("n", False)
        await eventually(lambda: detector.metrics["detector_stalls"] == 1, what="stall seen")
        pings = world.pings["n"]
        await eventually(lambda: world.pings["n"] >= pings + 3, what="pinging on")
        assert world.reports == []  # n answers: the silence was ours
        world.dead.add("n")  # a real death afterwards is still found
        await eventually(lambda: world.reports == ["n"], what="report")
    finally:
        task.cancel()
        await detector.close()


async def test_an_idle_detector_sleeps_until_a_ping_is_due_and_a_failure_wakes_it():
    # issue 14: a tick every tick_s was an idle agent's most frequent wake-up
    world = World()
    settings = DetectorSettings(ping_interval=0.2, quiet_pings_every=10, tick_s=0.02,
                                max_sleep_s=1.0, suspect_after=0.15, ping_timeout=0.1)
    detector, task = make(world, settings)
    ticks: list[float] = []
    plain_tick = detector.tick
    detector.tick = lambda: (ticks.append(time.monotonic()), plain_tick())[1]  # type: ignore[method-assign]
    try:
        detector.watch({"quiet"})  # never carried a long-poll: pinged every 2 s
        await eventually(lambda: world.pings.get("quiet", 0) >= 1, what="first ping")
        ticks.clear()
        await asyncio.sleep(1.5)  # a window to count ticks in, not a synchronisation
        # a tick every 0.02 s would be 75; sleeping until due (at most 1 s) a handful
        assert len(ticks) <= 6, ticks
        assert world.reports == []
        # a failed contact wakes it at once: pings every tick and a report follow soon
        world.dead.add("quiet")
        failed_at = time.monotonic()
        detector.contact("quiet", False)
        await eventually(lambda: world.reports == ["quiet"], what="report")
        assert time.monotonic() - failed_at < 0.9  # not after the 1 s sleep planned
    finally:
        task.cancel()
        await detector.close()


async def test_a_link_failing_at_once_is_pinged_once_a_tick_not_in_a_loop():
    world = World()
    settings = DetectorSettings(ping_interval=0.2, tick_s=0.1, suspect_after=60.0,
                                ping_timeout=0.1)
    detector, task = make(world, settings)
    try:
        world.dead.add("gone")  # every ping fails at once (refused, address unknown)
        detector.watch({"gone"})
        await eventually(lambda: world.pings.get("gone", 0) >= 1, what="first ping")
        started, pings = time.monotonic(), world.pings["gone"]
        await asyncio.sleep(1.0)  # a window to count pings in, not a synchronisation
        ticks = (time.monotonic() - started) / settings.tick_s
        assert world.pings["gone"] - pings <= ticks + 2
    finally:
        task.cancel()
        await detector.close()
