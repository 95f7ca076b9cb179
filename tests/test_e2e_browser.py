"""End to end in a real headless Chromium (Playwright): start the app, launch a quick
personalized run, watch a swap appear, then find the users' tokens on the Users page.

Uses Debian's ``/usr/bin/chromium`` (never ``playwright install``) with the flags of
DESIGN §6; skips cleanly when Chromium or Playwright is missing. Screenshots are saved
in the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("streamlit did not become healthy")


@pytest.fixture
def server(tmp_path, demo_backbone_dir):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
    port = _free_port()
    env = {**os.environ, "PAPREC_STORE": str(tmp_path / "runs.sqlite"), "PAPREC_BACKBONE": str(demo_backbone_dir),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_launch_watch_and_users_in_chromium(server, tmp_path, demo_store):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(90_000)
            t0 = time.time()
            page.goto(server)
            page.get_by_text("Start a prompt search on a dataset").wait_for()
            first_render = time.time() - t0
            data = page.get_by_role("textbox", name="Dataset folder")
            data.fill(str(demo_store))
            data.press("Enter")
            page.get_by_text("Personalized prompt (one token per user)").click()
            length = page.get_by_role("spinbutton", name="Trigger length l")
            length.fill("3")
            length.press("Enter")
            # the loss criterion: a random tiny backbone then still improves (and hands out user tokens)
            page.get_by_role("combobox", name=re.compile("Selection criterion")).click()
            page.get_by_role("option", name="loss").click()
            expect(page.get_by_role("combobox", name=re.compile("Selection criterion"))).to_have_value("loss")
            page.screenshot(path=str(shots / "1-form.png"), full_page=True)
            page.get_by_role("button", name="Start").click()

            page.get_by_text(re.compile(r"Last round \d+: ")).first.wait_for()  # a decided round is shown live
            expect(page.locator(".pp-prompt")).to_be_visible()
            page.screenshot(path=str(shots / "2-watch.png"), full_page=True)
            page.get_by_text("Ended (").wait_for(timeout=180_000)  # the quick run ends by itself
            page.screenshot(path=str(shots / "3-finished.png"), full_page=True)

            page.get_by_role("link", name="Users").click()
            counts = page.get_by_text(re.compile(r"\d+ of 60 users have their own token"))
            counts.wait_for()
            n = int(re.match(r"\s*(\d+)", counts.inner_text()).group(1))
            assert n > 0, counts.inner_text()
            page.get_by_text("Find the users who got a token").wait_for()
            one_user = page.get_by_text(re.compile(r"User \d+ (received the token|keeps the default token)"))
            expect(one_user).to_be_visible()
            page.screenshot(path=str(shots / "4-users.png"), full_page=True)
            assert not page.get_by_text("Traceback").count()
        finally:
            browser.close()
    assert first_render < 60, f"first page took {first_render:.1f}s"
    assert len(list(shots.glob("*.png"))) == 4
