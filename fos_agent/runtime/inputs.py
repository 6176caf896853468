"""Input fetching: keep a small buffer of every required item by buying from suppliers.

One ``InputFetcher`` per required item runs ``inflight`` workers and, with a first-article
plan (fos_agent.runtime.fillplan), one plan follower. The rules they follow live in
fos_agent.rules.fetch (pure: the buffer target, the supplier order, the cooldown, the
backoff of backups that had nothing, the long-poll length, the plan follower's steps);
this module carries them out with the event loop's clock. A worker sleeps while the
item's buffer (unheld QUEUED + IN_TRANSIT inbound + requests in flight) holds its target,
else runs one round over the suppliers; a flow change ends a long-poll (the supplier
answers at once, a batch it sent is recorded, and the round starts over on the new flow).

Confirmations pending for a supplier ride on the next request to it (see Outbox). Each
request has a fresh request_id; a retried one is answered from the supplier's WAL
(request_id dedup), so a lost reply never makes a second batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fos_agent.core.engine import Engine, Signal
from fos_agent.core.metrics import Metrics
from fos_agent.net.client import PeerClient, PeerRefused, PeerUnreachable
from fos_agent.net.outbox import Outbox
from fos_agent.protocol.messages import (
    BatchSent,
    BatchUnavailable,
    NewRequest,
    RefusalReason,
    RequestBatch,
    RequestRefused,
)
from fos_agent.rules.fetch import (
    Answer,
    FetchSettings,
    PlanFollow,
    PlanStep,
    SupplierChoice,
    batches_to_ask,
    long_poll_wait_ms,  # noqa: F401  (re-exported: its old home)
    target,
)
from fos_agent.runtime.flowview import FlowView
from fos_raft.runtime.logging import get_logger

# How long a long-poll cut by a flow change waits for the supplier's answer (it ends its
# held calls on the same flow change, within milliseconds unless it is hung).
FLOW_CHANGE_GRACE_S = 0.5
# How long a stopping consumer waits for the answer to a long-poll it asked its supplier
# to end (EndWait; the answer comes within milliseconds unless the supplier is hung).
STOP_GRACE_S = 2.0

@dataclass(slots=True)
class FillState:
    """The first-article plan's consumer side, shared by an agent's fetchers: the
    suppliers of this node's next planned batches of each input (fos_agent.runtime.fillplan),
    whether a plan came, and whether the stage has started; ``changed`` fires on any of
    it."""

    buy: dict[str, deque[str]] = field(default_factory=dict)
    planned: bool = False
    started: bool = False
    changed: Signal = field(default_factory=Signal)

    def set_plan(self, buy: Mapping[str, Sequence[str]]) -> None:
        self.buy = {item: deque(suppliers) for item, suppliers in buy.items()}
        self.planned = True
        self.changed.notify()

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.changed.notify()

    def next_supplier(self, item: str) -> str | None:
        plan = self.buy.get(item)
        return plan[0] if plan else None

    def received(self, item: str, supplier: str, batches: int) -> None:
        """``batches`` of ``item`` came from ``supplier``: each takes the earliest
        planned batch from it off the plan (as the supplier's side does)."""
        plan = self.buy.get(item)
        moved = False
        while plan and batches > 0 and supplier in plan:
            plan.remove(supplier)
            batches -= 1
            moved = True
        if moved:
            self.changed.notify()

    def drop(self, item: str, supplier: str) -> None:
        """Give up on ``supplier``'s next planned batch of ``item``."""
        plan = self.buy.get(item)
        if plan and plan[0] == supplier:
            plan.popleft()
            self.changed.notify()


class InputFetcher:
    def __init__(self, item: str, engine: Engine, client: PeerClient, outbox: Outbox,
                 flow: Callable[[], FlowView], flow_changed: Signal, metrics: Metrics,
                 settings: FetchSettings, suspected: Callable[[], frozenset[str]],
                 others_buffered: Callable[[str], int | None] = lambda item: None,
                 room: Callable[[], int | None] = lambda: None,
                 fill: FillState | None = None) -> None:
        self.item = item
        self.engine = engine
        self.client = client
        self.outbox = outbox
        self.flow = flow
        self.flow_changed = flow_changed
        self.metrics = metrics
        self.settings = settings
        self.suspected = suspected
        self.others_buffered = others_buffered
        self.room = room
        self.log = get_logger("fos_agent.runtime.inputs").bind(node=client.node_id,
                                                                  item=item)
        self._inflight = 0
        self.choice = SupplierChoice(settings)  # cooldowns and backoffs (fos_agent.rules)
        self.fill = fill
        self._stopping = False
        self._wake = Signal()

    def buffered(self) -> int:
        node = self.engine.node
        if node is None:
            return self._inflight
        queued = node.inbound_queued_counts().get(self.item, 0)
        held = sum(1 for b in node.held if (r := node.inbound(b)) and r.batch.item == self.item)
        transit = 0
        if not self.engine.config.immediate_arrival:  # physical transit: goods on the way
            transit = sum(1 for r in node.inbound_in_transit() if r.batch.item == self.item)
        return queued - held + transit + self._inflight

    def target(self) -> int:
        """How many to keep (fos_agent.rules.fetch.target)."""
        return target(self.settings.prefetch, self.others_buffered(self.item), self.room())

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> None:
        workers = [asyncio.ensure_future(self._worker())
                   for _ in range(max(1, self.settings.inflight))]
        if self.fill is not None:
            workers.append(asyncio.ensure_future(self._follow_plan(self.fill)))
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def stop(self) -> None:
        """Graceful stop: start no new request; ``run`` returns once the requests in
        flight are answered and recorded (so a clean stop leaves nothing in flight)."""
        self._stopping = True
        self._wake.notify()

    async def _sleep(self, *tickets: asyncio.Event, timeout: float | None = None) -> None:
        waits = [asyncio.ensure_future(t.wait()) for t in (*tickets, self._wake.ticket())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _worker(self) -> None:
        while not self._stopping:
            inbound = self.engine.inbound_changed.ticket()
            outbound = self.engine.outbound_changed.ticket()  # output room may open
            flow = self.flow_changed.ticket()
            want = self.target()
            if self.buffered() >= want:
                await self._sleep(inbound, outbound)
                continue
            started = self._now()
            count = batches_to_ask(self.settings, want, self.buffered())
            self._inflight += count
            try:
                got = await self.fetch_one(count)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # engine recovering, or a bug: do not spin
                self.log.warning("fetch failed", error=str(exc))
                got = False
            finally:
                self._inflight -= count
            pause = self.choice.idle_pause(got, started, self._now())
            if pause:
                await self._sleep(flow, timeout=pause)

    async def fetch_one(self, count: int = 1) -> bool:
        """One round over the suppliers for up to ``count`` batches; True when some batch
        was sent to us."""
        view = self.flow()
        first_answered = False
        now = self._now()
        suppliers = self.choice.order(view.ranked_suppliers(self.item), self.suspected(), now)
        first_wait_ms = self.choice.first_wait_ms(suppliers, now)
        for i, supplier in enumerate(suppliers):
            if self._stopping:
                return False
            if self.choice.should_skip(supplier, i, first_answered, now):
                continue  # had nothing lately, and the first supplier is there: skip
            wait_ms = first_wait_ms if i == 0 else 0
            answer = await self._ask(supplier.node_id, view.version, wait_ms, count, index=i)
            if answer is Answer.SENT:
                return True
            if i == 0:
                first_answered = answer is Answer.NONE
        return False

    async def _follow_plan(self, fill: FillState) -> None:
        """The consumer side of the first-article plan (fos_agent.rules.fetch.PlanFollow).
        Returns when this item's plan is done or dropped, or when the fetcher stops."""
        follow = PlanFollow(self.choice)
        while not self._stopping:
            changed = fill.changed.ticket()
            flow = self.flow_changed.ticket()
            inbound = self.engine.inbound_changed.ticket()
            outbound = self.engine.outbound_changed.ticket()
            nxt = fill.next_supplier(self.item)
            view = self.flow()
            step = follow.step(nxt, fill.planned, fill.started,
                               view.ranked_suppliers(self.item), self.suspected(),
                               self.buffered() - self._inflight, self.target(), self._now())
            if step is PlanStep.DONE:
                return
            if step is PlanStep.WAIT_PLAN:
                await self._sleep(changed)
            elif step is PlanStep.DROP:
                assert nxt is not None
                fill.drop(self.item, nxt)
            elif step is PlanStep.WAIT_FLOW:
                await self._sleep(changed, flow)
            elif step is PlanStep.WAIT_NEED:
                await self._sleep(changed, flow, inbound, outbound)
            else:
                assert nxt is not None
                self.metrics.inc("planned_requests")
                answer = await self._ask(nxt, view.version, self.settings.long_poll_ms, 1)
                pause = follow.asked(answer, flow.is_set())
                if pause:
                    await self._sleep(timeout=pause)

    async def _long_poll(self, request: RequestBatch, delivered: list[str], count: int
                         ) -> list[Any] | None:
        """``client.request``, ended early by a flow change or a stop, but always by the
        supplier's answer where it can be had. A cancelled call can leave a batch the
        supplier sent in that very moment IN_TRANSIT until it is re-offered (nothing is
        lost, but a consumer stopped meanwhile leaves it in transit: the audit's
        quiescence check saw it). So:

        - the flow changed: the supplier, which follows the same flow, ends its held call
          at once and answers; we wait ``FLOW_CHANGE_GRACE_S`` for that answer;
        - we are stopping: we ask the supplier to answer now (``EndWait``) and wait
          ``STOP_GRACE_S`` for the answer (an older supplier that does not know EndWait:
          the call's own deadline).

        Only then is the call cancelled (None). None also when the flow changed and no
        batch came: start over on the new flow."""
        if request.wait_ms <= 0:
            return await self.client.request(request, delivered, count)
        if self._stopping:
            return None
        call = asyncio.ensure_future(self.client.request(request, delivered, count))
        changed = asyncio.ensure_future(self.flow_changed.ticket().wait())
        stopping = asyncio.ensure_future(self._wake.ticket().wait())  # only stop() wakes it
        flow_moved = False
        try:
            await asyncio.wait((call, changed, stopping), return_when=asyncio.FIRST_COMPLETED)
            flow_moved = changed.done()
            if not call.done() and self._stopping:
                grace = await self._end_wait(request)
                await asyncio.wait((call,), timeout=grace)
            elif not call.done():  # the flow changed: the supplier's answer is on its way
                await asyncio.wait((call,), timeout=FLOW_CHANGE_GRACE_S)
        finally:
            changed.cancel()
            stopping.cancel()
            if not call.done():
                call.cancel()
        if call.cancelled() or not call.done():
            await asyncio.gather(call, return_exceptions=True)
            return None
        replies = call.result()
        if flow_moved and not any(isinstance(r, BatchSent) for r in replies):
            return None  # nothing to record: start over on the new flow
        return replies

    async def _end_wait(self, request: RequestBatch) -> float:
        """Ask the supplier to answer ``request`` now; how long to wait for that answer."""
        try:
            await self.client.end_wait(request.supplier, [request.request_id])
        except PeerRefused:  # an older agent: it answers when the long-poll is over
            return request.wait_ms / 1000.0 + self.client.rpc_timeout
        except PeerUnreachable:
            return STOP_GRACE_S
        return STOP_GRACE_S

    async def _ask(self, supplier: str, flow_version: int, wait_ms: int, count: int,
                   index: int | None = None) -> Answer:
        """One request to ``supplier`` (at ``index`` of a round; None: the plan's), its
        answer recorded, and reported to the supplier choice."""
        answer = await self._request(supplier, flow_version, wait_ms, count)
        self.choice.answered(supplier, index, answer, self._now())
        return answer

    async def _request(self, supplier: str, flow_version: int, wait_ms: int, count: int
                       ) -> Answer:
        (made,) = await self.engine.step(NewRequest(supplier, self.item,
                                                    flow_version=flow_version,
                                                    wait_ms=wait_ms))
        (request,) = made.messages
        assert isinstance(request, RequestBatch)
        delivered = self.outbox.take_confirms(supplier)
        self.metrics.inc("batches_requested", count)
        answered = False
        try:
            replies = await self._long_poll(request, delivered, count)
            if replies is None:  # the flow changed: start over on the new one
                return Answer.NO_ANSWER
            answered = True
        except PeerUnreachable as exc:
            self.log.debug("supplier gave no answer", supplier=supplier, error=exc.reason)
            return Answer.UNREACHABLE
        except PeerRefused as exc:
            self.log.info("supplier refused", supplier=supplier, code=exc.code.name,
                          details=exc.details)
            return Answer.NO_ANSWER
        finally:
            # unanswered, refused or cancelled (a stop): the piggybacked confirmations may
            # not have arrived, so they go again on their own (DeliveryConfirmed is
            # idempotent); dropped, they would leave the batch in transit at the supplier
            if not answered:
                self.outbox.give_back_confirms(supplier, delivered)
        reply = replies[0]
        for effects in await self.engine.step(*replies):
            self.outbox.send(effects.messages)
        if isinstance(reply, BatchSent) and self.fill is not None:
            self.fill.received(self.item, supplier,
                               sum(isinstance(r, BatchSent) for r in replies))
        if isinstance(reply, RequestRefused):
            self.log.debug("request refused", supplier=supplier, reason=reply.reason.value,
                           supplier_flow=reply.flow_version, our_flow=flow_version)
            if (reply.reason is RefusalReason.NOT_A_CONSUMER
                    and reply.flow_version > flow_version):
                # our flow is behind the supplier's: the watch will bring the new one
                await Signal.wait_ticket(self.flow_changed.ticket(), 1.0)
        if isinstance(reply, BatchSent):
            return Answer.SENT
        return Answer.NONE if isinstance(reply, BatchUnavailable) else Answer.REFUSED
