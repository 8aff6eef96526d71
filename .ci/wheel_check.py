"""CI: the installed wheel works outside the checkout.

Run with the python of a fresh virtual environment into which only the built wheel (and
torch==2.13.0) was installed, from a folder outside the repository:
``cahp --version``, ``python -m cahp_core --version``, ``cahp dashboard`` serving its health
endpoint, and every page rendering the embedded example (Streamlit's AppTest on the
installed files).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
PAGES = (
    "knee.py",
    "head_graph.py",
    "clusters.py",
    "proximity.py",
    "compare.py",
    "export.py",
    "run.py",
)


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def versions() -> None:
    out = subprocess.run([BIN / "cahp", "--version"], capture_output=True, text=True)
    check(
        out.returncode == 0 and out.stdout.startswith("cahp-studio "),
        f"cahp --version: {out.stdout.strip()}",
    )
    out = subprocess.run(
        [sys.executable, "-m", "cahp_core", "--version"], capture_output=True, text=True
    )
    check(
        out.returncode == 0 and out.stdout.startswith("cahp-studio "),
        "python -m cahp_core --version",
    )


def installed_layout() -> Path:
    import cahp_core
    import cahp_studio.dashboard as dashboard

    check(
        "site-packages" in cahp_core.__file__, f"cahp_core from {Path(cahp_core.__file__).parent}"
    )
    site = Path(dashboard.__file__).resolve().parents[2]
    for name in ("dashboard", "pages", "assets"):
        check(not (site / name).exists(), f"no top-level {name!r} in site-packages")
    app = Path(dashboard.__file__).parent / "app.py"
    check(
        (app.parent.parent / "assets" / "default_run" / "selection.json").is_file(),
        "example shipped",
    )
    return app


def dashboard_serves(port: int) -> None:
    env = {**os.environ, "CAHP_RUNS_DIR": str(Path.cwd() / "runs")}
    server = subprocess.Popen(
        [BIN / "cahp", "dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline, healthy = time.monotonic() + 90, False
        while time.monotonic() < deadline and not healthy:
            try:
                healthy = (
                    urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                    ).status
                    == 200
                )
            except OSError:
                time.sleep(0.5)
        check(healthy, "cahp dashboard serves /_stcore/health")
    finally:
        server.terminate()
        server.wait(timeout=30)


def pages_render(app: Path) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["CAHP_RUNS_DIR"] = str(Path.cwd() / "runs")
    at = AppTest.from_file(str(app), default_timeout=120).run()
    check(not at.exception, "the app runs")
    check(at.title[0].value == "Knee: how many heads to keep", "the Knee page opens")
    check(
        any(m.label == "Knee (clusters)" for m in at.metric),
        "the Knee page shows the example's knee",
    )
    for page in PAGES:
        at.switch_page(str(app.parent.parent / "pages" / page)).run()
        check(not at.exception, f"page {page} renders the embedded example")


if __name__ == "__main__":
    check(not (Path.cwd() / "cahp_core").exists(), f"running outside the checkout ({Path.cwd()})")
    versions()
    app = installed_layout()
    dashboard_serves(free_port())
    pages_render(app)
    print("the wheel works outside the checkout")
