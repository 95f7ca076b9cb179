"""End to end in a real headless Chromium (Playwright) at a projector's 1280x720: start the
app (its first render time is printed), launch a personalized run and watch a swap appear
(time printed), start a second run and see it watched, test it on Compare (verdict and
p-values), check no label is cut short, then find the users' tokens on the Users page.

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


# Elements whose text the browser draws cut short (an ellipsis, or clipped by its box), with
# what they hold: at a projector's 1280x720 a metric's label or value must not be cut.
TRUNCATED_JS = """
() => {
  const clips = (el) => {
    const cs = getComputedStyle(el);
    return cs.textOverflow === 'ellipsis' || cs.overflow === 'hidden' || cs.overflowX === 'hidden';
  };
  const out = [];
  for (const el of document.querySelectorAll('[data-testid="stMain"] *')) {
    const text = (el.innerText || '').trim();
    if (!text || el.children.length > 0 || el.offsetParent === null) continue;
    // the text's own box or one of the few boxes around it cuts it short
    let box = el;
    for (let up = 0; up < 4 && box; up++, box = box.parentElement) {
      if (clips(box) && Math.max(el.scrollWidth, box.scrollWidth) > box.clientWidth + 1) {
        out.push(text);
        break;
      }
    }
  }
  return out;
}
"""


def _start(page, demo_store, personalized: bool, length: int, epochs: int | None = None) -> float:
    """Fill the form and press Start; returns the time it was pressed."""
    import re

    from playwright.sync_api import expect

    data = page.get_by_role("textbox", name="Dataset folder")
    data.fill(str(demo_store))
    data.press("Enter")
    toggle = page.get_by_role("switch", name="Personalized")
    if toggle.is_checked() != personalized:
        page.get_by_text("Personalized", exact=True).click()
        expect(toggle).to_be_checked(checked=personalized)
    box = page.get_by_role("spinbutton", name="Trigger length l")
    box.fill(str(length))
    box.press("Enter")
    if epochs is not None:
        box = page.get_by_role("spinbutton", name="Max epochs")
        box.fill(str(epochs))
        box.press("Enter")
    # the loss criterion: a random tiny backbone then still improves (and hands out user tokens)
    crit = page.get_by_role("combobox", name=re.compile("Selection criterion"))
    for _ in range(3):  # a rerun of the page (after each Enter) may close the list under the click
        if crit.input_value() == "loss":
            break
        crit.click()
        option = page.get_by_role("option", name="loss")
        try:
            option.click(timeout=10_000)
        except Exception:  # noqa: BLE001 - closed by a rerun: open it again
            page.keyboard.press("Escape")
    expect(crit).to_have_value("loss")
    page.get_by_role("button", name="Start").click()
    return time.time()


def _open(page, link: str, caption: str) -> None:
    """Go to a page by its sidebar link, clicking again when the click is lost: under load a click
    that lands while the current page reruns can be dropped (seen on a screenshot: still on
    Launch & watch, the Users link highlighted)."""
    for _ in range(4):
        page.get_by_role("link", name=link).click()
        try:
            page.get_by_text(caption).first.wait_for(timeout=20_000)
            return
        except Exception:  # noqa: BLE001 - the click was lost: click again
            pass
    page.get_by_text(caption).first.wait_for()


def test_launch_watch_compare_and_users_in_chromium(server, tmp_path, demo_store):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})  # a projector
            page.set_default_timeout(90_000)
            # the check itself sees a label cut short the way st.metric cuts one
            page.set_content('<div data-testid="stMain"><div style="width:60px;overflow:hidden;'
                             'text-overflow:ellipsis;white-space:nowrap"><p>Best validation score</p></div>'
                             '<div style="width:400px;overflow:hidden"><p>fits</p></div></div>')
            assert page.evaluate(TRUNCATED_JS) == ["Best validation score"]
            t0 = time.time()
            page.goto(server)
            page.get_by_text("Start a prompt search on a dataset").wait_for()
            first_render = time.time() - t0
            print(f"\nfirst render: {first_render:.1f} s")
            page.screenshot(path=str(shots / "1-form.png"), full_page=True)

            started = _start(page, demo_store, personalized=True, length=3)
            watching = page.get_by_role("combobox", name="Watching")
            expect(watching).to_have_value(re.compile(r"#1\b"))
            page.get_by_text(re.compile(r"Last round \d+: ")).first.wait_for()  # a decided round, live
            print(f"first swap on screen: {time.time() - started:.1f} s after Start")
            expect(page.locator(".pp-prompt")).to_be_visible()
            page.screenshot(path=str(shots / "2-watch.png"), full_page=True)

            # a second run right after: the panel must switch to it (it used to stay on the first)
            _start(page, demo_store, personalized=False, length=2, epochs=1)
            expect(watching).to_have_value(re.compile(r"#2\b"))
            page.get_by_text("Ended (").wait_for(timeout=180_000)  # run #2, one epoch
            assert page.evaluate(TRUNCATED_JS) == [], "cut short at 1280x720 on Launch & watch"
            page.screenshot(path=str(shots / "3-finished.png"), full_page=True)

            _open(page, "Compare", "Seen manual, Unseen manual and the learned prompts")  # run #2, finished
            page.get_by_role("button", name="Compute test results").click()
            page.get_by_text(re.compile(r"p against Seen manual")).wait_for(timeout=180_000)
            verdict = page.get_by_text(re.compile(r"vs Seen manual \(2-3\):.*\(p = "))
            expect(verdict.first).to_be_visible()
            assert page.evaluate(TRUNCATED_JS) == [], "cut short at 1280x720 on Compare"
            page.screenshot(path=str(shots / "4-compare.png"), full_page=True)

            _open(page, "Launch & watch", "Start a prompt search on a dataset")
            # Pick run #1 until the server has drawn it (only a personalized run counts users with a
            # token). The box shows a pick at once, but a pick made while the page's own rerun is
            # still under way can be dropped by the server, which then redraws run #2 (and a page
            # switch then opened Users on run #2: the flaky failures under load).
            for _ in range(4):
                watching.click()
                page.get_by_role("option", name=re.compile(r"#1\b")).click()
                try:
                    page.get_by_text("Users with own token").wait_for(timeout=20_000)
                    break
                except Exception:  # noqa: BLE001 - the pick did not take: pick again
                    page.keyboard.press("Escape")
            expect(watching).to_have_value(re.compile(r"#1\b"))
            page.get_by_text("Users with own token").wait_for()
            page.get_by_text("Ended (").wait_for(timeout=240_000)  # the personalized run ends by itself
            page.get_by_text("Users with own token").wait_for()
            _open(page, "Users", "Per-user tokens of a run")
            counts = page.get_by_text(re.compile(r"\d+ of 60 users have their own token"))
            counts.wait_for()
            n = int(re.match(r"\s*(\d+)", counts.inner_text()).group(1))
            assert n > 0, counts.inner_text()
            page.get_by_text("Top 10 recommendations").wait_for()
            one_user = page.get_by_text(re.compile(r"User \d+ (received the token|keeps the default token)"))
            expect(one_user).to_be_visible()
            page.screenshot(path=str(shots / "5-users.png"), full_page=True)
            assert not page.get_by_text("Traceback").count()
        except BaseException:
            page.screenshot(path=str(shots / "failed.png"), full_page=True)  # where it stopped, for the log
            raise
        finally:
            browser.close()
    assert first_render < 60, f"first page took {first_render:.1f}s"
    assert len(list(shots.glob("*.png"))) == 5
