"""fos-dashboard in a real browser: headless Chromium (the system's, driven by Playwright)
against a real 3-replica coordinator cluster, real agent processes and a real fos-dashboard
process. Skips with a reason when Chromium or Playwright is missing (CI installs both)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from agent_util import Procs, agent_command, wait_until

from fos_raft.api.client import CoordinatorClient
from fos_raft.cli.launcher import LocalCluster, free_port
from fos_raft.model import ItemReq, NodeSpec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium not found: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed: pip install -e '.[test]'")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Agents detect a dead neighbour fast here, so "down within 3 s" measures the dashboard,
# not the detector's default patience.
DETECTOR = ["--ping-interval", "0.3", "--suspect-after", "0.8"]
SPECS = [
    NodeSpec("ore-1", "", ItemReq("ore", 1)),
    NodeSpec("ore-2", "", ItemReq("ore", 1)),
    NodeSpec("smelter", "", ItemReq("ingot", 1), (ItemReq("ore", 1),)),
]


def dashboard_command() -> list[str]:
    script = Path(sys.executable).parent / "fos-dashboard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fos_dashboard.cli"]


@dataclass
class Floor:
    cluster: LocalCluster
    procs: Procs
    root: Path
    url: str
    addresses: dict[str, str] = field(default_factory=dict)

    def start_agent(self, node: str) -> None:
        self.procs.start(node, [
            *agent_command(), "--node-id", node, "--listen", self.addresses[node],
            "--coordinators", ",".join(self.cluster.grpc_addresses),
            "--data-dir", str(self.root / node), "--cycle-s", "0.2", *DETECTOR])

    def coordinator(self, call: Any) -> Any:
        """Run ``call(client)`` on a loop of its own thread: Playwright's sync API keeps an
        event loop running in this one."""
        async def go() -> Any:
            async with CoordinatorClient(self.cluster.grpc_addresses, timeout=20.0) as c:
                return await call(c)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    root = tmp_path_factory.mktemp("dashboard")
    cluster = LocalCluster(3, root / "coord")
    procs = Procs(root)
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        floor = Floor(cluster, procs, root, url="")
        specs = []
        for s in SPECS:
            floor.addresses[s.node_id] = f"127.0.0.1:{free_port()}"
            specs.append(NodeSpec(s.node_id, floor.addresses[s.node_id], s.produces,
                                  s.requires))

        async def register(c: CoordinatorClient) -> None:
            for s in specs:
                await c.register(s)
        floor.coordinator(register)
        for s in specs:
            floor.start_agent(s.node_id)
        ready = root / "dashboard.url"
        procs.start("dashboard", [*dashboard_command(), "--coordinators",
                                  ",".join(cluster.grpc_addresses), "--listen", "127.0.0.1:0",
                                  "--ready-file", str(ready)])
        wait_until(ready.exists, timeout=30, what="dashboard ready file")
        floor.url = ready.read_text().strip()
        yield floor
    finally:
        procs.stop_all()
        cluster.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, floor: Floor) -> Iterator[Any]:
    """A fresh page on the dashboard; fails the test if the page logged any error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(floor.url)
    try:
        yield page
        assert errors == [], f"console errors: {errors}"
    finally:
        context.close()


def node(page: Any, node_id: str, state: str | None = None) -> str:
    selector = f'#graph g.node[data-node-id="{node_id}"]'
    return selector + (f'[data-state="{state}"]' if state else "")


def test_graph_shows_every_node_and_the_tables_fill(page: Any, floor: Floor) -> None:
    for s in SPECS:
        page.wait_for_selector(node(page, s.node_id, "in-flow"), timeout=20_000)
    assert page.locator("#graph g.node").count() == len(SPECS)
    assert page.locator("#graph path.edge.primary").count() >= 1
    assert page.locator("#node-rows tr").count() == len(SPECS)
    # the coordinator details are folded away, but there
    page.wait_for_selector("#cluster-body .badge.leader", state="attached")
    assert not page.is_visible("#cluster-body")
    assert page.locator("#link").inner_text() == "live"
    # the agents' production reports reach the node table, in words
    page.wait_for_function(
        """() => [...document.querySelectorAll('#node-rows tr[data-node-id="ore-1"] td.cycles')]
                 .some(td => /^[1-9][0-9]* made a batch/.test(td.textContent))""",
        timeout=20_000)
    assert "skipped" not in page.inner_text("#node-rows")
    # a source batch traces back to itself (ore-1 has made batches: its cycles count)
    page.fill("#trace-batch", "ore-1:1")
    page.click("#trace-form button")
    page.wait_for_selector('#trace-table tr[data-batch-id="ore-1:1"]', timeout=10_000)
    # a drain is drawn (and listed) without a reload, and so is the undrain
    floor.coordinator(lambda c: c.drain("ore-2"))
    page.wait_for_selector(node(page, "ore-2", "drained"), timeout=10_000)
    page.wait_for_selector('#event-list li.event.drain:has-text("ore-2")', timeout=5_000)
    floor.coordinator(lambda c: c.undrain("ore-2"))
    page.wait_for_selector(node(page, "ore-2", "in-flow"), timeout=10_000)


