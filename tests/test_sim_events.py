"""Scenario files, event validation and the seeded Poisson fault schedule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.events import Action, ScenarioError, SimEvent, Timeline, plan_events
from bench.sim.procs import pack_nodes
from bench.sim.scenario import load_scenario, parse_scenario
from bench.sim.topology import generate_topology, throughput_bound

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = 100 * (50 if DEEP else 1)

WINDOWS = """
title = "windows"
[sim]
duration = 40
cycle_s = 0.5
seed = 3

[[node]]
id = "saw-1"
produces = { item = "wood", qty = 3 }
[[node]]
id = "saw-2"
produces = { item = "wood", qty = 3 }
[[node]]
id = "press-1"
produces = { item = "frame", qty = 1 }
requires = [{ item = "wood", qty = 3 }]
[[node]]
id = "press-2"
produces = { item = "frame", qty = 1 }
requires = [{ item = "wood", qty = 3 }]
"""


def scenario(events: str, head: str = WINDOWS):
    return parse_scenario(head + events, Path("/tmp/s.toml"))


def test_a_scenario_with_shares_of_the_duration_and_every_action():
    s = scenario("""
[[event]]
at = "25%"
action = "kill"
node = "saw-1"
[[event]]
at = 15
action = "restart"
node = "saw-1"
[[event]]
at = 16
action = "drain"
node = "press-2"
[[event]]
at = 18
action = "update-spec"
node = "press-1"
requires = [{ item = "wood", qty = 3 }, { item = "glue", qty = 1 }]
[[event]]
at = 19
action = "add-node"
node = "glue-1"
produces = { item = "glue", qty = 1 }
[[event]]
at = "50%"
action = "kill-leader"
[[event]]
at = "60%"
action = "restart-replica"
[[event]]
at = 30
action = "undrain"
node = "press-2"
""")
    assert s.title == "windows"
    assert s.settings == {"duration": 40.0, "cycle_s": 0.5, "seed": 3}
    assert [n.node_id for n in s.nodes] == ["saw-1", "saw-2", "press-1", "press-2"]
    events = s.resolve_events(20.0, s.nodes)
    assert [(e.at_s, e.action) for e in events] == [
        (5.0, Action.KILL),
        (10.0, Action.KILL_LEADER),
        (12.0, Action.RESTART_REPLICA),
        (15, Action.RESTART),
        (16, Action.DRAIN),
        (18, Action.UPDATE_SPEC),
        (19, Action.ADD_NODE),
        (30, Action.UNDRAIN),
    ]
    update = events[5].spec
    assert update.produces.item == "frame" and update.required_items == {"wood", "glue"}
    schedule = plan_events(s.nodes, 40.0, events)
    assert len(schedule.events) == len(events)


@pytest.mark.parametrize(
    "events,message",
    [
        ('[[event]]\nat = 1\naction = "explode"\nnode = "saw-1"', "unknown action 'explode'"),
        ('[[event]]\nat = 1\naction = "kill"', 'needs node = "<id>"'),
        ('[[event]]\nat = "150%"\naction = "kill"\nnode = "saw-1"', "share 0%..100%"),
        ('[[event]]\nat = -1\naction = "kill"\nnode = "saw-1"', "seconds >= 0"),
        ('[[event]]\nat = 1\naction = "kill"\nnode = "saw-1"\ncolour = 1', "unknown keys"),
        ('[[event]]\nat = 1\naction = "kill-leader"\nnode = "saw-1"', "takes no node"),
        ('[[event]]\nat = 1\naction = "kill"\nnode = "saw-1"\nrequires = []', "only go with"),
        ('[[event]]\nat = 1\naction = "update-spec"\nnode = "saw-1"', "needs produces"),
        ('[[event]]\nat = 1\naction = "add-node"\nnode = "x"', "needs produces"),
        (
            '[[event]]\nat = 1\naction = "add-node"\nnode = "x"\nproduces = {item="a", qty=0}',
            "positive integer",
        ),
        ("[sim]\ncolour = 1", "unknown key 'colour'"),
        ('[[node]]\nid = "saw-1"\nproduces = { item = "wood", qty = 3 }',
         "duplicate node id 'saw-1'"),
        ("[[event]]\nat = ", "not valid TOML"),
        (
            '[[node]]\nid = "saw-3"\nproduces = { item = "wood", qty = 3 }\n'
            'requires = [{ item = "frame", qty = 1 }]',
            "cycle",
        ),
    ],
)
def test_bad_scenarios_are_refused_with_a_clear_message(events, message):
    head = "" if events.startswith("[sim]") else WINDOWS
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace("[", r"\[")):
        s = scenario(events, head)
        plan_events(s.nodes, 40.0, s.resolve_events(40.0, s.nodes))


@pytest.mark.parametrize(
    "events,message",
    [
        ('[[event]]\nat = 1\naction = "kill"\nnode = "nope"', "unknown node 'nope'"),
        ('[[event]]\nat = 1\naction = "restart"\nnode = "saw-1"', "is not dead"),
        ('[[event]]\nat = 1\naction = "undrain"\nnode = "saw-1"', "is not drained"),
        ('[[event]]\nat = 1\naction = "restart-replica"', "no coordinator replica is down"),
        (
            '[[event]]\nat = 1\naction = "kill"\nnode = "saw-1"\n'
            '[[event]]\nat = 2\naction = "kill"\nnode = "saw-2"',
            "no live supplier of wood",
        ),
        (
            '[[event]]\nat = 1\naction = "kill"\nnode = "saw-1"\n'
            '[[event]]\nat = 2\naction = "kill"\nnode = "saw-1"',
            "already dead",
        ),
        (
            '[[event]]\nat = 1\naction = "drain"\nnode = "press-1"\n'
            '[[event]]\nat = 2\naction = "kill"\nnode = "press-2"',
            "no live supplier of frame",
        ),
        (
            '[[event]]\nat = 1\naction = "kill-leader"\n[[event]]\nat = 2\naction = "kill-leader"',
            "loses the majority",
        ),
        (
            '[[event]]\nat = 1\naction = "add-node"\nnode = "saw-2"\n'
            'produces = { item = "wood", qty = 3 }',
            "already in the catalog",
        ),
        ('[[event]]\nat = 1\naction = "update-spec"\nnode = "x"\ncapacity = 2', "unknown node 'x'"),
    ],
)
def test_impossible_event_sequences_are_refused(events, message):
    s = scenario(events)
    with pytest.raises(ScenarioError, match=message):
        plan_events(s.nodes, 40.0, s.resolve_events(40.0, s.nodes))


def test_unviable_kills_are_allowed_when_asked():
    s = scenario(
        '[[event]]\nat = 1\naction = "kill"\nnode = "saw-1"\n'
        '[[event]]\nat = 2\naction = "kill"\nnode = "saw-2"'
    )
    sched = plan_events(s.nodes, 40.0, s.resolve_events(40.0, s.nodes), allow_unviable=True)
    assert [e.node for e in sched.events] == ["saw-1", "saw-2"]


def test_catalog_file_next_to_the_scenario(tmp_path):
    nodes = WINDOWS.split("[[node]]", 1)[1].join(["[[node]]", ""])
    (tmp_path / "bare.toml").write_text(nodes)  # a catalog may leave addresses to the agents
    (tmp_path / "s.toml").write_text('[sim]\ncatalog = "bare.toml"\n')
    assert load_scenario(tmp_path / "s.toml").nodes[0].node_id == "saw-1"
    (tmp_path / "bad.toml").write_text(nodes.replace("[[node]]", "[[node]]\nspeed = 1", 1))
    (tmp_path / "s.toml").write_text('[sim]\ncatalog = "bad.toml"\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml:2: .*unknown key 'speed'"):
        load_scenario(tmp_path / "s.toml")
    ports = iter(range(7201, 7300))
    addressed = "".join(
        f'{line}address = "127.0.0.1:{next(ports)}"\n' if line.startswith("id =") else line
        for line in nodes.splitlines(keepends=True)
    )
    (tmp_path / "cat.toml").write_text(addressed)
    (tmp_path / "s.toml").write_text('[sim]\ncatalog = "cat.toml"\nduration = 5\n')
    s = load_scenario(tmp_path / "s.toml")
    assert s.nodes[0].node_id == "saw-1" and s.settings == {"duration": 5.0}
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenario(tmp_path / "missing.toml")
    (tmp_path / "s.toml").write_text('[sim]\ncatalog = "cat.toml"\ntypes = 3\n')
    with pytest.raises(ScenarioError, match="generate a catalog"):
        load_scenario(tmp_path / "s.toml")


def test_examples_demo_scenario_is_valid():
    path = Path(__file__).resolve().parent.parent / "examples" / "demo.toml"
    if not path.exists():
        pytest.fail("examples/demo.toml is missing")
    s = load_scenario(path)
    for duration in (20.0, 60.0):
        events = s.resolve_events(duration, s.nodes)
        actions = {e.action for e in plan_events(s.nodes, duration, events).events}
        assert {Action.KILL, Action.RESTART, Action.KILL_LEADER} <= actions


@settings(max_examples=EXAMPLES)
@given(
    types=st.integers(1, 12),
    per_type=st.integers(1, 3),
    seed=st.integers(0, 1000),
    failure_rate=st.floats(0, 30),
    recover_rate=st.floats(0, 30),
    allow_unviable=st.booleans(),
)
def test_poisson_schedule_is_seeded_and_keeps_the_chain_viable(
    types, per_type, seed, failure_rate, recover_rate, allow_unviable
):
    topo = generate_topology(types, per_type, seed)
    kwargs = dict(
        failure_rate=failure_rate,
        recover_rate=recover_rate,
        coordinator_kill_every=7.0,
        seed=seed,
        allow_unviable=allow_unviable,
    )
    sched = plan_events(topo.specs, 60.0, **kwargs)
    assert sched == plan_events(topo.specs, 60.0, **kwargs)
    timeline = Timeline.of(topo.specs, allow_unviable=True)
    times = [e.at_s for e in sched.events]
    assert times == sorted(times) and all(0 <= t < 60 for t in times)
    for event in sched.events:
        timeline.apply(event)
        assert timeline.dead_replicas <= 1
        if not allow_unviable:
            assert timeline.starved_items(timeline.active()) == []
    if not allow_unviable:  # every item supplied, so the chain can still make products
        assert throughput_bound(topo.specs, 1.0, active=timeline.active()).per_s > 0
    leader_kills = [e for e in sched.events if e.action is Action.KILL_LEADER]
    assert len(leader_kills) == 8  # t = 7, 14, ..., 56


def test_poisson_rates_roughly_match_and_restarts_follow_kills():
    topo = generate_topology(10, 3, 1)
    sched = plan_events(topo.specs, 600.0, failure_rate=2.0, recover_rate=2.0, seed=5)
    kills = [e for e in sched.events if e.action is Action.KILL]
    restarts = [e for e in sched.events if e.action is Action.RESTART]
    assert 10 <= len(kills) + sched.skipped_kills <= 40  # ~20 expected in 10 minutes
    killed_at = {}
    for e in sched.events:
        if e.action is Action.KILL:
            killed_at[e.node] = e.at_s
        elif e.action is Action.RESTART:
            assert killed_at.pop(e.node) < e.at_s
    assert restarts and all(e.origin == "rate" for e in kills + restarts)
    assert plan_events(topo.specs, 600.0, failure_rate=2.0, seed=6).events != sched.events


def test_scripted_nodes_are_left_alone_by_random_kills():
    topo = generate_topology(4, 2, 2)
    script = [SimEvent(30.0, Action.KILL, "t00-s1")]
    sched = plan_events(topo.specs, 120.0, script, failure_rate=30, recover_rate=30, seed=1)
    assert [e for e in sched.events if e.node == "t00-s1"] == script


def test_bad_rates_are_refused():
    topo = generate_topology(2, 2, 2)
    with pytest.raises(ScenarioError, match="--failure-rate"):
        plan_events(topo.specs, 10.0, failure_rate=-1)


@settings(max_examples=EXAMPLES // 2)
@given(
    types=st.integers(2, 10),
    per_type=st.integers(1, 3),
    per_host=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_packed_agents_are_killed_and_restarted_as_whole_processes(types, per_type, per_host, seed):
    topo = generate_topology(types, per_type, seed)
    groups = pack_nodes(topo.specs, per_host)
    sched = plan_events(
        topo.specs, 120.0, failure_rate=20, recover_rate=20, seed=seed, groups=groups
    )
    timeline = Timeline.of(topo.specs, groups=groups)
    host_of = {n: g for g in groups for n in g}
    for event in sched.events:
        dead_before = set(timeline.dead)
        timeline.apply(event)  # raises if a kill starves an item
        changed = dead_before ^ timeline.dead
        assert changed == set(host_of[event.node])  # the whole process, nothing else
        assert timeline.starved_items(timeline.active()) == []
    # a scripted kill of one packed node takes its host-mates too
    if len(groups[0]) > 1:
        timeline = Timeline.of(topo.specs, allow_unviable=True, groups=groups)
        timeline.apply(SimEvent(1.0, Action.KILL, groups[0][-1]))
        assert timeline.dead == set(groups[0])
