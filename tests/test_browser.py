"""Browser tier: a real `streamlit run` server driven by Playwright in Debian's chromium.

Opens every page, moves the degree slider and switches the knee curve and sees the knee
change (and the Export page follow), finds the graph drawn, exports the tiny test model, and
fails on any page exception or any request that leaves the machine. Skipped when chromium is not installed (`.ci/run` installs it with apt).
"""

from __future__ import annotations

import json
import os
import re
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
SHOTS = Path(os.environ.get("CAHP_SCREENSHOTS", "")) if os.environ.get("CAHP_SCREENSHOTS") else None

if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_runs):
    runs = tiny_runs
    port = _free_port()
    env = {**os.environ, "CAHP_RUNS_DIR": str(runs), "CAHP_DEFAULT_RUN": str(runs / "tiny-run")}
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
    yield url, runs
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
        yield page, server[0], server[1]
        browser.close()
        assert not remote, f"requests left the machine: {remote[:5]}"
        assert not errors, f"page errors: {errors[:5]}"


def _open(page, url: str, title: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title).wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    assert page.locator("[data-testid='stException']").count() == 0, f"exception on {url}"
    assert page.get_by_text("Page not found").count() == 0, f"no page at {url}"
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SHOTS / f"{urlparse(url).path.strip('/') or 'home'}.png"), full_page=True
        )


def _knee_value(page) -> str:
    metric = page.locator("[data-testid='stMetric']").filter(has_text="Knee (clusters)")
    return metric.locator("[data-testid='stMetricValue']").inner_text()


def _wait_for_knee(page, expected: int, timeout_s: float = 45) -> None:
    """Poll the knee metric until the app's rerun shows ``expected`` (slow CI machines)."""
    deadline = time.monotonic() + timeout_s
    while (shown := _knee_value(page)) != str(expected) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert shown == str(expected), f"knee {shown} shown, {expected} expected"
    assert page.locator("[data-testid='stException']").count() == 0


def test_every_page_the_degree_slider_and_the_knee_curve(browser_page):
    from cahp_core.runs.results import RunView

    page, url, runs = browser_page
    for path, title in [
        ("run", "Run CAHP"),
        ("head_graph", "Head graph"),
        ("clusters", "Clusters per layer"),
        ("proximity", "Proximity bias"),
        ("export", "Export"),
        ("", "Knee: how many heads to keep"),
    ]:
        _open(page, f"{url}/{path}", title)
    view = RunView(runs / "tiny-run")
    slider = page.get_by_role("slider").first
    low, high = int(slider.get_attribute("min")), int(slider.get_attribute("max"))
    assert low == 2  # degree 1 has no knee
    knees = {d: view.selector(d, "quality").knee_ for d in (low, high)}
    assert knees[low] != knees[high], "the tiny run no longer tells the degrees apart"
    slider.focus()
    slider.press("Home")
    _wait_for_knee(page, knees[low])
    slider.press("End")
    _wait_for_knee(page, knees[high])
    page.get_by_text("Performance knee (accuracy)").click()  # the knee curve switch
    from cahp_core.method.selection import performance_points

    # the page keeps the degree where the performance curve (fewer points) allows it
    top = min(high, len(performance_points(view.task_curve)) - 1)
    performance = view.selector(top, "performance").knee_
    assert performance != knees[high], "the tiny run no longer tells the curves apart"
    _wait_for_knee(page, performance)
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Export").click()  # same session
    page.get_by_role("heading", name="Export").wait_for(timeout=60_000)
    page.get_by_text("performance knee").first.wait_for(timeout=30_000)  # Export follows


def test_head_graph_is_drawn_offline(browser_page):
    page, url, _ = browser_page
    _open(page, f"{url}/head_graph", "Head graph")
    frame = page.frame_locator("iframe").first
    frame.locator("canvas").first.wait_for(timeout=30_000)
    assert frame.locator("canvas").count() >= 1


def test_an_export_survives_its_closed_tab(browser_page):
    """Start an export, close the tab, open a new one: the export is progressing or
    finished there, and its folder is complete and loads."""
    from cahp_core.model.pruning import load_pruned

    page, url, runs = browser_page
    _open(page, f"{url}/export", "Export")
    page.get_by_role("button", name="Prune, fine-tune once and export").click()
    page.get_by_text("Export started").wait_for(timeout=60_000)
    browser = page.context.browser
    page.close()  # the tab that started it is gone
    fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    fresh.on("pageerror", lambda error: errors.append(str(error)))
    _open(fresh, f"{url}/export", "Export")
    fresh.get_by_text(re.compile(r"Export of degree \d+ .*: (running|finished)")).first.wait_for(
        timeout=60_000
    )
    fresh.get_by_text("Saved").first.wait_for(timeout=300_000)  # the page re-attached
    fresh.get_by_role("button", name="Model folder (.zip)").wait_for(timeout=30_000)
    assert not errors, errors
    folders = [p.parent for p in (runs / "exports").glob("*/cahp_export.json")]
    assert len(folders) == 1
    folder = folders[0]
    for name in ("model.safetensors", "config.json", "README.md", "model.onnx"):
        assert (folder / name).is_file(), name
    assert not list((runs / "exports").glob(".*"))  # no staging folder left
    loaded = load_pruned(folder)
    kept = sum(len(heads) for heads in loaded.model.config.cahp_kept_heads)
    assert kept == json.loads((folder / "cahp_export.json").read_text())["heads_kept"]
    assert not (folder / "kept_heads.json").exists()  # the map is recorded once


def test_the_lecture_hall_answers_from_the_screen(browser_page):
    """A legend on the head graph, no two clusters sharing a colour, a proximity verdict
    with its p-value."""
    page, url, _ = browser_page
    _open(page, f"{url}/head_graph", "Head graph")
    frame = page.frame_locator("iframe").first
    legend = frame.locator("div.cahp-legend")
    legend.wait_for(timeout=30_000)
    assert "= kept head" in legend.inner_text() and "= cluster" in legend.inner_text()
    swatches = frame.locator("div.cahp-legend span.cahp-swatch")
    colours = [
        swatches.nth(i).evaluate("el => getComputedStyle(el).backgroundColor")
        for i in range(swatches.count())
    ]
    assert len(colours) >= 2 and len(set(colours)) == len(colours), colours
    _open(page, f"{url}/proximity", "Proximity bias")
    verdicts = page.get_by_text(re.compile(r"^On this run, gradient pruning .* p [=<] ?0\.\d+"))
    verdicts.first.wait_for(timeout=30_000)
    assert page.get_by_text("Same head count for every method:").count() >= 1
