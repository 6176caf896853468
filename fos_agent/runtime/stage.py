"""The stage loop: taking inputs from the local queue and producing, for real or simulated.

Several workers of one stage share the inbound queue safely through the protocol's
``hold_inputs`` / ``release`` reservations; a Produce consumes the held inputs and queues
the output in one durable step.

Output backpressure: a stage stops producing while ``output_cap`` of its batches are
QUEUED and unsold (the simulated stage counts that wait in skipped cycles). A stage
whose product no catalog node consumes is a sink (a final product leaves the factory), so
the cap does not apply to it.

Simulated stage (experiments): a worker starts a cycle as soon as it is free, every
input is in the local queue and the output has room; the cycle holds its inputs for
``cycle_s`` (the physical work), then consumes them and queues the output in one durable
step; when the next inputs are already there, the next cycle's work starts when the last
one's ended (recording an output is bookkeeping, not work), so a busy stage makes exactly
one batch per ``cycle_s``. A perfect chain of depth D makes its first final product at
D x cycle_s.
The stage's time is counted in slots of ``cycle_s``: a successful cycle is a slot of
work; every full ``cycle_s`` the worker spends waiting (idle time carried over between
waits) is a skipped cycle; total = successful + skipped, so total x cycle_s is the time
the worker ran (within one slot) and successful/total the share of it spent producing.
Each skipped slot is also counted under the cause of the wait that ended it (recorded
while it waited: once the wait ends its cause is gone): ``cycles_blocked`` (its output
buffer was full: nobody bought) or ``cycles_waiting_for:<item>`` (no batch of that input
here; the first such item of its recipe), so a report can say what happened instead of
"skipped". A skipped slot in neither is a cycle whose WAL step failed, or time a worker
lost with everything there (its event loop stalled).
``cycle_s == 0`` means "as fast as the WAL allows": workers wait for inputs and room
instead of skipping (the trades benchmark).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fos_agent.core.engine import Engine, Signal
from fos_agent.core.metrics import CYCLES_BLOCKED, CYCLES_WAITING, FIRST_OUTPUT_AT, Metrics
from fos_agent.protocol.limits import Attrs
from fos_agent.protocol.messages import Produce, Scrap
from fos_agent.protocol.records import Batch, OutState, PutOutbound
from fos_raft.runtime.logging import get_logger

BRIEF = 0.02  # a wait this short (x cycle_s) after a cycle is bookkeeping, not a break


class Stage:
    def __init__(self, engine: Engine, metrics: Metrics, *, output_cap: int,
                 is_sink: Callable[[], bool]) -> None:
        self.engine = engine
        self.metrics = metrics
        self.output_cap = output_cap
        self.is_sink = is_sink
        self.log = get_logger("fos_agent.runtime.stage").bind(node=engine.config.node_id)
        self._gate = asyncio.Lock()
        self.wait_cause = CYCLES_BLOCKED  # what the last wait waited for (a metric name)
        # when (monotonic) a worker began waiting for room or inputs; None: nobody waits
        self.waiting_since: float | None = None

    def missing_input(self) -> str | None:
        """The first required item with no unheld batch here (None: every input is here)."""
        node = self.engine.node
        if node is None:
            return None
        held = node.held
        for req in node.config.requires:
            if not any(r.batch.batch_id not in held for r in node.inbound_queued(req.item)):
                return req.item
        return None

    def output_full(self) -> bool:
        node = self.engine.node
        return (node is not None and not self.is_sink()
                and node.queued_outbound_count >= self.output_cap)

    def input_room(self) -> int | None:
        """Cycles the stage could still finish before its output buffer is full: the cap
        minus the outputs queued unsold (None for a sink: no limit). A cycle in progress
        does not count, so a working stage buys its next cycle's inputs meanwhile, and a
        stage whose outputs are not bought stops buying. Input fetchers buy no more."""
        node = self.engine.node
        if node is None or self.is_sink():
            return None
        return max(0, self.output_cap - node.queued_outbound_count)

    def try_hold(self) -> tuple[str, ...] | None:
        node = self.engine.node
        return node.hold_inputs() if node is not None else None

    def release(self, inputs: tuple[str, ...]) -> None:
        if self.engine.node is not None:
            self.engine.node.release(inputs)

    def batches(self, inputs: tuple[str, ...]) -> tuple[Batch, ...]:
        node = self.engine.node
        assert node is not None
        return tuple(rec.batch for b in inputs if (rec := node.inbound(b)) is not None)

    def _waits(self, cause: str) -> None:
        self.wait_cause = cause
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()

    async def wait_inputs(self) -> tuple[str, ...]:
        """Hold one batch of every required input, waiting for them to arrive."""
        while True:
            ticket = self.engine.inbound_changed.ticket()
            held = self.try_hold()
            if held is not None:
                return held
            self._waits(CYCLES_WAITING + (self.missing_input() or "?"))
            await ticket.wait()

    async def wait_room(self) -> None:
        """Wait until the output buffer has room (immediately for a sink)."""
        while True:
            ticket = self.engine.outbound_changed.ticket()
            if not self.output_full():
                return
            self._waits(CYCLES_BLOCKED)
            await ticket.wait()

    async def next_cycle(self) -> tuple[str, ...]:
        """Room for the output, then held inputs. One caller waits at a time (the others
        queue on a FIFO lock), so a change wakes one worker, not all of them."""
        async with self._gate:
            try:
                await self.wait_room()
                return await self.wait_inputs()
            finally:
                self.waiting_since = None

    async def produce(self, inputs: tuple[str, ...], qty: int | None = None,
                      attrs: Attrs = ()) -> Batch:
        """Consume ``inputs`` and queue one output batch (``qty``: None for the spec's,
        ``attrs``: sorted, checked pairs), durably, in one step."""
        try:
            (effects,) = await self.engine.step(Produce(inputs, qty, attrs))
        except BaseException:
            self.release(inputs)
            raise
        if not self.metrics.get(FIRST_OUTPUT_AT):  # the harness's precise first product
            self.metrics.set(FIRST_OUTPUT_AT, time.time())
        for write in effects.writes:
            if isinstance(write, PutOutbound) and write.record.state is OutState.QUEUED:
                return write.record.batch
        raise RuntimeError(f"a cycle consuming {inputs} produced nothing")

    async def scrap(self, inputs: tuple[str, ...], reason: str) -> None:
        """Consume ``inputs`` without an output, durably, in one step; a refused scrap
        (the protocol's error) leaves them held by nobody, as a failed produce does."""
        try:
            await self.engine.step(Scrap(inputs, reason))
        except BaseException:
            self.release(inputs)
            raise
        self.metrics.inc("scrapped_cycles")

    # ---- the simulated stage ---------------------------------------------------------------

    async def run_simulated(self, cycle_s: float, workers: int = 1) -> None:
        tasks = [asyncio.ensure_future(self._sim_worker(cycle_s, i, workers))
                 for i in range(max(1, workers))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sim_worker(self, cycle_s: float, index: int, workers: int) -> None:
        if cycle_s <= 0:
            await self._fast_worker()
            return
        loop = asyncio.get_running_loop()
        if index:  # spread the workers of one stage over a cycle
            await asyncio.sleep(cycle_s * index / workers)
        free_at = loop.time()  # when the last cycle's work ended (or the worker started)
        idle = 0.0  # waiting time not yet counted as a skipped cycle
        while True:
            inputs, waited = await self.take_cycle(free_at + cycle_s - idle)
            now = loop.time()
            gap = now - free_at
            if inputs is not None and gap < cycle_s and (not waited or gap < BRIEF * cycle_s):
                # everything was there when the last cycle's output was recorded (or came
                # within the moments recording and selling it take): the work went on
                # without a break (recording is bookkeeping, not work)
                begin = free_at
            else:
                begin = now
                idle += gap
                slots = int(idle / cycle_s + 1e-9)
                if inputs is None:
                    slots = max(1, slots)  # the deadline passed: a whole slot without work
                if slots:
                    self.metrics.inc("total_cycles", slots)
                    self.metrics.inc("skipped_cycles", slots)
                    if waited:  # else a late worker found everything there: no cause
                        self.metrics.inc(self.wait_cause, slots)
                    idle = max(0.0, idle - slots * cycle_s)
            if inputs is not None:
                await self.work(inputs, begin + cycle_s)
                free_at = begin + cycle_s
            else:
                free_at = now

    async def take_cycle(self, deadline: float) -> tuple[tuple[str, ...] | None, bool]:
        """Hold one batch of every input once the output has room; None if that did not
        happen before ``deadline`` (loop time). Also says whether it had to wait."""
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            room = self.engine.outbound_changed.ticket()
            arrived = self.engine.inbound_changed.ticket()
            if self.output_full():
                ticket = room
                self._waits(CYCLES_BLOCKED)
            else:
                held = self.try_hold()
                if held is not None:
                    self.waiting_since = None
                    return held, waited
                ticket = arrived
                self._waits(CYCLES_WAITING + (self.missing_input() or "?"))
            remaining = deadline - loop.time()
            if remaining <= 0 or not await Signal.wait_ticket(ticket, remaining):
                return None, True
            waited = True

    async def work(self, inputs: tuple[str, ...], until: float) -> bool:
        """One simulated cycle on held inputs: work until ``until`` (loop time), then
        consume and produce; True if it succeeded (a failed step releases the inputs)."""
        m = self.metrics
        m.inc("total_cycles")
        started = time.perf_counter()
        try:
            await asyncio.sleep(max(0.0, until - asyncio.get_running_loop().time()))
        except BaseException:
            self.release(inputs)
            raise
        try:
            await self.produce(inputs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.warning("cycle failed", error=str(exc))
            m.inc("skipped_cycles")
            return False
        m.inc("successful_cycles")
        m.observe("cycle_seconds", time.perf_counter() - started)
        return True

    async def _fast_worker(self) -> None:
        m = self.metrics
        while True:
            inputs = await self.next_cycle()
            m.inc("total_cycles")
            started = time.perf_counter()
            try:
                await self.produce(inputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("cycle failed", error=str(exc))
                m.inc("skipped_cycles")
                continue
            m.inc("successful_cycles")
            m.observe("cycle_seconds", time.perf_counter() - started)
