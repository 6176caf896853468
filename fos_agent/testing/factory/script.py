"""Scenario transcripts: a simulated factory driven by a text file of commands, each with
its expected output (the way etcd-io/raft's ``testdata/*.txt`` drive raft).

A file is a sequence of blocks; a block is a command line, optional input lines, a line
``----`` and the expected output, ended by a blank line. ``#`` lines are comments.

    factory seed=3 cycle=1s
    ore-1 makes 1xore
    ore-2 makes 1xore
    press-1 makes 1xsteel from 1xore
    ----
    ok

    kill ore-1
    ----
    20.000 ore-1 crash (0 steps not durable)

Commands (times: ``5s``, ``250ms``; output: the notable events the command caused, one
``<time> <who> <what>`` line each, then any answer):

- ``factory [seed=N] [cycle=DUR] [outage=DUR]``, input ``ID makes QxITEM [from QxITEM ...]``
- ``start [ID ...]`` (register the catalog, start the agents: all by default)
- ``tick DUR``: run the factory for DUR
- ``kill ID``, ``restart ID``, ``drain ID``, ``undrain ID``
- ``partition A B`` (the link between two processes; ``coordinator`` is one), ``heal [A B]``
- ``outage [DUR]``: the coordinator has no leader for DUR
- ``require ID [QxITEM ...]``: the node's requirements change (fosctl apply)
- ``flow [ID]``: the current flow's edges (around ID), ``consumer<-supplier item rank``
- ``produced``: final products so far
- ``expect flow C<-S ...`` / ``expect no-flow C<-S``: ``ok`` or ``not ok: ...``
- ``expect alive ID ...`` / ``expect down ID ...`` (the coordinator's view)
- ``expect audit clean``: invariants I1, I5, I6 and the audit (0 lost, 0 duplicated) now
- ``finish``: stop, settle and run every check of a run (``ok`` or the broken one)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fos_agent.audit import audit_states
from fos_agent.rules.weights import need_shares
from fos_agent.testing.factory.agent import AgentSettings, StageCode, always_succeeds
from fos_agent.testing.factory.clock import Rng
from fos_agent.testing.factory.factory import Factory, FactorySettings, Shares
from fos_agent.testing.invariants import check_safety
from fos_raft.model import ItemReq, NodeSpec

SEPARATOR = "----"


@dataclass
class Block:
    command: str
    input: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # the lines above it


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    comments: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            if line.startswith("#"):
                comments.append(line)
            i += 1
            continue
        block = Block(line.strip(), comments=comments)
        comments = []
        i += 1
        while i < len(lines) and lines[i] != SEPARATOR:
            block.input.append(lines[i].strip())
            i += 1
        i += 1  # the separator
        while i < len(lines) and lines[i].strip():
            block.expected.append(lines[i])
            i += 1
        blocks.append(block)
    return blocks


def render(blocks: list[Block], outputs: list[list[str]]) -> str:
    parts = []
    for block, out in zip(blocks, outputs, strict=True):
        head = [*block.comments, block.command, *block.input, SEPARATOR, *out]
        parts.append("\n".join(head))
    return "\n\n".join(parts) + "\n"


def duration(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1000.0
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


def _req(text: str) -> ItemReq:
    qty, _, item = text.partition("x")
    return ItemReq(item, int(qty))


def node_spec(line: str, port: int) -> NodeSpec:
    """``ID makes QxITEM [from QxITEM ...]``"""
    words = line.split()
    if len(words) < 3 or words[1] != "makes" or (len(words) > 3 and words[3] != "from"):
        raise ValueError(f"not a node line: {line!r} (ID makes QxITEM [from QxITEM ...])")
    return NodeSpec(words[0], f"127.0.0.1:{port}", _req(words[2]),
                    tuple(_req(w) for w in words[4:]))


class Runner:
    """Runs one transcript's commands against one simulated factory."""

    def __init__(self, rng_of: Callable[[int], Rng], stage: StageCode = always_succeeds,
                 shares: Shares | None = need_shares) -> None:
        self.rng_of = rng_of
        self.stage = stage
        self.shares = shares
        self.factory: Factory | None = None
        self._out: list[str] = []

    def _note(self, at: str, who: str, what: str) -> None:
        self._out.append(f"{at} {who} {what}")

    def run(self, block: Block) -> list[str]:
        self._out = []
        words = block.command.split()
        cmd, args = words[0], words[1:]
        try:
            answer = self._run(cmd, args, block.input)
        except (ValueError, KeyError, AssertionError) as exc:
            answer = [f"error: {type(exc).__name__}: {exc}"]
        return self._out + answer

    @property
    def f(self) -> Factory:
        if self.factory is None:
            raise ValueError("no factory yet (the first command must be 'factory')")
        return self.factory

    def _run(self, cmd: str, args: list[str], lines: list[str]) -> list[str]:
        if cmd == "factory":
            opts = dict(a.split("=", 1) for a in args)
            specs = [node_spec(line, 20000 + n) for n, line in enumerate(lines)]
            settings = FactorySettings(
                agent=AgentSettings(cycle_s=duration(opts.get("cycle", "1s"))),
                leader_outage_s=duration(opts.get("outage", "3s")))
            self.factory = Factory(specs, self.rng_of(int(opts.get("seed", "1"))), settings,
                                   self.stage, shares=self.shares)
            self.factory.trace.listeners.append(self._note)
            return ["ok"]
        f = self.f
        simple: dict[str, Callable[[str], object]] = {
            "kill": f.kill, "restart": f.restart, "drain": f.drain, "undrain": f.undrain}
        if cmd == "start":
            f.start(args or None)
        elif cmd == "tick":
            f.run_for(duration(args[0]))
        elif cmd in simple:
            simple[cmd](args[0])
        elif cmd == "partition":
            f.partition(args[0], args[1])
        elif cmd == "heal":
            f.heal(*(args[:2] if args else ()))
        elif cmd == "outage":
            f.outage(duration(args[0]) if args else None)
        elif cmd == "require":
            spec = f.specs[args[0]]
            f.update_spec(NodeSpec(spec.node_id, spec.address, spec.produces,
                                   tuple(_req(a) for a in args[1:]), spec.capacity))
        elif cmd == "flow":
            return [f"{c}<-{s} {item} {rank}" for c, s, item, rank in f.flow_edges()
                    if not args or args[0] in (c, s)] or ["(no edges)"]
        elif cmd == "produced":
            return [f"{f.finished} final products at {f.now:.3f}"]
        elif cmd == "expect":
            return [self._expect(args)]
        elif cmd == "finish":
            result = f.finish()
            return ["ok" if result.ok else f"not ok: {result.error}"]
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return []

    def _expect(self, args: list[str]) -> str:
        f = self.f
        what, rest = args[0], args[1:]
        if what in ("flow", "no-flow"):
            edges = {(c, s) for c, s, _, _ in f.flow_edges()}
            wanted = [tuple(e.split("<-", 1)) for e in rest]
            bad = [f"{c}<-{s}" for c, s in wanted if ((c, s) in edges) != (what == "flow")]
            return "ok" if not bad else f"not ok: {'absent' if what == 'flow' else 'present'}" \
                                        f" {' '.join(bad)}"
        if what in ("alive", "down"):
            bad = [n for n in rest if f.alive(n) != (what == "alive")]
            return "ok" if not bad else f"not ok: {' '.join(bad)} not {what}"
        if what == "audit" and rest == ["clean"]:
            check_safety(f.agents)
            report = audit_states({n: a.store.full() for n, a in f.agents.items()})
            bad = report.lost or report.duplicated or report.inconsistent
            return "ok" if not bad else f"not ok: {report.summary()}"
        raise ValueError(f"unknown expectation {' '.join(args)!r}")


def run_text(text: str, rng_of: Callable[[int], Rng], stage: StageCode = always_succeeds,
             shares: Shares | None = need_shares) -> tuple[str, list[str]]:
    """Run a transcript (``rng_of(seed)`` makes the factory's random.Random; ``shares``
    as for Factory); returns the text with the actual outputs and the list of mismatches
    (``command: expected ... got ...``)."""
    blocks = parse(text)
    runner = Runner(rng_of, stage, shares)
    outputs = [runner.run(b) for b in blocks]
    problems = [f"{b.command}:\n  expected {b.expected}\n  got      {out}"
                for b, out in zip(blocks, outputs, strict=True) if out != b.expected]
    problems += [f"{b.command}: {line}" for b, out in zip(blocks, outputs, strict=True)
                 for line in out if line.startswith(("not ok", "error"))]
    return render(blocks, outputs), problems
