"""fos-dashboard at floor size: page load and render time in headless Chromium, and how long
a coordinator change takes to reach the page.

    python -m bench.bench_dashboard [--nodes 200] [--reps 10]

Real processes: a 3-replica coordinator cluster with ``--nodes`` registered specs (10 layers,
each needing the previous layer's item; no agents run, so every node is alive and in the
flow as far as the coordinator knows, and the dashboard's Stats reads fail fast), one
``fos-dashboard`` process, and the system's Chromium driven by Playwright. Per repetition:

- load: a fresh page, navigation start -> first render with every node drawn (includes
  fetching the assets and the first server-sent event);
- render: the JS time of one full render of graph + tables (``window.fosRender.lastMs``);
- update: a ``drain`` issued (a fresh client: connect, Raft commit) -> the node drawn
  drained on the page (WatchFlow push, the dashboard's ListNodes read, the SSE push, the
  render), then the same for ``undrain``; also from the write's reply to the page (the
  dashboard's share alone, an upper bound: the reply may arrive after the push).

Prints each repetition and medians / max. Needs chromium (apt-get install chromium) and
playwright (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.sim.dashboard import dashboard_command
from fos_raft.api.client import CoordinatorClient
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.model import ItemReq, NodeSpec

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LAYERS = 10


def catalog(nodes: int) -> list[NodeSpec]:
    per_layer = max(1, nodes // LAYERS)
    specs = []
    for i in range(nodes):
        layer = min(i // per_layer, LAYERS - 1)
        requires = (ItemReq(f"part{layer - 1}", 1),) if layer else ()
        specs.append(NodeSpec(f"n{layer}-{i}", f"127.0.0.1:{free_port()}",
                              ItemReq(f"part{layer}", 1), requires))
    return specs


async def register(addresses: list[str], specs: list[NodeSpec]) -> None:
    async with CoordinatorClient(addresses, timeout=30.0) as client:
        for spec in specs:
            await client.register(spec, from_agent=True)  # drawn in-flow, as with agents


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found: apt-get install chromium")
        return 2
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    cluster = LocalCluster(3, root / "coord")
    dashboard: subprocess.Popen[bytes] | None = None
    loads, renders, updates, after_write = [], [], [], []
    try:
        cluster.start()
        cluster.wait_for_leader(30.0)
        addresses = list(cluster.grpc_addresses)
        specs = catalog(args.nodes)
        asyncio.run(register(addresses, specs))
        ready = root / "url"
        dashboard = subprocess.Popen(
            [*dashboard_command(), "--coordinators", ",".join(addresses), "--listen",
             "127.0.0.1:0", "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = ready.read_text().strip()
        drained = specs[len(specs) // 2].node_id
        selector = f'#graph g.node[data-node-id="{drained}"][data-state="{{}}"]'
        with sync_playwright() as pw, ThreadPoolExecutor(1) as pool:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for rep in range(args.reps):
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                page.goto(url)
                page.wait_for_function(
                    f"() => document.querySelectorAll('#graph g.node').length === {len(specs)}",
                    timeout=60_000)
                load = page.evaluate("() => window.fosRender.firstAtMs")
                render = page.evaluate("() => window.fosRender.lastMs")
                rep_updates = []
                for write, state in (("drain", "drained"), ("undrain", "in-flow")):
                    issued = time.monotonic()
                    # own thread: Playwright's sync API keeps a loop running in this one
                    pool.submit(asyncio.run, _write(addresses, write, drained)).result()
                    returned = time.monotonic()
                    page.wait_for_selector(selector.format(state), timeout=30_000)
                    rep_updates.append((time.monotonic() - issued) * 1000)
                    after_write.append((time.monotonic() - returned) * 1000)
                page.close()
                loads.append(load)
                renders.append(render)
                updates += rep_updates
                print(f"rep {rep}: load {load:.0f} ms, render {render:.1f} ms, update "
                      + " / ".join(f"{u:.0f}" for u in rep_updates) + " ms", flush=True)
            browser.close()
    finally:
        if dashboard is not None and dashboard.poll() is None:
            os.kill(dashboard.pid, signal.SIGTERM)
            dashboard.wait(10)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.nodes} nodes, {args.reps} reps, {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, values in (("page load to first full render", loads),
                         ("one render (graph + tables)", renders),
                         ("drain/undrain issued -> page shows it", updates),
                         ("write returned -> page shows it", after_write)):
        print(f"{name}: median {statistics.median(values):.1f} ms, max {max(values):.1f} ms")
    return 0


async def _write(addresses: list[str], call: str, node: str) -> None:
    async with CoordinatorClient(addresses, timeout=30.0) as client:
        await getattr(client, call)(node)


if __name__ == "__main__":
    raise SystemExit(main())
