"""The agent runtime's time rules, pure: which supplier to ask and when, how long to
long-poll, when a neighbour is suspected, when a batch in transit is offered again.

Every object here is plain bookkeeping over plain data. It reads no clock (the caller
passes ``now``, seconds on one monotonic clock of its choosing), draws no random numbers,
does no I/O and imports no asyncio, gRPC or LMDB. The real agent drives these objects from
its asyncio loops with the event loop's time (fos_agent.runtime.inputs,
fos_agent.runtime.detector, fos_agent.net.outbox); a simulation drives the very same
objects with virtual time. Each module's docstring states its contract: what to call when,
and what the caller must do with what it returns.

- ``fetch``: a consumer's choice of supplier for one input item (order, cooldown, backoff
  of backups that had nothing, long-poll length, buffer target, the first-article plan's
  extra long-poll).
- ``suspicion``: the neighbour-only failure detector's link table (pings, suspicions, the
  stall pardon).
- ``retry``: a supplier's re-offers of batches in transit (backoff, kick) and the
  consumer's piggybacked confirmations.
"""
