"""An agent's tuning knobs (`AgentSettings`), apart from the facade so that every part of
the runtime can read them without importing the facade."""

from __future__ import annotations

from dataclasses import dataclass, field

from fos_agent.rules.fetch import FetchSettings
from fos_agent.rules.suspicion import DetectorSettings


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Tuning knobs; the defaults suit a factory stage cycling about once a second."""

    fetch: FetchSettings = field(default_factory=FetchSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    output_cap: int = 1  # unsold QUEUED outputs before the stage pauses (not for sinks)
    retry_s: float = 1.0  # re-offer an IN_TRANSIT batch after this long (then backoff)
    rpc_timeout: float = 2.0  # peer RPC deadline (plus wait_ms for long-polls)
    group_commit: bool = True  # False: one synced transaction per step (the naive design)
    immediate_arrival: bool = True  # goods arrive with the message (else agent.arrived())
    coordinator_timeout: float = 5.0  # one coordinator call, failover included
    start_timeout: float = 30.0  # registering at start, when no saved flow exists
    start_file: str | None = None  # the simulated stage waits for this file to exist
    reclaim_check_s: float = 2.0  # ask about consumers owed goods that left the flow
    compact_s: float = 5.0  # move settled records out of the WAL's live state this often
    lineage_retention_days: float = 3650.0  # genealogy index entries older than this go
    lineage_index: bool = True  # False: no genealogy index, no compaction (comparisons)
    # a plaintext DeliveryConfirmed is a hint, settled by the consumer's own answer to an
    # offer (docs/protocol.md, Validation): None = without TLS; False trusts confirmations
    # on a network where no one forges them (one OfferBatch fewer per trade)
    verify_confirmations: bool | None = None
    # the agent's networking runs on its own loop in a background thread, so user code
    # that blocks the caller's loop cannot silence it (False: share the caller's loop)
    private_loop: bool = True
    stop_step_s: float = 5.0  # bound on each step of a clean stop (closing the WAL: 6x)
    # a clean stop tells the coordinator the node leaves (down at once, consumers rerouted);
    # False: the neighbours find out as after a crash (tests of crash handling)
    leave_on_stop: bool = True
    wait_log_s: float = 10.0  # log (INFO) why the stage waits once a wait lasts this long
