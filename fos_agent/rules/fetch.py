"""A consumer's rules for buying one input item: how many batches to keep, which supplier
to ask, in which order, how long to long-poll, when to skip a backup (pure: the caller
passes ``now``).

The buffer: a consumer keeps ``target`` batches of each input (unheld QUEUED + IN_TRANSIT
inbound + requests in flight): ``prefetch``, but at most one more than the scarcest other
input has (a stage missing one input does not hoard the others) and at most as many as
the cycles its output buffer still has room for (a blocked stage does not buy). Below it,
a worker asks for ``batches_to_ask`` batches in one round over the suppliers.

A round (``SupplierChoice``, one per consumer and item) asks the item's suppliers in flow
rank order, suppliers that recently gave no answer (or that the failure detector
suspects, or that the flow says are down) last:

- the first supplier with a ``wait_ms`` long-poll (``first_wait_ms``): an empty supplier
  answers when it has produced, instead of being polled in a storm;
- on BatchUnavailable, refusal, or no answer (connection refused, timeout) the round
  switches AT ONCE, locally, to the next rank with a quick (``wait_ms`` 0) request. This
  is what makes a reroute fast: a SIGKILLed supplier refuses connections immediately, so
  its consumers buy from their backup before the coordinator has even been told;
- a supplier that gave no answer is tried last for ``cooldown_s``;
- a backup that had nothing is skipped (``should_skip``) for ``empty_backoff_s``
  (doubling up to ``empty_backoff_max_s``) while the first supplier answers: an idle
  consumer that asked every backup after every long-poll sent most of an idle chain's
  messages that way.

A round that got nothing fast (every supplier refused or down) is followed by a pause of
``idle_pause_s`` (``idle_pause``), so a consumer without a live supplier does not spin.

The first-article plan (fos_agent.runtime.fillplan; ``PlanFollow``): from the stage's
start until this input's planned batches have come, the next planned supplier, when it is
not the first one (which the workers ask anyway), is long-polled for one batch besides.
That supplier serves its planned consumer first (fos_agent.core.fairshare), so the first
final product draws each scarce item from all its producers instead of one. A planned
supplier that is not ours in the flow, is down, or gives nothing for ``plan_rounds``
long-polls is dropped from the plan.

Contract. Per request the caller (1) orders the suppliers with ``order`` and computes the
first wait with ``first_wait_ms`` at the round's start, (2) for each supplier in that
order asks ``should_skip`` (with the round's start time), else sends the request and
(3) reports how it ended with ``answered`` (the time the answer came). The round ends at
the first ``Answer.SENT``. Nothing here sends or waits: the caller does.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Supplier:
    """One supplier of an item in the flow: its flow rank (0 first) and liveness."""

    node_id: str
    rank: int
    alive: bool


@dataclass(frozen=True, slots=True)
class FetchSettings:
    prefetch: int = 2  # batches of each input kept ready (queued + on the way)
    inflight: int = 1  # concurrent requests per input item
    per_request: int = 8  # batches one request may ask for (what the buffer lacks)
    long_poll_ms: int = 20000  # longest wait_ms sent to the first supplier asked (each
    # renewal of an idle consumer's long-poll costs both ends CPU; a flow change or a stop
    # ends it at once, answered; a hung supplier is noticed by the connection's
    # keepalive, fos_agent.net.client, not by this deadline) ...
    long_poll_min_ms: int = 4000  # ... but it ends when a backup is due to be asked
    # again, and lasts at least this: see long_poll_wait_ms
    cooldown_s: float = 2.0  # a supplier that gave no answer is asked last this long
    idle_pause_s: float = 0.25  # after a round that got nothing fast (all refused/down)
    empty_backoff_s: float = 4.0  # a backup that had nothing is asked again after this,
    empty_backoff_max_s: float = 16.0  # doubling up to this (while the first supplier
    # answers: an idle chain's consumers asked every backup after every long-poll)
    plan_rounds: int = 2  # long-polls of a planned supplier that end with nothing
    # before it is dropped from the plan (a chain with nothing to sell is idle, not filling)


class Answer(enum.Enum):
    """How one request ended."""

    SENT = "sent"  # a batch came
    NONE = "none"  # the supplier answered: nothing for us now
    REFUSED = "refused"  # the supplier answered with a refusal (not a consumer, flows apart)
    NO_ANSWER = "no answer"  # no reply: cut by a flow change or a stop, or a status that
    # is no refusal (the supplier recovering)
    UNREACHABLE = "unreachable"  # connection refused or timed out: tried last for a while

    @property
    def heard(self) -> bool:
        """The supplier itself answered (it is there)."""
        return self in (Answer.SENT, Answer.NONE, Answer.REFUSED)


def long_poll_wait_ms(settings: FetchSettings, backups_due: Sequence[float], now: float
                      ) -> int:
    """The first supplier's long-poll wait, given when each backup is next due to be asked
    (``now`` or earlier: it may have goods; later: it had nothing and is backing off).

    While the first supplier holds our long-poll no backup is asked, so a wait longer than
    a backup's due time would leave that backup's goods unsold for up to the whole wait
    (its stage pauses on its output cap meanwhile). So the wait ends when the earliest
    backup is due, but lasts at least ``long_poll_min_ms`` (no poll storm) and at most
    ``long_poll_ms``; with no backup, or every backup backing off after having nothing
    (an idle chain), it is long."""
    floor = min(settings.long_poll_min_ms, settings.long_poll_ms)
    if not backups_due:
        return settings.long_poll_ms
    until_ms = int((min(backups_due) - now) * 1000)
    return max(floor, min(settings.long_poll_ms, until_ms))


def target(prefetch: int, scarcest_other: int | None, room: int | None) -> int:
    """How many batches of an input to keep: ``prefetch``, but never more than one cycle
    ahead of the scarcest other input (``scarcest_other`` batches buffered; None: no other
    input), since a stage that lacks another input would only hoard this one while other
    stages could use it (stranded goods lower the whole chain's output); and never more
    than the cycles the stage's output buffer has ``room`` for (None: unbounded), since a
    stage whose output nobody takes stops buying, so its suppliers stop too and a scarce
    item goes where it is used."""
    wanted = prefetch
    if scarcest_other is not None:
        wanted = max(1, min(wanted, scarcest_other + 1))
    return wanted if room is None else max(0, min(wanted, room))


def batches_to_ask(settings: FetchSettings, want: int, buffered: int) -> int:
    """Batches one request asks for when ``buffered`` is below ``want`` (at least one)."""
    return max(1, min(settings.per_request, want - buffered))


class SupplierChoice:
    """One consumer's supplier bookkeeping for one item: the cooldown of suppliers that
    gave no answer and the backoff of backups that had nothing (module docstring)."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self._failed_at: dict[str, float] = {}  # supplier -> when it gave no answer
        self._empty: dict[str, tuple[float, float]] = {}  # backup -> (ask after, backoff)

    def failed(self, supplier: Supplier, suspected: Collection[str], now: float) -> bool:
        """Down in the flow, suspected, or gave no answer within ``cooldown_s``."""
        at = self._failed_at.get(supplier.node_id)
        return (supplier.node_id in suspected or not supplier.alive
                or (at is not None and now - at < self.settings.cooldown_s))

    def order(self, suppliers: Sequence[Supplier], suspected: Collection[str], now: float
              ) -> list[Supplier]:
        """Flow rank order, ``failed`` suppliers last (ties by node id)."""
        return sorted(suppliers, key=lambda s: (self.failed(s, suspected, now), s.rank,
                                                s.node_id))

    def asked_after(self, supplier: str, now: float) -> float:
        """When ``supplier`` is next due to be asked as a backup (``now``: it may have
        goods)."""
        return self._empty.get(supplier, (now, 0.0))[0]

    def first_wait_ms(self, ordered: Sequence[Supplier], now: float) -> int:
        """The long-poll wait for the first of ``ordered`` (long_poll_wait_ms over the
        backups' due times)."""
        return long_poll_wait_ms(self.settings,
                                 [self.asked_after(s.node_id, now) for s in ordered[1:]], now)

    def should_skip(self, supplier: Supplier, index: int, first_answered: bool,
                    now: float) -> bool:
        """Skip the backup at ``index`` of this round: it had nothing lately and the first
        supplier answered (it is there; the backup's goods, if any, can wait for its due
        time). ``now``: the round's start."""
        return bool(index) and first_answered and self.asked_after(supplier.node_id, now) > now

    def answered(self, supplier: str, index: int | None, answer: Answer, now: float
                 ) -> None:
        """A request to ``supplier`` (at ``index`` of a round; None: outside a round, the
        first-article plan's extra long-poll) ended with ``answer`` at ``now``."""
        if answer is Answer.UNREACHABLE:
            self._failed_at[supplier] = now
        elif answer.heard:
            self._failed_at.pop(supplier, None)
        if index is None:
            return
        if answer is Answer.SENT:
            self._empty.pop(supplier, None)
        elif index > 0 and answer is Answer.NONE:  # a backup with nothing: ask it less often
            backoff = self._empty.get(supplier, (0.0, 0.0))[1]
            backoff = min(max(backoff * 2, self.settings.empty_backoff_s),
                          self.settings.empty_backoff_max_s)
            self._empty[supplier] = (now + backoff, backoff)

    def idle_pause(self, got: bool, started: float, now: float) -> float:
        """Seconds to pause after a round that began at ``started`` and ended at ``now``:
        ``idle_pause_s`` when it got nothing fast (every supplier refused or down), else 0."""
        if not got and now - started < self.settings.idle_pause_s:
            return self.settings.idle_pause_s
        return 0.0


class PlanStep(enum.Enum):
    """What the first-article plan's follower of one item does next."""

    DONE = "done"  # this item's plan is over: stop following
    WAIT_PLAN = "wait plan"  # no plan yet, or the stage has not started: wait for the plan
    DROP = "drop"  # give up the next planned supplier (the caller drops it), look again
    WAIT_FLOW = "wait flow"  # it is our first supplier, asked anyway: wait for plan or flow
    WAIT_NEED = "wait need"  # what is here or on its way covers the need: wait for plan,
    # flow, inbound or outbound to change
    ASK = "ask"  # long-poll the planned supplier for one batch (``long_poll_ms``), then
    # report the answer with ``asked``


class PlanFollow:
    """The consumer side of the first-article plan for one item (module docstring). Each
    look: ``step``; after an ``ASK``: ``asked``, then pause as long as it says."""

    def __init__(self, choice: SupplierChoice) -> None:
        self.choice = choice
        self._empty = 0  # long-polls of the planned supplier in a row that brought nothing

    def step(self, planned_next: str | None, planned: bool, started: bool,
             suppliers: Sequence[Supplier], suspected: Collection[str], have: int,
             want: int, now: float) -> PlanStep:
        """``planned_next``: the supplier of our next planned batch of the item (None: none
        left, or no plan yet, ``planned`` tells which); ``started``: the stage has
        started; ``suppliers``: the item's suppliers in the flow; ``have``: batches here or
        on their way, not counting requests in flight (the workers' requests may be
        waiting on a supplier that has nothing yet); ``want``: the buffer target."""
        if planned_next is None and planned:
            return PlanStep.DONE
        if planned_next is None or not started:
            return PlanStep.WAIT_PLAN
        by_id = {s.node_id: s for s in suppliers}
        mine = by_id.get(planned_next)
        if (mine is None or self.choice.failed(mine, suspected, now)
                or self._empty >= self.choice.settings.plan_rounds):
            self._empty = 0  # not ours in this flow, down, or idle
            return PlanStep.DROP
        if self.choice.order(tuple(by_id.values()), suspected, now)[0].node_id == planned_next:
            return PlanStep.WAIT_FLOW
        if have >= want:
            return PlanStep.WAIT_NEED
        return PlanStep.ASK

    def asked(self, answer: Answer, flow_moved: bool) -> float:
        """The planned long-poll ended with ``answer`` (``flow_moved``: the flow changed
        meanwhile); returns the seconds to pause before the next look (no answer at all:
        do not spin)."""
        if answer is Answer.SENT or flow_moved:
            self._empty = 0
            return 0.0
        self._empty += 1
        return 0.0 if answer is Answer.NONE else self.choice.settings.idle_pause_s