def test_trace_walks_a_real_batch_back_to_its_ore(page: Any, floor: Floor) -> None:
    """The trace lookup asks the agents' Lineage RPC: the smelter's first ingot, back to the
    ore batch it was made of, supplied by one of the ore nodes."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('#node-rows tr')].some("
        "r => r.textContent.includes('smelter'))", timeout=20_000)
    page.click('nav a[href="#trace"]')
    page.fill("#trace-batch", "smelter:1")
    deadline = time.monotonic() + 30
    while True:  # the first ingot may not be made yet: look again until it is
        page.click("#trace-form button")
        page.wait_for_function(
            "() => !document.querySelector('#trace-result').textContent.startsWith('tracing')")
        if page.locator('#trace-table tr[data-batch-id="smelter:1"]').count() == 1:
            break
        assert time.monotonic() < deadline, page.inner_text("#trace-result")
        page.wait_for_timeout(500)
    ore_rows = page.locator('#trace-table tr[data-batch-id^="ore-"]')
    assert ore_rows.count() == 1
    assert "partial" not in page.inner_text("#trace-result")
    ore_row = ore_rows.first.inner_text()
    assert "ore" in ore_row and "smelter" in ore_row  # made of ore, delivered to the smelter


def test_a_sigkilled_supplier_turns_down_within_3_s_and_back_after_restart(
        page: Any, floor: Floor) -> None:
    page.wait_for_selector('#graph path.edge.primary[data-consumer="smelter"]',
                           state="attached", timeout=20_000)
    victim = page.get_attribute('#graph path.edge.primary[data-consumer="smelter"]',
                                "data-supplier")
    assert victim in ("ore-1", "ore-2")
    killed_at = time.monotonic()
    floor.procs.kill(victim)
    page.wait_for_selector(node(page, victim, "down"), timeout=3_000)
    took = time.monotonic() - killed_at
    assert took < 3.0, f"{victim} shown down after {took:.2f} s"
    # the page tells what happened, in words, without a reload
    page.wait_for_selector(f'#event-list li.event.death:has-text("{victim}")', timeout=5_000)
    floor.start_agent(victim)
    page.wait_for_selector(node(page, victim, "in-flow"), timeout=30_000)
    page.wait_for_selector(f'#event-list li.event.rejoin:has-text("{victim}")', timeout=5_000)


def test_the_finished_count_on_the_page_is_the_audits(page: Any, floor: Floor) -> None:
    """After a run, the first panel's count of finished ingots is what the audit of the
    agents' WALs counts (batches made by the final stage); the bottleneck is named."""
    from fos_agent.audit import audit

    page.wait_for_selector('#production-items .item-card[data-item="ingot"]', timeout=20_000)
    assert page.locator("#production-items .item-card").count() == 1  # ore is not final
    for s in SPECS:  # end of the run: each agent stops and sends its last report
        assert floor.procs.terminate(s.node_id) == 0
    report = audit({s.node_id: floor.root / s.node_id for s in SPECS})
    assert report.ok, report.summary()
    made = report.produced_by["smelter"]
    assert made > 0
    page.wait_for_function(
        """(n) => document.querySelector(
             '#production-items .item-card[data-item="ingot"] .finished')?.textContent === n""",
        arg=str(made), timeout=20_000)
    assert "bottleneck" in page.inner_text("#bottleneck")
    assert page.get_attribute('.item-card[data-item="ingot"] .finished', "title")


def test_page_stays_usable_at_200_nodes(page: Any, floor: Floor) -> None:
    """Runs last in the module: it grows the catalog to 200 nodes (specs only, no agents)."""
    extra = 200 - len(SPECS)
    layers, per_layer = 10, extra // 10

    specs = [NodeSpec(f"n{layer}-{k}", f"127.0.0.1:{free_port()}", ItemReq(f"part{layer}", 1),
                      (ItemReq(f"part{layer - 1}", 1),) if layer else ())
             for layer in range(layers)
             for k in range(per_layer + (extra % layers if layer == layers - 1 else 0))]

    async def register(c: CoordinatorClient) -> None:
        for start in range(0, len(specs), 25):  # concurrent writes share Raft rounds
            await asyncio.gather(*(c.register(s) for s in specs[start:start + 25]))
    floor.coordinator(register)
    page.wait_for_function("() => document.querySelectorAll('#graph g.node').length === 200",
                           timeout=20_000)
    render_ms = page.evaluate("() => window.fosRender.lastMs")
    assert render_ms < 1_000, f"one render of 200 nodes took {render_ms:.0f} ms"
    # still responsive: navigation and the trace form work while updates stream in
    page.click('nav a[href="#trace"]')
    page.fill("#trace-batch", "n3-1:7")
    page.click("#trace-form button")
    page.wait_for_function(
        "() => document.querySelector('#trace-result').textContent.includes('n3-1:7')",
        timeout=20_000)
    assert page.locator("#node-rows tr").count() == 200
