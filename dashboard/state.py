"""Where runs live, which run and degree this browser session looks at (per-session state)."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from cahp_core.errors import CAHPError
from cahp_core.results import RunView
from cahp_core.runs import list_runs

from .theme import present

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "assets" / "default_run"
DEFAULT_LABEL = "Example: minilm-l6 · SST-5"


def runs_root() -> Path:
    """Folder of the user's runs (``CAHP_RUNS_DIR`` or ``./runs``)."""
    return Path(os.environ.get("CAHP_RUNS_DIR", "runs")).resolve()


def default_run() -> Path:
    """The embedded example run (``CAHP_DEFAULT_RUN`` overrides it, e.g. in tests)."""
    return Path(os.environ.get("CAHP_DEFAULT_RUN", DEFAULT_RUN))


def finished_runs() -> dict[str, Path]:
    """Label -> folder of every run the dashboard can show (embedded default first)."""
    options: dict[str, Path] = {}
    if (default_run() / "selection.json").is_file():
        options[DEFAULT_LABEL] = default_run()
    for run in list_runs(runs_root()):
        if (Path(run["path"]) / "selection.json").is_file():
            options[f"{run['name']}"] = Path(run["path"])
    return options


@st.cache_resource(show_spinner=False)
def _load_view(path: str, stamp: float) -> RunView:
    """Shared across sessions: a RunView is read-only (stamp = manifest mtime)."""
    return RunView(Path(path))


def load_view(path: Path) -> RunView:
    manifest = Path(path) / "manifest.json"
    stamp = manifest.stat().st_mtime if manifest.is_file() else 0.0
    return _load_view(str(path), stamp)


def current_run_path() -> Path | None:
    options = finished_runs()
    chosen = st.session_state.get("run_label")
    if chosen in options:
        return options[chosen]
    return next(iter(options.values()), None)


def current_view() -> RunView | None:
    """The run this session looks at, or None with a helpful message on the page."""
    path = current_run_path()
    if path is None:
        st.info(
            "No finished run yet. Start one on the **Run** page, or from a shell: "
            "`cahp run --model minilm-l6 --task sst5 --preset quick --out runs/demo`"
        )
        return None
    try:
        return load_view(path)
    except CAHPError as exc:
        st.error(str(exc))
        return None


def current_degree(view: RunView) -> int:
    """The degree chosen on the Knee page in this session (default: the run's own)."""
    key = f"degree::{view.path}"
    if key not in st.session_state:
        st.session_state[key] = int(view.selection.get("degree", view.config.degree))
    return int(st.session_state[key])


def set_degree(view: RunView, degree: int) -> None:
    st.session_state[f"degree::{view.path}"] = int(degree)


def max_degree(view: RunView) -> int:
    return max(1, min(15, len(view.clustering.ks) - 1))


def presenting() -> bool:
    """Is this session in presentation mode (sidebar toggle)?"""
    return bool(st.session_state.get("presentation"))


def chart(fig, container=None, **kwargs) -> None:
    """Draw a plotly figure full width (larger fonts in presentation mode)."""
    if presenting():
        fig = present(fig)
    (container or st).plotly_chart(fig, width="stretch", **kwargs)


@st.cache_resource(show_spinner="Loading the fine-tuned model…", max_entries=2)
def cached_model(model_dir: str, num_labels: int):
    """The run's fine-tuned model, shared by every session: never mutated (export deep-copies)."""
    from cahp_core.models import load_model

    return load_model(model_dir, num_labels, device="cpu")
