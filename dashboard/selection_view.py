"""Degree and knee curve -> knee and selection for a run, fitted from cached clusterings.

Every page reads its selection from ``degree_view``: the selector ``RunView.selector`` fits,
which is exactly what ``cahp export RUN --degree D --knee-curve C`` selects. Fits take
milliseconds per seed; both helpers are cached per (run folder, manifest stamp, knee curve)
so the Knee page's slider answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from cahp_core.choices import KNEE_CURVES, RULE_PARAMETER
from cahp_core.errors import CAHPError
from cahp_core.method.baselines import same_budget_maps
from cahp_core.method.clustering import umap_embedding
from cahp_core.method.knee import KneeResult
from cahp_core.method.selection import performance_points
from cahp_core.runs.results import RunView
from cahp_core.runs.run_format import MANIFEST

MIN_DEGREE = 2  # a degree-1 fit is a straight line: no knee
MAX_DEGREE = 12  # the slider's ceiling (higher degrees only chase noise)
CURVE_LABELS = {"quality": "Quality knee (MSS)", "performance": "Performance knee (accuracy)"}
CURVE_NAMES = {"quality": "quality knee", "performance": "performance knee"}  # in prose
RULE_LABELS = {
    "complementary": "Complementary (paper)",
    "salience-radius": "Salience, skip near duplicates",
    "mmr": "Salience–diversity trade-off (MMR)",
}
QUALITY_LABELS = {
    "mss": "mean simplified silhouette (MSS)",
    "simplified-silhouette": "simplified silhouette",
}


@dataclass(frozen=True)
class DegreeView:
    """What every page shows for one degree and knee curve (the consensus seed's selection)."""

    degree: int
    knee_curve: str  # "quality" or "performance"
    rule: tuple  # ((name, value), ...): the selection rule and its parameter
    knee: KneeResult  # the knee used (of the chosen curve)
    quality_knee: KneeResult  # the consensus seed's quality knee
    performance_knee: KneeResult | None  # None without a task curve
    labels: np.ndarray  # [N] cluster of every head at the knee (consensus seed)
    keep: np.ndarray  # bool [L, H]
    knee_by_seed: dict[int, int]
    heads_by_seed: dict[int, int]
    knee_spread: dict  # {"knee": {min, median, max, ...}, "heads": {...}}
    consensus_seed: int
    quality_name: str  # "mss" or "simplified-silhouette"
    embedding: np.ndarray | None  # [N, 2] t-SNE of the consensus seed
    expected_accuracy: float | None

    @property
    def heads_kept(self) -> int:
        return int(self.keep.sum())

    @property
    def n_seeds(self) -> int:
        return len(self.knee_by_seed)

    def seed_range(self, what: str = "heads") -> str:
        """``"13–16 across 5 seeds"`` (or ``"all 5 seeds agree"``) for ``knee`` or ``heads``."""
        low, high = self.knee_spread[what]["min"], self.knee_spread[what]["max"]
        if self.n_seeds == 1:
            return "1 seed"
        if low == high:
            return f"all {self.n_seeds} seeds agree"
        return f"{low}–{high} across {self.n_seeds} seeds"


def run_stamp(path: Path) -> float:
    """The manifest's mtime: changes whenever a run is (re)written."""
    manifest = MANIFEST.path(path)
    return manifest.stat().st_mtime if manifest.is_file() else 0.0


def has_task_curve(view: RunView) -> bool:
    """Does the run hold the measured masked-accuracy curve the performance knee needs (at
    least 3 values of k: a knee needs 3 points)?"""
    return len(performance_points(view.task_curve)) >= 3


def curve_points(view: RunView, knee_curve: str) -> int:
    """Number of points of the curve the knee is fitted to."""
    if knee_curve == "performance":
        return len(performance_points(view.task_curve))
    return len(view.clustering.ks)


def expected_accuracy(view: RunView, heads_kept: int, method: str = "cahp") -> float | None:
    """Masked accuracy (before fine-tuning) interpolated from the run's task curve."""
    points = sorted(
        (r["heads_kept"], r["accuracy"]) for r in view.task_curve if r["method"] == method
    )
    if not points:
        return None
    x, y = zip(*points, strict=True)
    return float(np.interp(heads_kept, x, y))


def rule_settings(rule: str, value: float | None = None) -> tuple:
    """A hashable rule setting: ``(("rule", name), (parameter, value))`` (the parameter only
    for rules that have one, and only when given)."""
    parameter = RULE_PARAMETER.get(rule)
    extra = ((parameter, float(value)),) if parameter and value is not None else ()
    return (("rule", rule), *extra)


def rule_text(rule: tuple) -> str:
    """``mmr (mmr_lambda 0.7)`` / ``complementary``: the rule in prose and in CLI terms."""
    settings = dict(rule)
    name = settings.pop("rule", "complementary")
    return name + "".join(f" ({k.replace('_', ' ')} {v:g})" for k, v in settings.items())


def rule_flags(rule: tuple) -> str:
    """The `cahp export` flags that select ``rule`` (empty for the paper's rule)."""
    settings = dict(rule)
    if settings.get("rule", "complementary") == "complementary":
        return ""
    return " ".join(
        f"--{k.replace('_', '-')} {v:g}" if k != "rule" else f"--rule {v}"
        for k, v in settings.items()
    )


def _fit(view: RunView, degree: int, knee_curve: str, rule: tuple = ()) -> DegreeView:
    selector = view.selector(int(degree), knee_curve, dict(rule) or None)
    return DegreeView(
        degree=int(degree),
        knee_curve=knee_curve,
        rule=rule or rule_settings(selector.rule),
        knee=selector.knee_result_,
        quality_knee=selector.quality_knee_result_,
        performance_knee=selector.performance_knee_result_,
        labels=selector.labels_,
        keep=selector.support_,
        knee_by_seed=dict(selector.knee_by_seed_),
        heads_by_seed=dict(selector.heads_by_seed_),
        knee_spread=selector.knee_spread_,
        consensus_seed=int(selector.consensus_seed_),
        quality_name=selector.clustering_.quality_name,
        embedding=selector.clustering_.embedding,
        expected_accuracy=expected_accuracy(view, selector.n_heads_kept_),
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_fit(_view: RunView, path: str, stamp: float, degree: int, knee_curve: str, rule: tuple):
    return _fit(_view, degree, knee_curve, rule)


def degree_view(
    view: RunView, degree: int, knee_curve: str = "quality", rule: tuple = ()
) -> DegreeView:
    """The selection at ``degree`` on ``knee_curve`` with ``rule`` (``rule_settings``; empty:
    the run's own), or a CAHPError if the engine refuses it."""
    if knee_curve not in KNEE_CURVES:
        raise CAHPError(
            f"unknown knee curve {knee_curve!r}; choose one of {', '.join(KNEE_CURVES)}"
        )
    stamp = run_stamp(view.path)
    return _cached_fit(view, str(view.path), stamp, int(degree), knee_curve, tuple(rule))


@st.cache_data(show_spinner=False, max_entries=64)
def _cached_table(_view: RunView, path: str, stamp: float, knee_curve: str):
    rows: list[dict] = []
    refused = None
    top = min(MAX_DEGREE, curve_points(_view, knee_curve) - 1)
    for degree in range(MIN_DEGREE, top + 1):
        try:
            chosen = _fit(_view, degree, knee_curve)
        except CAHPError as exc:  # the engine refuses this degree (and, so, every higher one)
            refused = str(exc)
            break
        rows.append(
            {
                "degree": degree,
                "knee": chosen.knee.knee,
                "knee_min": chosen.knee_spread["knee"]["min"],
                "knee_max": chosen.knee_spread["knee"]["max"],
                "heads": chosen.heads_kept,
                "heads_min": chosen.knee_spread["heads"]["min"],
                "heads_max": chosen.knee_spread["heads"]["max"],
                "fallback": chosen.knee.fallback,
                "knee_by_seed": chosen.knee_by_seed,
                "heads_by_seed": chosen.heads_by_seed,
            }
        )
    return rows, refused


def knee_by_degree(view: RunView, knee_curve: str) -> tuple[list[dict], str | None]:
    """Knee k and heads kept (consensus, and the seeds' min / max) for every degree from 2 to
    ``min(12, points - 1)`` of ``knee_curve``, and the engine's message if it refused a degree
    of that range (the rows then stop before it)."""
    return _cached_table(view, str(view.path), run_stamp(view.path), knee_curve)


def method_maps(
    view: RunView, keep: np.ndarray, seed: int = 0, raw_gradient: bool = False
) -> dict[str, np.ndarray]:
    """CAHP's selection and the gradient / random baselines with the same number of heads."""
    return same_budget_maps(keep, view.salience.raw, seed, raw_gradient)


@st.cache_data(show_spinner="Computing the UMAP embedding…")
def cached_umap(distance: np.ndarray, seed: int = 42) -> np.ndarray:
    """``umap_embedding`` of a run's distance matrix ``[N, N]``, cached per run: ``[N, 2]``."""
    return umap_embedding(distance, seed)


def nearest_curve_point(view: RunView, method: str, heads_kept: int) -> dict | None:
    """The measured task-curve point of ``method`` with the closest head count."""
    points = [r for r in view.task_curve if r["method"] == method]
    if not points:
        return None
    return min(points, key=lambda r: abs(r["heads_kept"] - heads_kept))
