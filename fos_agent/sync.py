"""`SyncAgent`: the node agent for synchronous factory code (no asyncio in sight).

    from fos_agent import ItemReq, SyncAgent

    with SyncAgent("press-7", produces=ItemReq("window_frame", 2),
                   requires=[ItemReq("wood", 3)], coordinators=[...],
                   data_dir="/var/lib/fos/press-7") as agent:
        for inputs in agent.cycles():   # blocks until one batch of every input is held
            plc.press(inputs["wood"])   # any blocking call: the agent stays alive meanwhile
            agent.emit(inputs)          # inputs CONSUMED + output QUEUED, one durable step

It is the asyncio `Agent` running on its private loop thread (fos_agent.runtime.
loop_thread); every call here submits the agent's own coroutine to that loop and waits for
it, so the capabilities, the durability and the errors are the same as the async API's.

SIGTERM and SIGINT stop it cleanly (fos_agent.runtime.stop_signals): `StopSignal` is raised
in the main thread, wherever the program is (waiting in cycles(), or in the middle of its
own blocking work), the ``with`` block ends (the cycle in hand is not emitted; its inputs
stay QUEUED), the clean stop runs, and the block swallows the exception: the program goes
on after it and exits 0. A program that calls start()/stop() itself puts stop() in a
``finally`` (`StopSignal` is a SystemExit with status 0). ``handle_signals=False`` leaves
the signals to the program, which then calls ``stop()`` (from any thread).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from fos_agent.agent import Agent, Inputs
from fos_agent.core.metrics import Metrics
from fos_agent.protocol.limits import AttrValue, checked_output
from fos_agent.protocol.records import Batch
from fos_agent.runtime.flowview import FlowView
from fos_agent.runtime.settings import AgentSettings
from fos_agent.runtime.status import StageStatus, status_of
from fos_agent.runtime.stop_signals import SignalHook, StopSignal
from fos_raft.lineage.reader import BatchView
from fos_raft.model import FosError, ItemReq
from fos_raft.security.tls import TlsConfig

T = TypeVar("T")


class AgentNotRunning(FosError):
    """A SyncAgent call was made before ``start()`` or after ``stop()``."""


class SyncAgent:
    def __init__(self, node_id: str, produces: ItemReq | None = None,
                 requires: Sequence[ItemReq] = (), listen: str = "127.0.0.1:0",
                 coordinators: Sequence[str] = (), data_dir: str | Path = ".", *,
                 capacity: int = 1, workers: int = 1, cycle_s: float | None = None,
                 advertise: str | None = None, settings: AgentSettings | None = None,
                 tls: TlsConfig | None = None, handle_signals: bool = True) -> None:
        """The arguments of `Agent` (fos_agent.agent); the agent always runs on its own
        loop thread here (``settings.private_loop`` is forced on). ``cycle_s``: run the
        simulated stage (on that thread) once started, instead of cycles().
        ``handle_signals``: SIGTERM/SIGINT stop the agent cleanly (module docstring)."""
        settings = replace(settings or AgentSettings(), private_loop=True)
        self.agent = Agent(node_id, produces, requires, listen, coordinators, data_dir,
                           capacity=capacity, workers=workers, cycle_s=cycle_s,
                           advertise=advertise, settings=settings, tls=tls,
                           handle_signals=False)
        self.handle_signals = handle_signals
        self._signals = SignalHook(self._on_stop_signal)

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> SyncAgent:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.stop()
        return isinstance(exc, StopSignal)  # a stop signal ends the block, not the program

    def _on_stop_signal(self, signum: int) -> None:
        raise StopSignal(signum)

    def start(self) -> None:
        """Recover the WAL, serve, register or rejoin; raises what `Agent.start` raises."""
        if self.handle_signals:
            self._signals.install()
        self.agent._open_runner()
        try:
            self._call(self.agent._start_core())
        except BaseException:
            self._signals.stopping()
            self.agent._close_runner()
            self._signals.restore()
            raise

    def stop(self) -> None:
        """Clean stop (bounded, see `Agent.stop`). Idempotent; callable from any thread."""
        self._signals.stopping()  # a second signal must not cut this stop short
        try:
            if self.agent._runner is None:
                return
            try:
                self._call(self.agent._stop_core())
            finally:
                self.agent._close_runner()
        finally:
            self._signals.restore()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        runner = self.agent._runner
        if runner is None:
            coro.close()
            raise AgentNotRunning(f"agent {self.agent.node_id!r} is not running: "
                                  "call start() (or use it in a with block) first")
        future: concurrent.futures.Future[T] = runner.submit(coro)
        try:
            return future.result()
        except BaseException:  # Ctrl-C while waiting: do not leave the work running
            future.cancel()
            raise

    # ---- factory software ------------------------------------------------------------------

    def cycles(self) -> Iterator[Inputs]:
        """Block until one batch of every input is held (and the output has room); yield
        it. A cycle not emitted when the loop comes back (or ends) is released and counted
        skipped, as with `Agent.cycles`."""
        while self.agent._started:
            try:
                inputs = self._call(self.agent._next_inputs())
            except (concurrent.futures.CancelledError, AgentNotRunning):
                if self.agent._started:
                    raise
                return  # stopped (from another thread) while we waited: no more cycles
            try:
                yield inputs
            finally:
                if not inputs.emitted:
                    inputs.emitted = True
                    self.agent._core_soon(self.agent._release, inputs.ids)

    def emit(self, inputs: Inputs | None = None, *, qty: int | None = None,
             attrs: Mapping[str, AttrValue] | None = None) -> Batch:
        """Consume ``inputs`` and queue this stage's output in one durable step (None: a
        source stage outside cycles()); returns the new batch. ``qty`` and ``attrs`` as in
        `Agent.emit` (out of bounds: LimitError, the inputs stay held)."""
        qty, pairs = checked_output(qty, attrs)
        if inputs is not None:
            inputs.claim()
        return self._call(self.agent._produce(inputs.ids if inputs is not None else (),
                                              qty, pairs))

    def scrap(self, inputs: Inputs, reason: str) -> None:
        """Consume the held ``inputs`` without an output, with ``reason``, in one durable
        step (as `Agent.scrap`)."""
        reason = inputs.claim_for_scrap(reason)
        self._call(self.agent.stage.scrap(inputs.ids, reason))

    def arrived(self, batch_id: str) -> None:
        """Physical arrival of an inbound batch (only with immediate_arrival=False)."""
        self._call(self.agent._arrived(batch_id))

    def update_spec(self, produces: ItemReq | None = None,
                    requires: Sequence[ItemReq] | None = None, capacity: int | None = None,
                    expected_version: int | None = None) -> int:
        return self._call(self.agent.update_spec(produces, requires, capacity,
                                                 expected_version))

    def set_unavailable(self, reason: str | None) -> None:
        self.agent.set_unavailable(reason)

    def drain(self) -> int:
        return self._call(self.agent.drain())

    def lineage(self, batch_id: str) -> BatchView:
        """What this node knows of ``batch_id``'s genealogy (see `Agent.lineage`), read on
        the agent's loop thread."""
        async def read() -> BatchView:
            return self.agent.lineage(batch_id)
        return self._call(read())

    def undrain(self) -> int:
        return self._call(self.agent.undrain())

    def status(self) -> StageStatus:
        """Why the stage waits, in words and data (see `Agent.status`); read on the agent's
        loop thread. Before start() or after stop(): state ``not-started``."""
        if self.agent._runner is None:
            return status_of(self.agent)
        return self._call(self.agent.status())

    # ---- observation (read-only views of the running agent) --------------------------------

    @property
    def node_id(self) -> str:
        return self.agent.node_id

    @property
    def address(self) -> str:
        return self.agent.address

    @property
    def metrics(self) -> Metrics:
        return self.agent.metrics

    @property
    def flow(self) -> FlowView:
        return self.agent.flow

    @property
    def incarnation(self) -> int:
        return self.agent.incarnation
