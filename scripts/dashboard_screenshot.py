"""Take docs/dashboard.png: run the demo (fos-sim --scenario examples/demo.toml --dashboard)
and photograph the floor display with headless Chromium while the killed frame press is down.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/dashboard.png] [--at 0.35]

Needs Debian's chromium and playwright (the test extra). Stops fos-sim (by PID) when done.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    p.add_argument("--duration", type=float, default=40.0)
    p.add_argument("--at", type=float, default=0.35, help="share of the run to shoot at")
    args = p.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    sim = subprocess.Popen(
        [str(Path(sys.executable).parent / "fos-sim"), "--scenario", "examples/demo.toml",
         "--duration", str(args.duration), "--dashboard", "127.0.0.1:0", "--plain"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert sim.stdout is not None
        url = ""
        for line in sim.stdout:
            print(line, end="")
            if m := re.search(r"floor display: (http\S+)", line):
                url = m.group(1)
            if url and "agents up" in line:
                break
        if not url:
            print("fos-sim did not report a dashboard URL", file=sys.stderr)
            return 1
        started = time.monotonic()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#graph g.node")
            time.sleep(max(0.0, args.duration * args.at - (time.monotonic() - started)))
            page.screenshot(path=str(args.out), full_page=False)
            browser.close()
        print(f"wrote {args.out}")
        return 0
    finally:
        if sim.poll() is None:
            os.kill(sim.pid, signal.SIGINT)  # fos-sim stops everything it started
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(sim.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
