"""Degree -> knee and selection for a run, computed from cached artefacts in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cahp_core.baselines import same_budget_maps
from cahp_core.knee import KneeResult
from cahp_core.results import RunView


@dataclass(frozen=True)
class DegreeView:
    """What every page shows for one degree."""

    degree: int
    knee: KneeResult
    labels: np.ndarray  # [N] cluster of every head at the knee
    keep: np.ndarray  # bool [L, H]
    expected_accuracy: float | None

    @property
    def heads_kept(self) -> int:
        return int(self.keep.sum())


def expected_accuracy(view: RunView, heads_kept: int, method: str = "cahp") -> float | None:
    """Masked accuracy (before fine-tuning) interpolated from the run's task curve."""
    points = sorted(
        (r["heads_kept"], r["accuracy"]) for r in view.task_curve if r["method"] == method
    )
    if not points:
        return None
    x, y = zip(*points, strict=True)
    return float(np.interp(heads_kept, x, y))


def degree_view(view: RunView, degree: int) -> DegreeView:
    selector = view.selector(degree)
    return DegreeView(
        degree=degree,
        knee=selector.knee_result_,
        labels=selector.labels_,
        keep=selector.support_,
        expected_accuracy=expected_accuracy(view, int(selector.support_.sum())),
    )


def method_maps(
    view: RunView, keep: np.ndarray, seed: int = 0, raw_gradient: bool = False
) -> dict[str, np.ndarray]:
    """CAHP's selection and the gradient / random baselines with the same number of heads."""
    return same_budget_maps(keep, view.salience.raw, seed, raw_gradient)


def nearest_curve_point(view: RunView, method: str, heads_kept: int) -> dict | None:
    """The measured task-curve point of ``method`` with the closest head count."""
    points = [r for r in view.task_curve if r["method"] == method]
    if not points:
        return None
    return min(points, key=lambda r: abs(r["heads_kept"] - heads_kept))
