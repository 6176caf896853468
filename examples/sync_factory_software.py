"""A frame press as synchronous factory software: no asyncio, a blocking PLC call per cycle.

Most factory code is synchronous (a PLC driver, a serial line, a vendor SDK). `SyncAgent`
is the node agent for it: ``for inputs in agent.cycles()`` blocks until one batch of every
input is held, and ``agent.emit(inputs)`` consumes them and queues the output in one
durable step. The agent's networking runs on its own thread, so the blocking PLC
handshake below does not stop the node answering its neighbours and the coordinator.

    python examples/sync_factory_software.py                 # self-contained demo
    python examples/sync_factory_software.py --coordinators 10.0.0.1:7000,10.0.0.2:7000 \\
        --data-dir /var/lib/fos/press-8 --cycles 0           # against a real cluster

The demo starts a one-replica coordinator and a simulated saw (the wood supplier) in this
process, then runs the press for ``--cycles`` cycles (0 = until Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from fos_agent import FosError, ItemReq, SyncAgent
from fos_raft.runtime.logging import configure_logging

log = logging.getLogger("press")


def plc_handshake(wood_id: str, seconds: float) -> None:
    """Stands in for a blocking call to the press's PLC (it holds this thread)."""
    time.sleep(seconds)


def press(agent: SyncAgent, cycles: int, plc_s: float) -> int:
    done = 0
    for inputs in agent.cycles():
        wood = inputs["wood"]
        plc_handshake(wood.batch_id, plc_s)
        frames = agent.emit(inputs)
        done += 1
        log.info("frames made: %s from wood %s", frames.batch_id, wood.batch_id)
        if cycles and done >= cycles:
            break
    return done


def main(args: argparse.Namespace) -> int:
    base = Path(args.data_dir or tempfile.mkdtemp(prefix="fos-sync-press-"))
    coordinators = [c for c in args.coordinators.split(",") if c]
    cluster = None
    saw: SyncAgent | None = None
    try:
        if not coordinators:  # self-contained demo: a local coordinator and a simulated saw
            from fos_raft.cli.launcher import LocalCluster

            cluster = LocalCluster(1, base / "coordinator")
            cluster.start()
            cluster.wait_for_leader(timeout=30)
            coordinators = cluster.grpc_addresses
            saw = SyncAgent("saw-2", ItemReq("wood", 3), coordinators=coordinators,
                            data_dir=base / "saw-2", cycle_s=0.2)
            saw.start()
        with SyncAgent("press-8", produces=ItemReq("window_frame", 2),
                       requires=[ItemReq("wood", 3)], listen=args.listen,
                       coordinators=coordinators, data_dir=base / "press-8") as agent:
            log.info("press ready at %s", agent.address)
            done = press(agent, args.cycles, args.plc_s)
            log.info("press done: %d cycles, %d batches received", done,
                     agent.metrics["batches_received"])
    except FosError as exc:
        print(f"sync_factory_software: {exc}")
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if saw is not None:
            saw.stop()
        if cluster is not None:
            cluster.stop()
        if not args.data_dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--coordinators", default="", help="ADDR,... (default: a local demo)")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--cycles", type=int, default=5, help="0: run until Ctrl-C")
    parser.add_argument("--plc-s", type=float, default=0.5, help="the PLC handshake's time")
    parser.add_argument("--log-format", choices=("json", "console"), default=None,
                        help="default: console on a terminal, json otherwise")
    parsed = parser.parse_args()
    configure_logging("press", fmt=parsed.log_format)
    raise SystemExit(main(parsed))
