"""Helper process for tests/test_wal.py: a supplier S and a consumer C, each with its own WAL
and group committer, trading in one process until SIGKILLed.

Usage: python tests/wal_crash_writer.py BASE_DIR SEED. Prints ``READY`` once recovered,
then ``ACK <node> <out|in> <batch_id> <STATE>`` for every record AFTER its transaction is
durable; the test kills it at a random point and checks every acknowledged record. Trades
are left unfinished at random (lost replies, late arrivals, lost confirmations) so that a
kill finds records in every state; the supplier's retries finish them later.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterable
from pathlib import Path

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import (
    Arrived,
    BatchSent,
    Effects,
    Event,
    FlowChanged,
    Message,
    NewRequest,
    Produce,
    Tick,
)
from fos_agent.protocol.records import PutInbound, PutOutbound
from fos_agent.storage.group_commit import GroupCommitter
from fos_agent.storage.wal import Wal
from fos_raft.model import ItemReq

CONFIGS = {
    "S": NodeConfig("S", ItemReq("wood", 1)),
    "C": NodeConfig("C", ItemReq("frame", 1), (ItemReq("wood", 1),)),
}


async def main(base: Path, seed: int) -> None:
    rng = random.Random(seed)
    wals = {n: Wal.open(base / n, n) for n in CONFIGS}
    nodes: dict[str, Node] = {}
    committers = {n: GroupCommitter(w) for n, w in wals.items()}
    boot: list[Message] = []
    for n, config in CONFIGS.items():
        nodes[n], effects = Node.recover(config, wals[n].load())
        boot.extend(effects.messages)
    nodes["S"].handle(FlowChanged(1, frozenset({"C"})))

    async def step(n: str, event: Event) -> Effects:
        effects = nodes[n].handle(event)
        await committers[n].commit(effects.writes)
        lines = []
        for w in effects.writes:
            if isinstance(w, PutOutbound):
                lines.append(f"ACK {n} out {w.record.batch_id} {w.record.state.value}\n")
            elif isinstance(w, PutInbound):
                lines.append(f"ACK {n} in {w.record.batch_id} {w.record.state.value}\n")
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
        return effects

    async def deliver(messages: Iterable[Message]) -> None:
        for msg in messages:
            effects = await step(msg.to, msg)
            await deliver([*effects.messages, *([effects.reply] if effects.reply else [])])

    await deliver(boot)
    print("READY", flush=True)

    async def trader() -> None:
        while True:
            await step("S", Produce())
            if rng.random() < 0.3:
                await step("S", Produce())  # a surplus that stays QUEUED
            (request,) = (await step("C", NewRequest("S", "wood"))).messages
            sent = await step("S", request)
            if isinstance(sent.reply, BatchSent) and rng.random() > 0.1:  # else: reply lost
                await step("C", sent.reply)
                if rng.random() > 0.2:  # else: the goods arrive later (or never, here)
                    arrived = await step("C", Arrived(sent.reply.batch.batch_id))
                    if rng.random() > 0.1:  # else: the confirmation is lost
                        await deliver(arrived.messages)
            inputs = nodes["C"].hold_inputs()
            if inputs is not None and rng.random() < 0.7:
                await step("C", Produce(inputs))
            elif inputs is not None:
                nodes["C"].release(inputs)
            if rng.random() < 0.05:  # the supplier's retry timer
                await deliver((await step("S", Tick())).messages)

    await asyncio.gather(*(trader() for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
