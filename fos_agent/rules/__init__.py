"""The agent runtime's time rules, pure: which supplier to ask and when, how long to
long-poll, when a neighbour is suspected, when a batch in transit is offered again.

Every object here is plain bookkeeping over plain data. It reads no clock (the caller
passes ``now``, seconds on one monotonic clock of its choosing), draws no random numbers,
does no I/O and imports no asyncio, gRPC or LMDB. The real agent drives these objects from
its asyncio loops with the event loop's time (fos_agent.runtime.inputs,
fos_agent.runtime.detector, fos_agent.net.outbox, fos_agent.net.service); a simulation
drives the very same objects with virtual time. Each module's docstring states its
contract: what to call when, and what the caller must do with what it returns.

- ``fetch``: a consumer's choice of supplier for one input item (order, cooldown, backoff
  of backups that had nothing, long-poll length, buffer target, the first-article plan's
  extra long-poll).
- ``suspicion``: the neighbour-only failure detector's link table (pings, suspicions, the
  stall pardon).
- ``retry``: a supplier's re-offers of batches in transit (backoff, kick) and the
  consumer's piggybacked confirmations.
- ``share``: which waiting consumer a supplier serves (weighted fair queueing, the
  first-article plan's supplier side), how long a long-poll is held, when the weights
  are refreshed.
- ``weights``: what the weights are (each consumer's share of the catalog's need for the
  item) and the priorities that break their ties (the items' heights).
"""

from fos_agent.rules.fetch import (
    Answer,
    FetchSettings,
    PlanFollow,
    PlanStep,
    Supplier,
    SupplierChoice,
    batches_to_ask,
    long_poll_wait_ms,
    target,
)
from fos_agent.rules.retry import PendingConfirms, Reoffers
from fos_agent.rules.share import FairShare, LongPoll, settle_wait
from fos_agent.rules.suspicion import (
    Action,
    DetectorSettings,
    Ping,
    Report,
    Suspicion,
    report_retry_after,
)

__all__ = [
    "Action", "Answer", "DetectorSettings", "FairShare", "FetchSettings", "LongPoll",
    "PendingConfirms", "Ping", "PlanFollow", "PlanStep", "Reoffers", "Report", "Supplier",
    "SupplierChoice", "Suspicion", "batches_to_ask", "long_poll_wait_ms", "report_retry_after",
    "settle_wait", "target",
]
