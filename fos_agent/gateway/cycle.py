"""What the gateway does with one stage's cycle, as a pure state machine.

The I/O side feeds it events (inputs held, done seen, timeout, link lost/back, the job
found in the store after a restart) and carries out the actions it returns in order. The
job is persisted before the machine is told to start, and the machine's job number decides
after a crash or a reconnect whether the start reached it: a machine showing our job as
done is read, not restarted; one showing another job is started again (same job number,
so a start that did arrive is not a second part).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any


class Phase(enum.Enum):
    IDLE = "idle"        # no job; takes inputs when connected
    RUNNING = "running"  # job persisted, start sent (or to be resent), waiting for done


class Event(enum.Enum):
    INPUTS = "inputs"
    DONE = "done"
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    RECOVERED = "recovered"


class Action(enum.Enum):
    PERSIST = "persist"          # write (job, input ids) durably
    START = "start"              # write the start variables / call the start method
    READ_RESULT = "read_result"  # read ok flag + serial (done already showing our job)
    EMIT = "emit"                # agent.emit(inputs, attrs={serial})
    SCRAP = "scrap"              # agent.scrap(inputs, reason)
    FORGET = "forget"            # delete the persisted job
    NOT_SERVING = "not_serving"  # health NOT_SERVING, take no new inputs
    SERVING = "serving"


@dataclass(frozen=True)
class Step:
    action: Action
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CycleState:
    phase: Phase = Phase.IDLE
    job: int | None = None
    input_ids: tuple[str, ...] = ()
    connected: bool = False


class CycleMachine:
    """Holds a CycleState; ``handle`` returns the steps for an event."""

    def __init__(self, state: CycleState | None = None) -> None:
        self.state = state or CycleState()

    @property
    def takes_inputs(self) -> bool:
        return self.state.connected and self.state.phase is Phase.IDLE

    def handle(self, event: Event, **kw: Any) -> list[Step]:
        s = self.state
        if event is Event.INPUTS:
            if not self.takes_inputs:
                raise RuntimeError(f"inputs while {s.phase.value}, connected={s.connected}")
            self.state = replace(s, phase=Phase.RUNNING, job=int(kw["job"]),
                                 input_ids=tuple(kw["input_ids"]))
            return [Step(Action.PERSIST), Step(Action.START)]
        if event is Event.RECOVERED:
            self.state = replace(s, phase=Phase.RUNNING, job=int(kw["job"]),
                                 input_ids=tuple(kw["input_ids"]))
            return []  # decided on (re)connect, when the machine's state can be read
        if event is Event.DISCONNECTED:
            self.state = replace(s, connected=False)
            return [Step(Action.NOT_SERVING)]
        if event is Event.RECONNECTED:
            self.state = replace(s, connected=True)
            steps = [Step(Action.SERVING)]
            if s.phase is Phase.RUNNING:
                steps += self._resume(kw.get("machine_job"), bool(kw.get("machine_done")))
            return steps
        if event is Event.DONE:
            if s.phase is not Phase.RUNNING:
                return []  # a done edge left over from a cycle already settled
            seen = kw.get("machine_job")
            if seen is not None and seen != s.job:
                return []  # another job's done (a stale value after reconnect)
            return self._settle(bool(kw.get("ok", True)), kw.get("serial"))
        if event is Event.TIMEOUT:
            if s.phase is not Phase.RUNNING:
                return []
            return self._finish(Step(Action.SCRAP, {"reason": "machine cycle timeout"}))
        raise ValueError(event)

    def _resume(self, machine_job: Any, machine_done: bool) -> list[Step]:
        if machine_job == self.state.job:
            # the start reached the machine: read its result if done, else keep waiting
            return [Step(Action.READ_RESULT)] if machine_done else []
        return [Step(Action.START)]

    def _settle(self, ok: bool, serial: Any) -> list[Step]:
        attrs = {"machine_serial": str(serial)} if serial not in (None, "") else {}
        if ok:
            return self._finish(Step(Action.EMIT, {"attrs": attrs}))
        return self._finish(Step(Action.SCRAP, {"reason": "rejected by machine", **attrs}))

    def _finish(self, step: Step) -> list[Step]:
        self.state = replace(self.state, phase=Phase.IDLE, job=None, input_ids=())
        return [step, Step(Action.FORGET)]
