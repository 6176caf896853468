"""The gateway's pure parts: the TOML mapping's validation (one-line errors naming the key
and line), the cycle state machine (done, reject, timeout, reconnect, crash recovery) and
the job store (a real LMDB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fos_agent.gateway.config import ConfigError, parse_config
from fos_agent.gateway.cycle import Action, CycleMachine, Event, Phase
from fos_agent.gateway.jobstore import JobStore

GOOD = """
[[stage]]
id = "press"
produces = { item = "part", qty = 1 }
requires = [{ item = "raw", qty = 1 }]
coordinators = ["127.0.0.1:7000"]
data_dir = "/tmp/x"

[stage.machine]
endpoint = "opc.tcp://127.0.0.1:4840/plc"
timeout_s = 5

[stage.machine.start]
write = [{ node = "ns=2;s=Job", value = "job" },
         { node = "0:Objects/2:Machine/2:Inputs", value = "input_ids" }]
method = "ns=2;s=Start"
object = "ns=2;s=Machine"

[stage.machine.done]
node = "ns=2;s=Done"
value = true
ok = "ns=2;s=Ok"
serial = "ns=2;s=Serial"
job = "ns=2;s=DoneJob"

[stage.machine.status]
flow_state = "ns=2;s=FlowState"
"""


def test_good_config_parses() -> None:
    (cfg,) = parse_config(GOOD)
    m = cfg.machine
    assert (cfg.node_id, cfg.produces_item, cfg.requires) == ("press", "part", (("raw", 1),))
    assert [w.source for w in m.start_writes] == ["job", "input_ids"]
    assert m.start_writes[1].node.browse_path == "0:Objects/2:Machine/2:Inputs"
    assert m.done is not None and m.done.node_id == "ns=2;s=Done"
    assert m.timeout_s == 5.0 and m.status_flow_state is not None


@pytest.mark.parametrize(("old", "new", "key"), [
    ('timeout_s = 5', 'timeout_s = "soon"', "stage[0].machine.timeout_s (line 11)"),
    ('node = "ns=2;s=Done"', 'node = "Done!!"', "stage[0].machine.done.node (line 20)"),
    ('endpoint = "opc.tcp', 'endpoint = "http', "stage[0].machine.endpoint (line 10)"),
    ('object = "ns=2;s=Machine"', '', "stage[0].machine.start.method (line 16)"),
    ('value = "job"', 'value = "jobb"', "stage[0].machine.start.write[0].value (line 14)"),
])
def test_bad_config_names_key_and_line(old: str, new: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace(old, new, 1))
    msg = str(err.value)
    assert msg.startswith(key) and "\n" not in msg, msg


def test_security_policy_needs_certificate() -> None:
    text = GOOD.replace("timeout_s = 5", 'timeout_s = 5\nsecurity_policy = "Basic256Sha256"')
    with pytest.raises(ConfigError, match=r"security_policy .*certificate"):
        parse_config(text)


def _running(m: CycleMachine, job: int = 7) -> None:
    m.handle(Event.RECONNECTED)
    steps = m.handle(Event.INPUTS, job=job, input_ids=["b1"])
    assert [s.action for s in steps] == [Action.PERSIST, Action.START]  # persist first


def test_done_emits_with_serial_and_reject_scraps() -> None:
    m = CycleMachine()
    _running(m)
    assert not m.takes_inputs
    steps = m.handle(Event.DONE, ok=True, serial="SN-1", machine_job=7)
    assert steps[0].action is Action.EMIT and steps[0].detail["attrs"] == {
        "machine_serial": "SN-1"}
    assert m.takes_inputs
    _running(m, 8)
    assert m.handle(Event.DONE, ok=False, serial="SN-2", machine_job=8)[0].action is Action.SCRAP


def test_stale_done_and_timeout() -> None:
    m = CycleMachine()
    _running(m)
    assert m.handle(Event.DONE, ok=True, machine_job=6) == []  # another job's done
    steps = m.handle(Event.TIMEOUT)
    assert [s.action for s in steps] == [Action.SCRAP, Action.FORGET]
    assert m.handle(Event.DONE, ok=True, machine_job=7) == []  # settled already


def test_disconnect_takes_no_inputs_and_reconnect_resumes() -> None:
    m = CycleMachine()
    _running(m)
    assert m.handle(Event.DISCONNECTED)[0].action is Action.NOT_SERVING
    with pytest.raises(RuntimeError):
        m.handle(Event.INPUTS, job=9, input_ids=["b"])
    # the machine has our job and is still working: wait, do not restart
    assert [s.action for s in m.handle(Event.RECONNECTED, machine_job=7,
                                       machine_done=False)] == [Action.SERVING]
    m.handle(Event.DISCONNECTED)
    # done while we were away: read the result instead of starting again
    assert [s.action for s in m.handle(Event.RECONNECTED, machine_job=7, machine_done=True)
            ] == [Action.SERVING, Action.READ_RESULT]


def test_crash_recovery_restarts_only_a_start_that_never_arrived() -> None:
    m = CycleMachine()
    m.handle(Event.RECOVERED, job=7, input_ids=["b1"])
    assert m.state.phase is Phase.RUNNING
    steps = m.handle(Event.RECONNECTED, machine_job=6, machine_done=True)
    assert [s.action for s in steps] == [Action.SERVING, Action.START]


def test_job_store_survives_reopen(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = store.begin(("b1", "b2"))
    store.close()
    store = JobStore(tmp_path)
    assert store.pending() == job
    with pytest.raises(RuntimeError):
        store.begin(("b3",))
    store.forget()
    assert store.pending() is None and store.begin(("b3",)).job == job.job + 1
    store.close()
