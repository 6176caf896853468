"""The failure detector's rules (fos_agent.rules.suspicion, pure) driven in virtual time
by a minimal driver: the properties the real-clock tests of test_agent_detector.py check,
with explicit ``now`` and exact bounds. The asyncio driver itself: test_agent_detector.py."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fos_agent.rules.suspicion import (
    DetectorSettings,
    Ping,
    Report,
    Suspicion,
    refuted_pause,
    report_retry_after,
)

FAST = DetectorSettings(ping_interval=0.05, suspect_after=0.15, ping_timeout=0.05,
                        report_backoff=0.02, refuted_backoff=0.5, refuted_backoff_max=2.0)


@dataclass
class World:
    """Neighbours that answer or not, a coordinator that answers ``outcome`` or is down,
    and virtual time. ``run`` is the driver loop of the suspicion module's contract, each
    ping and report answered at once."""

    rules: Suspicion
    now: float = 0.0
    dead: set[str] = field(default_factory=set)
    coordinator_up: bool = True
    outcome: str = "MARKED_DOWN"
    pings: dict[str, int] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)
    stalls: int = 0
    pending: list[Report] = field(default_factory=list)  # undelivered reports

    def contact(self, node: str, ok: bool) -> bool:
        if not ok and node in self.rules.watched and self.rules.stall(self.now) is not None:
            self.stalls += 1
        return self.rules.contact(node, ok, self.now)

    def step(self, delay: float | None = None) -> None:
        """Sleep until the planned wake-up (or ``delay``, earlier), then one tick."""
        planned = self.rules.next_tick_in(self.now)
        self.now += planned if delay is None else delay
        if self.rules.stall(self.now) is not None:
            self.stalls += 1
        self.ticks.append(self.now)
        for action in self.rules.tick(self.now):
            if isinstance(action, Ping):
                self.pings[action.node] = self.pings.get(action.node, 0) + 1
                self.contact(action.node, action.node not in self.dead)
                self.rules.ping_done(action)
            else:
                self.pending.append(action)
        for report in list(self.pending):
            if not self.rules.report_wanted(report):
                self.pending.remove(report)
                self.rules.report_done(report, None, self.now)
            elif self.coordinator_up:
                self.pending.remove(report)
                self.reports.append(report.node)
                self.rules.report_done(report, self.outcome, self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.step()


def world(settings: DetectorSettings = FAST) -> World:
    return World(Suspicion("me", settings))


def test_idle_links_are_pinged_and_a_dead_neighbour_is_reported_once():
    w = world()
    w.rules.watch({"alive", "dead", "me"}, w.now)
    assert w.rules.watched == {"alive", "dead"}
    w.run(1.0)  # quiet links: a ping every quiet_pings_every x ping_interval
    assert w.pings["alive"] == w.pings["dead"] == 2
    w.dead.add("dead")
    w.run(1.0)
    assert w.reports == ["dead"]
    pings = w.pings["dead"]
    w.run(1.0)  # a reported node is left alone
    assert w.reports == ["dead"] and w.pings["dead"] == pings
    w.dead.discard("dead")
    w.rules.watch({"alive", "dead"}, w.now)  # the flow says it is back: watched, fresh
    w.run(1.0)
    assert w.pings["dead"] > pings and w.reports == ["dead"]


def test_a_dead_neighbour_is_reported_once_suspect_after_has_passed_after_two_failures():
    w = world()
    w.rules.watch({"n"}, w.now)
    w.dead.add("n")
    w.contact("n", False)  # its long-poll failed at once
    failed_at = w.now
    while not w.reports:
        w.step()
    assert w.pings["n"] >= 1  # the second failure comes from our own ping
    assert FAST.suspect_after <= w.now - failed_at <= FAST.suspect_after + FAST.period


def test_traffic_is_a_heartbeat_and_one_failure_is_not_a_suspicion():
    w = world(DetectorSettings(ping_interval=0.5, suspect_after=0.15))
    w.rules.watch({"busy"}, w.now)
    for _ in range(10):  # a trading link: contacts, no pings needed
        w.contact("busy", True)
        w.step(0.02)
    assert w.pings.get("busy", 0) == 0
    w.contact("busy", False)  # one slow answer, then an answer
    w.contact("busy", True)
    w.run(0.3)
    assert w.reports == [] and not w.rules.suspected()


def test_an_open_long_poll_is_a_heartbeat_and_quiet_links_are_pinged_less():
    w = world(replace(FAST, quiet_pings_every=4))
    w.rules.watch({"held", "quiet"}, w.now)
    w.rules.hold("held", True, w.now)
    w.run(2.0)
    assert w.pings.get("held", 0) == 0
    # every 4 x ping_interval (10 in 2 s), not every ping_interval (40)
    assert 9 <= w.pings["quiet"] <= 2.0 / (4 * FAST.ping_interval)
    w.dead.add("held")  # the held call fails: failed contact, pings, a report
    w.rules.hold("held", False, w.now)
    assert w.contact("held", False)  # failing from now: wake the driver
    w.run(0.5)
    assert w.reports == ["held"] and w.pings["held"] >= 1


def test_a_link_whose_long_poll_ended_is_pinged_at_the_ping_interval():
    w = world()
    w.rules.watch({"n"}, w.now)
    w.rules.hold("n", True, w.now)
    w.step(0.5)
    w.rules.next_tick_in(w.now)  # the driver plans a long sleep ...
    assert w.rules.hold("n", False, w.now)  # ... the end of the long-poll cuts it short
    assert w.rules.next_tick_in(w.now) == pytest.approx(FAST.ping_interval)


def test_reports_wait_for_the_coordinator_and_refuted_ones_come_back():
    w = world()
    w.coordinator_up = False
    w.outcome = "REFUTED"
    w.rules.watch({"flaky"}, w.now)
    w.dead.add("flaky")
    w.run(1.0)
    assert w.reports == [] and len(w.pending) == 1  # undeliverable, still pending
    w.coordinator_up = True
    w.step()
    assert w.reports == ["flaky"]
    w.run(FAST.refuted_backoff - FAST.period)  # refuted, still silent: backed off
    assert len(w.reports) == 1 and list(w.rules.links_down()) == ["flaky"]
    w.run(FAST.suspect_after + 2 * FAST.period)  # ... then again
    assert len(w.reports) == 2
    w.dead.discard("flaky")  # heard from again: no more reports
    w.run(0.3)
    assert not w.rules.suspected()
    count = len(w.reports)
    w.run(1.0)
    assert len(w.reports) == count


def test_a_report_heard_from_before_delivery_is_dropped():
    w = world()
    w.coordinator_up = False
    w.rules.watch({"n"}, w.now)
    w.dead.add("n")
    w.run(1.0)
    assert len(w.pending) == 1
    w.dead.discard("n")
    w.contact("n", True)
    w.coordinator_up = True
    w.step()
    assert w.reports == [] and w.pending == []


def test_a_stalled_agent_suspects_nobody_for_its_own_silence():
    w = world(replace(FAST, stall_after=0.1))
    w.rules.watch({"n"}, w.now)
    w.run(0.3)
    # this agent's loop does not run (starved, stopped, blocked) ...
    w.now += w.rules.next_tick_in(w.now) + 0.5
    w.contact("n", False)  # ... so its calls in flight time out meanwhile
    w.contact("n", False)
    assert w.stalls == 1 and not w.rules.suspected()
    w.run(1.0)
    assert w.reports == []  # n answers: the silence was ours
    w.dead.add("n")  # a real death afterwards is still found
    w.run(1.0)
    assert w.reports == ["n"]


def test_only_one_stall_per_gap_is_pardoned():
    w = world(replace(FAST, stall_after=0.1, stall_forgive_gap=60.0))
    w.rules.watch({"n"}, w.now)
    w.run(0.3)
    for _ in range(2):  # starved twice within the gap: the second stall is not pardoned
        w.step(0.5 + w.rules.next_tick_in(w.now))
        w.run(0.3)
    assert w.stalls == 1


def test_an_idle_detector_sleeps_until_a_ping_is_due_and_a_failure_wakes_it():
    settings = DetectorSettings(ping_interval=0.2, quiet_pings_every=10, tick_s=0.02,
                                max_sleep_s=1.0, suspect_after=0.15, ping_timeout=0.1)
    w = world(settings)
    w.rules.watch({"quiet"}, w.now)
    w.run(0.1)
    w.ticks.clear()
    w.run(4.0)
    # one tick a max_sleep_s (pings every 2 s fall on them), not one every tick_s
    assert len(w.ticks) == 4 and w.reports == []
    w.dead.add("quiet")
    assert w.contact("quiet", False)  # wakes the driver: ticks every period from now
    failed_at = w.now
    while not w.reports:
        w.step()
    assert w.now - failed_at <= settings.suspect_after + settings.period


def test_a_link_failing_at_once_is_pinged_once_a_tick_not_in_a_loop():
    settings = DetectorSettings(ping_interval=0.2, tick_s=0.1, suspect_after=60.0,
                                ping_timeout=0.1)
    w = world(settings)
    w.dead.add("gone")
    w.rules.watch({"gone"}, w.now)
    w.run(1.0)
    assert w.pings["gone"] <= 1.0 / settings.period + 1


def test_a_ping_in_flight_is_not_asked_for_again():
    w = world()
    w.rules.watch({"n"}, w.now)
    w.contact("n", False)
    (ping,) = [a for a in w.rules.tick(w.now) if isinstance(a, Ping)]
    assert not [a for a in w.rules.tick(w.now + 1) if isinstance(a, Ping)]
    w.rules.ping_done(ping)
    assert [a for a in w.rules.tick(w.now + 1) if isinstance(a, Ping)]


def test_pings_are_believed_only_from_a_proven_incarnation_on_a_healthy_link():
    rules = Suspicion("me", FAST)
    rules.watch({"n"}, 0.0)
    assert not rules.believe("n", 1)  # unproven
    rules.proven("n", 3)
    assert rules.believe("n", 3) and not rules.believe("n", 4) and not rules.believe("x", 3)
    rules.contact("n", False, 1.0)
    assert not rules.believe("n", 3)  # failing: our own pings decide


def test_report_pauses_double_up_to_two_seconds():
    pauses = [report_retry_after(FAST, None)]
    for _ in range(8):
        pauses.append(report_retry_after(FAST, pauses[-1]))
    assert pauses[:3] == [0.02, 0.04, 0.08] and pauses[-1] == 2.0


@given(st.lists(st.tuples(st.sampled_from(["ok", "fail", "tick"]), st.floats(0, 0.3)),
                max_size=60))
def test_a_report_comes_only_after_enough_failures_and_silence(
        ops: list[tuple[str, float]]):
    rules = Suspicion("me", FAST)
    rules.watch({"n"}, 0.0)
    now, last_ok, failed = 0.0, 0.0, 0
    for op, gap in ops:
        now += gap
        if op == "ok":
            rules.contact("n", True, now)
            last_ok, failed = now, 0
        elif op == "fail":
            rules.contact("n", False, now)
            failed += 1
        else:
            for action in rules.tick(now):
                if isinstance(action, Report):
                    assert failed >= FAST.failures
                    assert now - last_ok >= FAST.suspect_after
                    rules.report_done(action, None, now)
                else:
                    rules.ping_done(action)
        assert rules.suspected() == ({"n"} if failed else set())


def test_refuted_pauses_double_up_to_the_maximum():
    s = DetectorSettings()
    assert [refuted_pause(s, n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 120, 120, 120]
    assert refuted_pause(s, 10_000) == 120


def test_a_cut_link_to_a_live_neighbour_is_reported_with_backoff_and_shown_down():
    w = world()
    w.outcome = "REFUTED"
    w.rules.watch({"cut", "fine"}, w.now)
    w.run(0.2)
    w.dead.add("cut")  # the coordinator reaches it; we do not
    cut_at = w.now
    w.run(30.0)
    # without the backoff one report per suspect_after window: about 150 of them
    reports = w.reports.count("cut")
    assert 2 + 30 // 2 - 2 <= reports <= 2 + 30 // 2  # first one, then every 2 s at most
    times = w.rules.links_down()
    quiet = FAST.ping_interval * FAST.quiet_pings_every  # an idle link's ping period
    assert list(times) == ["cut"] and cut_at <= times["cut"] <= cut_at + quiet + FAST.period
    assert "fine" not in w.reports
    w.dead.discard("cut")  # healed: the first contact ends it, no more reports
    w.run(FAST.period * 3)
    assert w.rules.links_down() == {}
    count = len(w.reports)
    w.run(5.0)
    assert len(w.reports) == count


def test_backoff_starts_over_after_a_heal():
    w = world()
    w.outcome = "REFUTED"
    w.rules.watch({"cut"}, w.now)
    w.dead.add("cut")
    w.run(5.0)  # reports at ~0.65, +0.5, +1, +2: the pause has grown to its maximum
    assert len(w.reports) == 4
    w.dead.discard("cut")
    w.run(0.5)
    w.dead.add("cut")
    quiet = FAST.ping_interval * FAST.quiet_pings_every  # an idle link's ping period
    w.run(quiet + FAST.suspect_after + FAST.refuted_backoff + 3 * FAST.period)
    assert len(w.reports) == 6  # a new fault: reported at once, again after the first pause


def test_a_suspect_heard_from_before_its_refutation_is_not_backed_off():
    rules = Suspicion("me", FAST)
    rules.watch({"n"}, 0.0)
    rules.contact("n", False, 0.1)
    rules.contact("n", False, 0.2)
    [report] = [a for a in rules.tick(0.3) if isinstance(a, Report)]
    rules.contact("n", True, 0.35)  # answered before the coordinator's verdict came
    rules.report_done(report, "REFUTED", 0.4)
    assert rules.links_down() == {}
    rules.contact("n", False, 0.5)
    rules.contact("n", False, 0.6)
    assert any(isinstance(a, Report) for a in rules.tick(0.5 + FAST.suspect_after))
