"""The protocol's tables (fos_agent.protocol.transitions, machine.HANDLERS) say what the
handlers do: every event type has a handler, every listed move is legal, and under the
lossy, crashing model of fos_agent.testing no handler makes a move its event's row lacks."""

from __future__ import annotations

import typing

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from fos_agent.protocol.machine import HANDLERS
from fos_agent.protocol.messages import Effects, Event
from fos_agent.protocol.records import PutInbound, PutOutbound
from fos_agent.protocol.transitions import IN_NEXT, INBOUND_MOVES, OUT_NEXT, OUTBOUND_MOVES
from fos_agent.testing import Simulation
from fos_agent.testing.machine import FAULT_KINDS, BatchProtocolMachine


def test_every_event_type_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(typing.get_args(Event))


def test_every_listed_move_is_a_legal_transition() -> None:
    for event, moves in OUTBOUND_MOVES.items():
        for old, new in moves:
            assert new in OUT_NEXT[old], (event.__name__, old, new)
    for event, moves in INBOUND_MOVES.items():
        for old, new in moves:
            assert new in IN_NEXT[old], (event.__name__, old, new)


def test_every_legal_transition_is_made_by_some_event() -> None:
    made_out = set().union(*OUTBOUND_MOVES.values())
    made_in = set().union(*INBOUND_MOVES.values())
    assert made_out == {(old, new) for old, nexts in OUT_NEXT.items() for new in nexts}
    assert made_in == {(old, new) for old, nexts in IN_NEXT.items() for new in nexts}


class MoveCheckingSimulation(Simulation):
    """Checks each handled event's record moves against the tables. The old state of a
    record is the node's in-memory one before the event (memory runs ahead of the store by
    the steps not yet flushed), or the one an earlier write of the same group left."""

    def handle(self, node_id: str, event: Event) -> Effects:
        node = self.nodes[node_id].node
        out_before = {r.batch_id: r.state for r in node.outbound_records()}
        in_before = {r.batch_id: r.state for r in node.inbound_records()}
        effects = super().handle(node_id, event)
        name = type(event).__name__
        for write in effects.writes:
            if isinstance(write, PutOutbound):
                bid, new = write.record.batch_id, write.record.state
                move = (out_before.get(bid), new)
                assert move in OUTBOUND_MOVES.get(type(event), ()), f"{name}: out {bid} {move}"
                out_before[bid] = new
            elif isinstance(write, PutInbound):
                bid, new_in = write.record.batch_id, write.record.state
                move_in = (in_before.get(bid), new_in)
                assert move_in in INBOUND_MOVES.get(type(event), ()), (
                    f"{name}: in {bid} {move_in}")
                in_before[bid] = new_in
        return effects


class TablesHoldUnderFaults(BatchProtocolMachine):
    """The two-by-two factory with every fault, through the move-checking simulation."""

    @initialize(immediate_arrival=st.booleans(),
                faults=st.sets(st.sampled_from(FAULT_KINDS), min_size=1))
    def start(self, immediate_arrival: bool, faults: set[str]) -> None:
        super().start(immediate_arrival, faults)
        self.sim = MoveCheckingSimulation(type(self).topology_factory(immediate_arrival),
                                          type(self).stage)


TestTablesHoldUnderFaults = TablesHoldUnderFaults.TestCase
TestTablesHoldUnderFaults.settings = settings(max_examples=60, stateful_step_count=100,
                                              deadline=None)
