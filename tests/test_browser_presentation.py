"""Browser tier: presentation mode on a projector, and the Compare page.

A real `streamlit run` server on the embedded example (plus a copy as a second run), driven
by Playwright in Debian's chromium: with the mode on, the text of a table, a dropdown, a
caption and the slider's value is larger, the slider's value clears its thumb and the sidebar
is collapsed. With ``CAHP_SCREENSHOTS`` set, every page is saved in both modes there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "default_run"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
SHOTS = Path(os.environ["CAHP_SCREENSHOTS"]) if os.environ.get("CAHP_SCREENSHOTS") else None
PAGES = [  # url path, nav link, title
    ("", "Knee", "Knee: how many heads to keep"),
    ("head_graph", "Head graph", "Head graph"),
    ("clusters", "Clusters per layer", "Clusters per layer"),
    ("proximity", "Proximity bias", "Proximity bias"),
    ("compare", "Compare", "Compare two selections"),
    ("export", "Export", "Export"),
    ("run", "Run", "Run CAHP"),
]
SIZES = """() => {
  const main = (s) => document.querySelector('[data-testid="stMain"] ' + s);
  const px = (e) => e ? parseFloat(getComputedStyle(e).fontSize) : null;
  const grid = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"] *')]
    .find((e) => e.style && e.style.getPropertyValue('--gdg-base-font-style'));
  const value = main('[data-testid="stSliderThumbValue"]');
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  return {
    table: grid ? parseFloat(getComputedStyle(grid).getPropertyValue('--gdg-base-font-style')
      .split(' ').pop()) : null,
    dropdown: px(main('[data-testid="stSelectbox"] input')),
    caption: px(main('[data-testid="stCaptionContainer"] p')),
    slider: px(main('[data-testid="stSliderThumbValue"] p')),
    gap: value ? value.parentElement.getBoundingClientRect().top
      - value.getBoundingClientRect().bottom : null,
    sidebar: sidebar ? sidebar.getBoundingClientRect().right : null,
  };
}"""

if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("presentation-runs")
    shutil.copytree(EXAMPLE, runs / "example-copy")  # a second finished run to compare
    port = _free_port()
    env = {**os.environ, "CAHP_RUNS_DIR": str(runs), "CAHP_DEFAULT_RUN": str(EXAMPLE)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "dashboard" / "app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not start:\n" + process.stdout.read().decode(errors="replace"))
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        remote, errors = [], []

        def watch_request(request):
            parsed = urlparse(request.url)
            if (
                parsed.scheme in ("http", "https", "ws", "wss")
                and parsed.hostname not in LOCAL_HOSTS
            ):
                remote.append(request.url)

        page.on("request", watch_request)
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page, server
        browser.close()
        assert not remote, f"requests left the machine: {remote[:5]}"
        assert not errors, f"page errors: {errors[:5]}"


def _settle(page, title: str) -> None:
    page.get_by_role("heading", name=title).wait_for(timeout=60_000)
    page.wait_for_timeout(2500)
    assert page.locator("[data-testid='stException']").count() == 0, f"exception on {title}"


def _shot(page, name: str) -> None:
    """The whole page (the main area scrolls, so a tall viewport) into CAHP_SCREENSHOTS."""
    if SHOTS is None:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 100, 8000))})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _goto(page, link: str, title: str) -> None:
    """Same session: open the sidebar if collapsed, follow the page's link."""
    expand = page.get_by_test_id("stExpandSidebarButton")
    if expand.count() and expand.is_visible():
        expand.click()
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text=link).first.click()
    _settle(page, title)


def _wait_for(page, check, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while not (sizes := page.evaluate(SIZES)) or not check(sizes):
        if time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    return sizes


def test_presentation_mode_scales_every_text_and_collapses_the_sidebar(browser_page):
    page, url = browser_page
    page.goto(url)
    _settle(page, PAGES[0][2])
    normal = _wait_for(page, lambda s: all(v is not None for v in s.values()))
    assert normal["sidebar"] > 0, "the sidebar starts open"
    for path, link, title in PAGES:
        _goto(page, link, title)
        _shot(page, f"{path or 'knee'}-normal")
    _goto(page, PAGES[0][1], PAGES[0][2])
    page.get_by_text("Presentation mode").click()
    big = _wait_for(page, lambda s: s["sidebar"] <= 0 and s["table"] > normal["table"])
    for what in ("table", "dropdown", "caption", "slider"):
        assert big[what] > normal[what], f"{what}: {big[what]}px, was {normal[what]}px"
    assert big["sidebar"] <= 0, "the sidebar is still open"
    assert big["gap"] >= 2, "the slider's value sits on its thumb"
    for path, link, title in PAGES:
        _goto(page, link, title)
        page.get_by_test_id("stSidebarCollapseButton").locator("button").click()
        page.wait_for_timeout(500)
        _shot(page, f"{path or 'knee'}-presentation")


def test_compare_page_shows_two_selections(browser_page):
    page, url = browser_page
    page.goto(f"{url}/compare")
    _settle(page, "Compare two selections")
    page.get_by_role("heading", name="A: CAHP").wait_for(timeout=60_000)
    page.get_by_text("Jaccard index").first.wait_for(timeout=60_000)  # a slow machine
    page.get_by_text("CAHP vs gradient").click()
    page.get_by_role("heading", name="B: Gradient").wait_for(timeout=30_000)
    charts = page.locator("[data-testid='stPlotlyChart']")
    charts.nth(2).wait_for(timeout=60_000)  # A, B and the overlap map
    assert charts.count() >= 3
    page.get_by_text("Two runs").click()
    page.get_by_text("example-copy").first.wait_for(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0
