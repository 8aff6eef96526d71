"""Where runs live, and which run, degree and knee curve this browser session looks at
(per-session state: one key per run for the degree, one for the knee curve)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, overload

import streamlit as st

from cahp_core.choices import RULE_PARAMETER
from cahp_core.errors import CAHPError
from cahp_core.runs.folder import list_runs
from cahp_core.runs.results import RunView
from cahp_core.runs.run_format import SELECTION

from .selection_view import (
    CURVE_LABELS,
    MAX_DEGREE,
    MIN_DEGREE,
    DegreeView,
    curve_points,
    degree_view,
    has_task_curve,
    knee_by_degree,
    rule_settings,
    run_stamp,
)
from .theme import present

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "assets" / "default_run"
DEFAULT_LABEL = "Example: minilm-l6 · SST-5"


class Key:
    """Every session-state key of the dashboard, defined once (app.py and the pages use
    these). Plain keys hold one value per session; ``Key.of_run(Key.DEGREE, view)`` is a
    key of one run's own state (``name::RUN``), so each run keeps its degree, knee curve and
    rule."""

    RUN_LABEL = "run_label"  # the sidebar's run picker: the run every page shows
    PRESENTATION = "presentation"  # the sidebar's presentation-mode toggle
    PRESENTED = "presented"  # presentation mode already applied (app.py reruns once)
    WATCH_RUN = "watch_run"  # the run whose progress the Run page follows
    RUN_PAGE_MESSAGE = "run_page_message"  # (kind, text) the Run page shows once
    REFRESHED = "refreshed"  # the finished run the sidebar was last refreshed for
    MANAGE_RUN = "manage_run"  # the Run page's picker of a run to open, stop or delete
    EXPORT_MESSAGE = "export_message"  # (kind, text) the Export page shows once
    EXPORT_SEEN = "export_seen"  # the export folder the Export page's downloads follow
    KNEE_EXPORT = "knee_export"  # the Knee page's re-export button
    COMPARE_RUN_B = "compare_run_b"  # the Compare page's second run
    COMPARE_MODE = "compare_mode"  # the Compare page's mode
    BENCHMARK_METRIC = "benchmark_metric"  # the Proximity page's benchmark measure
    PROXIMITY_RAW_GRADIENT = "proximity_raw_gradient"  # the Proximity page's raw-gradient switch
    RETRAINING_FREE_METRIC = "retraining_free_metric"  # the Proximity page's masked view
    # per-run state and widgets: with of_run
    DEGREE = "degree"  # the degree chosen on the Knee page: its slider's key (keep_degrees)
    KNEE_CURVE = "knee_curve"  # the knee curve chosen on the Knee page
    RULE = "rule"  # the selection rule chosen on the Knee page (rule_settings)
    KNEE_CURVE_CONTROL = "knee_curve_control"  # the Knee page's quality/performance switch
    RULE_SELECT = "rule_select"  # the Knee page's rule picker
    LAYER_MAP = "layer_map"  # the Clusters page's clickable layer map
    HEAD_PICK_GRAPH = "head_pick::graph"  # the Head graph page's head picker
    HEAD_PICK_CLUSTERS = "head_pick::clusters"  # the Clusters page's head picker

    @staticmethod
    def of_run(name: str, view: RunView) -> str:
        """``name``'s key for ``view``'s run (a rule parameter's own name works too)."""
        return f"{name}::{view.path}"


def runs_root() -> Path:
    """Folder of the user's runs (``CAHP_RUNS_DIR`` or ``./runs``)."""
    return Path(os.environ.get("CAHP_RUNS_DIR", "runs")).resolve()


def default_run() -> Path:
    """The embedded example run (``CAHP_DEFAULT_RUN`` overrides it, e.g. in tests)."""
    return Path(os.environ.get("CAHP_DEFAULT_RUN", DEFAULT_RUN))


def finished_runs() -> dict[str, Path]:
    """Label -> folder of every run the dashboard can show (embedded default first)."""
    options: dict[str, Path] = {}
    if SELECTION.exists(default_run()):
        options[DEFAULT_LABEL] = default_run()
    for run in list_runs(runs_root()):
        if SELECTION.exists(run["path"]):
            options[f"{run['name']}"] = Path(run["path"])
    return options


@st.cache_resource(show_spinner=False)
def _load_view(path: str, stamp: float) -> RunView:
    """Shared across sessions: a RunView is read-only (stamp = manifest mtime)."""
    return RunView(Path(path))


def load_view(path: Path) -> RunView:
    return _load_view(str(path), run_stamp(path))


def current_run_path() -> Path | None:
    options = finished_runs()
    chosen = st.session_state.get(Key.RUN_LABEL)
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
        view = load_view(path)
        view.clusterings  # noqa: B018 - a run clustered by an earlier version: say how to fix
        return view
    except CAHPError as exc:
        st.error(str(exc))
        return None


def _default_curve(view: RunView) -> str:
    curve = str(view.selection.get("knee_curve", view.config.knee_curve))
    return (
        curve
        if curve in CURVE_LABELS and (curve != "performance" or has_task_curve(view))
        else "quality"
    )


def current_knee_curve(view: RunView) -> str:
    """The knee curve chosen on the Knee page in this session ("quality" or "performance";
    default: the run's own, "quality" where the run has no task curve)."""
    key = Key.of_run(Key.KNEE_CURVE, view)
    curve = st.session_state.get(key)
    if curve not in CURVE_LABELS or (curve == "performance" and not has_task_curve(view)):
        curve = st.session_state[key] = _default_curve(view)
    return str(curve)


def set_knee_curve(view: RunView, knee_curve: str) -> None:
    st.session_state[Key.of_run(Key.KNEE_CURVE, view)] = str(knee_curve)


def max_degree(view: RunView, knee_curve: str) -> int:
    """Highest degree offered for ``knee_curve``: min(12, points - 1) of that curve, lowered to
    the last degree the engine accepts for this run (see ``knee_by_degree``); at least 2."""
    top = min(MAX_DEGREE, curve_points(view, knee_curve) - 1)
    rows, _ = knee_by_degree(view, knee_curve)
    if rows:
        top = min(top, rows[-1]["degree"])
    return max(MIN_DEGREE, top)


def current_degree(view: RunView, knee_curve: str | None = None) -> int:
    """The degree chosen on the Knee page in this session (default: the run's own), clamped
    to 2..max_degree of the session's knee curve."""
    knee_curve = knee_curve or current_knee_curve(view)
    key = Key.of_run(Key.DEGREE, view)
    if key not in st.session_state:
        st.session_state[key] = int(view.selection.get("degree", view.config.degree))
    return int(min(max(int(st.session_state[key]), MIN_DEGREE), max_degree(view, knee_curve)))


def degree_slider_key(view: RunView, knee_curve: str) -> str:
    """The key of the Knee page's degree slider, the session's degree itself, its value
    clamped to ``knee_curve``'s range first (the slider then takes no ``value``)."""
    key = Key.of_run(Key.DEGREE, view)
    st.session_state[key] = current_degree(view, knee_curve)
    return key


def keep_degrees() -> None:
    """Keep every run's degree while the Knee page is not shown: Streamlit deletes a widget's
    state after a run that does not draw it, but not a value set in that run (its docs'
    multipage advice), so every page re-sets them first."""
    prefix = f"{Key.DEGREE}::"
    for key in [k for k in st.session_state if str(k).startswith(prefix)]:
        st.session_state[key] = st.session_state[key]


def current_rule(view: RunView) -> tuple:
    """The selection rule chosen on the Knee page in this session (``rule_settings``;
    default: the run's own rule and parameter)."""
    key = Key.of_run(Key.RULE, view)
    if key not in st.session_state:
        config = view.config
        parameter = RULE_PARAMETER.get(config.rule)
        value = getattr(config, parameter) if parameter else None
        st.session_state[key] = rule_settings(config.rule, value)
    return tuple(st.session_state[key])


def set_rule(view: RunView, rule: tuple) -> None:
    st.session_state[Key.of_run(Key.RULE, view)] = tuple(rule)


def current_selection(view: RunView) -> tuple[int, str, DegreeView]:
    """The session's degree, knee curve and selection rule and the selection they give
    (what every page shows and what Export writes)."""
    knee_curve = current_knee_curve(view)
    degree = current_degree(view, knee_curve)
    return degree, knee_curve, selection_or_stop(view, degree, knee_curve, current_rule(view))


def selection_or_stop(view: RunView, degree: int, knee_curve: str, rule: tuple = ()) -> DegreeView:
    """``degree_view``, or the engine's message on the page (and the page stops there)."""
    try:
        return degree_view(view, degree, knee_curve, rule)
    except CAHPError as exc:
        st.error(str(exc))
        st.stop()


@overload
def page(title: str) -> RunView: ...
@overload
def page(title: str, *, needs_run: Literal[False]) -> None: ...
def page(title: str, *, needs_run: bool = True) -> RunView | None:
    """The top of every page: the session's choices kept, the title and (``needs_run``) the run
    every page shows; with no run to show, a message instead, and the page stops there."""
    keep_degrees()
    st.title(title)
    if not needs_run:
        return None
    view = current_view()
    if view is None:
        st.stop()
    return view


def show_message(key: str) -> None:
    """The ``(kind, text)`` message a callback left under ``key``, shown once."""
    message = st.session_state.pop(key, None)
    if message:
        getattr(st, message[0])(message[1])


def presenting() -> bool:
    """Is this session in presentation mode (sidebar toggle)?"""
    return bool(st.session_state.get(Key.PRESENTATION))


def chart(fig, container=None, **kwargs):
    """Draw a plotly figure full width (larger fonts in presentation mode); returns what
    ``st.plotly_chart`` returns (the selection, with ``on_select``)."""
    if presenting():
        fig = present(fig)
    return (container or st).plotly_chart(fig, width="stretch", **kwargs)


@st.cache_resource(show_spinner="Loading the fine-tuned model…", max_entries=2)
def cached_model(model_dir: str, num_labels: int):
    """The run's fine-tuned model, shared by every session: never mutated (export deep-copies)."""
    from cahp_core.model.loading import load_model

    return load_model(model_dir, num_labels, device="cpu")
