"""Retake the README's screenshots (``assets/screenshots/``) at a projector's 1280x720 and print
the demo's timings: the app's first render, and the first swap on screen after Start.

    python scripts/screenshots.py [--out assets/screenshots] [--port 8597]

Runs the dashboard as a user does (the bundled demo store and demo backbone) against a
temporary run store, in Debian's ``/usr/bin/chromium`` through Playwright (never
``playwright install``), starts a quick personalized search, shoots Launch & watch once a
few rounds are decided and Users once users hold tokens, then stops the run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 720}


def serve(port: int, store: Path) -> subprocess.Popen:
    env = {**os.environ, "PAPREC_STORE": str(store),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 90
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the dashboard did not start")


def top(page) -> None:
    """Scroll the app back to its top (Start scrolls the form) and move the pointer off the charts."""
    page.mouse.move(5, 700)
    page.evaluate("""() => { for (const el of document.querySelectorAll('*'))
                               if (el.scrollTop > 0) el.scrollTop = 0; }""")
    time.sleep(0.5)


def wait_for_round(page, rounds: int, timeout_s: float = 300) -> int:
    """Wait until the watch panel's last decided round is ``rounds`` or later; returns it. The panel
    redraws every few seconds, so a fast round can be decided and passed between two redraws (seen:
    round 4 never on screen, the script waited out its timeout)."""
    pattern = re.compile(r"Last round (\d+): ")
    end = time.time() + timeout_s
    while time.time() < end:
        found = pattern.search(page.inner_text("body"))
        if found and int(found.group(1)) >= rounds:
            return int(found.group(1))
        time.sleep(0.2)
    raise SystemExit(f"round {rounds} was not on screen within {timeout_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "assets" / "screenshots"))
    ap.add_argument("--port", type=int, default=8597)
    ap.add_argument("--rounds", type=int, default=4, help="decided rounds before the Launch shot")
    args = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = serve(args.port, Path(tmp) / "runs.sqlite")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(300_000)
                t0 = time.time()
                page.goto(f"http://127.0.0.1:{args.port}")
                page.get_by_text("Start a prompt search on a dataset").wait_for()
                print(f"first render: {time.time() - t0:.1f} s")
                page.get_by_text("Personalized", exact=True).click()
                expect(page.get_by_role("switch", name="Personalized")).to_be_checked()
                page.get_by_role("button", name="Start").click()
                started = time.time()
                page.get_by_text(re.compile(r"Last round \d+: ")).first.wait_for()
                print(f"first swap on screen: {time.time() - started:.1f} s after Start")
                shown = wait_for_round(page, args.rounds)
                print(f"round {shown} on screen: {time.time() - started:.1f} s after Start")
                top(page)
                page.screenshot(path=str(out / "launch.png"))
                page.get_by_role("link", name="Users").click()
                page.get_by_text(re.compile(r"users have their own token")).wait_for()
                page.get_by_text("Top 10 recommendations").wait_for()
                time.sleep(1.0)  # the chart's first paint
                top(page)
                page.screenshot(path=str(out / "users.png"))
                page.get_by_role("link", name="Launch & watch").click()
                page.get_by_test_id("stMain").get_by_role("button", name="Stop").click()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for name in ("launch.png", "users.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
