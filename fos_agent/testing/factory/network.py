"""The simulated network: RPCs between the simulated processes, on virtual time.

The real system talks only in RPCs (gRPC over TCP), so this network carries calls, not
datagrams: a call reaches its server after the link's delay, the server answers when it
will (a long-poll is held), and the answer comes back after another delay. Faults, as
the caller sees them:

- the server's process is down: the connection is refused, the caller learns it after
  one delay (a SIGKILLed process's kernel refuses at once);
- the two ends are partitioned: the call times out at its deadline (nothing answers);
- loss (per link, a probability): the request or the reply is lost; the caller times out
  at its deadline (TCP does not lose messages, but a lost packet stream looks like this);
- duplication: the request reaches the server twice (a transparent retry), the caller
  takes the first answer: what request ids and idempotent handlers are for;
- reordering: every call draws its own delay (``jitter_s``), so two calls on one link
  may arrive in either order;
- the server's process dies while it holds the call: the caller learns it at once
  (connection reset); the caller's process dies: the server's held call is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fos_agent.testing.factory.clock import Rng, Scheduler, Timer, Trace


@dataclass(frozen=True, slots=True)
class LinkSettings:
    delay_s: float = 0.0005  # one way
    jitter_s: float = 0.0005  # each message's delay is delay_s + uniform(0, jitter_s)
    loss: float = 0.0  # probability that a request, or its reply, is lost
    duplicate: float = 0.0  # probability that a request reaches the server twice


class Endpoint(Protocol):
    """A simulated process as the network sees it."""

    @property
    def up(self) -> bool: ...
    @property
    def generation(self) -> int: ...  # grows at every crash: answers to the dead are dropped
    def serve(self, call: Call) -> None: ...  # answer later with SimNetwork.answer
    def drop(self, call: Call) -> None: ...  # the caller died: forget a held call


class Call:
    """One RPC in flight."""

    __slots__ = ("cid", "deadline", "done", "dst", "gen", "kind", "on_done", "payload", "src",
                 "timer")

    def __init__(self, src: str, dst: str, kind: str, payload: Any, deadline: float,
                 gen: int, on_done: Callable[[Any], None], cid: int = 0) -> None:
        self.cid = cid
        self.src = src
        self.dst = dst
        self.kind = kind
        self.payload = payload
        self.deadline = deadline
        self.gen = gen
        self.on_done = on_done
        self.done = False
        self.timer: Timer | None = None


class SimNetwork:
    def __init__(self, clock: Scheduler, rng: Rng, trace: Trace,
                 settings: LinkSettings | None = None) -> None:
        self.clock = clock
        self.rng = rng
        self.trace = trace
        self.settings = settings or LinkSettings()
        self.links: dict[frozenset[str], LinkSettings] = {}  # per-link overrides
        self.partitions: set[frozenset[str]] = set()
        self.endpoints: dict[str, Endpoint] = {}
        self.open: dict[int, Call] = {}
        self._ids = 0
        self.calls: dict[str, int] = {}  # kind -> calls made
        self.lost = self.duplicated = self.refused = 0

    # ---- faults --------------------------------------------------------------------------

    def partition(self, a: str, b: str) -> None:
        self.partitions.add(frozenset((a, b)))

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        if a is None or b is None:
            self.partitions.clear()
        else:
            self.partitions.discard(frozenset((a, b)))

    def cut(self, a: str, b: str) -> bool:
        return bool(self.partitions) and frozenset((a, b)) in self.partitions

    def link(self, a: str, b: str) -> LinkSettings:
        return self.links.get(frozenset((a, b)), self.settings) if self.links else self.settings

    # ---- calls ---------------------------------------------------------------------------

    def _delay(self, s: LinkSettings) -> float:
        return s.delay_s + (self.rng.random() * s.jitter_s if s.jitter_s else 0.0)

    def call(self, src: str, dst: str, kind: str, payload: Any, timeout: float,
             on_done: Callable[[Any], None]) -> Call:
        """Call ``dst``; ``on_done(reply)`` runs once, with None when no answer came
        (refused, timed out, reset). Not run at all if the caller died meanwhile."""
        caller = self.endpoints[src]
        self._ids += 1
        c = Call(src, dst, kind, payload, self.clock.now + timeout, caller.generation, on_done,
                 self._ids)
        self.open[c.cid] = c
        self.calls[kind] = self.calls.get(kind, 0) + 1
        s = self.link(src, dst)
        if self.cut(src, dst):
            self._expire(c)
            return c
        if s.loss and self.rng.random() < s.loss:
            self.lost += 1
            self._expire(c)
            return c
        self.clock.after(self._delay(s), self._arrive, c)
        if s.duplicate and self.rng.random() < s.duplicate:
            self.duplicated += 1
            self.clock.after(self._delay(s) * 2, self._arrive_again, c)
        return c

    def _expire(self, c: Call) -> None:
        if c.timer is None:
            c.timer = self.clock.timer(c.deadline - self.clock.now, self._finish, c, None)

    def _arrive(self, c: Call) -> None:
        if c.done:
            return
        server = self.endpoints.get(c.dst)
        if server is None or not server.up:
            self.refused += 1
            self.clock.after(self._delay(self.link(c.src, c.dst)), self._finish, c, None)
            return
        server.serve(c)

    def _arrive_again(self, c: Call) -> None:
        server = self.endpoints.get(c.dst)
        if server is None or not server.up:
            return
        twin = Call(c.src, c.dst, c.kind, c.payload, c.deadline, c.gen, _ignore)
        server.serve(twin)

    def answer(self, c: Call, reply: Any) -> None:
        """The server's answer to ``c`` (sent now; reaches the caller after a delay)."""
        if c.on_done is _ignore:
            return
        s = self.link(c.src, c.dst)
        if self.cut(c.src, c.dst) or (s.loss and self.rng.random() < s.loss):
            self.lost += 1
            self._expire(c)
            return
        self.clock.after(self._delay(s), self._finish, c, reply)

    def _finish(self, c: Call, reply: Any) -> None:
        if c.done:
            return
        c.done = True
        if c.timer is not None:
            c.timer.cancel()
        self.open.pop(c.cid, None)
        caller = self.endpoints[c.src]
        if caller.up and caller.generation == c.gen:
            c.on_done(reply)

    def cancel(self, c: Call) -> None:
        """The caller gives up on ``c`` (no answer will be taken); the server forgets it."""
        if c.done:
            return
        c.done = True
        if c.timer is not None:
            c.timer.cancel()
        self.open.pop(c.cid, None)
        server = self.endpoints.get(c.dst)
        if server is not None:
            server.drop(c)

    def crashed(self, node: str) -> None:
        """``node``'s process died: calls it was serving fail at their callers now
        (connection reset), calls it made are dropped at their servers."""
        for key, c in list(self.open.items()):
            if c.done:
                del self.open[key]
                continue
            if c.dst == node:
                self.clock.after(self._delay(self.link(c.src, c.dst)), self._finish, c, None)
            elif c.src == node:
                c.done = True
                del self.open[key]
                server = self.endpoints.get(c.dst)
                if server is not None:
                    server.drop(c)

    def partitioned(self, a: str, b: str) -> None:
        """A partition began: calls open between ``a`` and ``b`` time out."""
        self.partition(a, b)
        for c in list(self.open.values()):
            if not c.done and {c.src, c.dst} == {a, b}:
                self._expire(c)


def _ignore(reply: Any) -> None:
    """The caller of a duplicated request's second copy: nobody waits for it."""
