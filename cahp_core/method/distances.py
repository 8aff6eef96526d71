"""Information-theoretic distances between heads (Bhattacharyya / Jeffries–Matusita, JS).

``jm`` (paper): for every class pair and every signature dimension, the Jeffries–Matusita
distance between the two classes' 1-D Gaussians is a feature of the head; heads are compared
by the Euclidean distance of these feature vectors. ``js``: the Jensen–Shannon distance
between heads' mean attention maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.spatial.distance import cdist, pdist, squareform

from cahp_core.choices import DISTANCE_METHODS, check_choice
from cahp_core.errors import CAHPError
from cahp_core.method.signatures import HeadSignatures


def bhattacharyya_gaussian(
    mean_a: np.ndarray,
    var_a: np.ndarray,
    mean_b: np.ndarray,
    var_b: np.ndarray,
    eps: float = 1e-8,
) -> np.ndarray:
    """Elementwise Bhattacharyya distance between 1-D Gaussians ``N(mean_a, var_a)`` and
    ``N(mean_b, var_b)``; ``eps`` is added to both variances (zero-variance dimensions)."""
    va = np.asarray(var_a, dtype=np.float64) + eps
    vb = np.asarray(var_b, dtype=np.float64) + eps
    diff = np.asarray(mean_a, dtype=np.float64) - np.asarray(mean_b, dtype=np.float64)
    return diff**2 / (4.0 * (va + vb)) + 0.5 * np.log(((va + vb) / 2.0) / np.sqrt(va * vb))


def jeffries_matusita(b: np.ndarray) -> np.ndarray:
    """JM = 2 (1 - exp(-B)), bounded in [0, 2]."""
    return 2.0 * (1.0 - np.exp(-np.asarray(b, dtype=np.float64)))


def _check_signatures(sig: HeadSignatures) -> None:
    if sig.mean.ndim != 4 or sig.mean.shape != sig.var.shape:
        raise CAHPError(
            f"signatures need mean and var of the same shape [L, H, C, D]; got "
            f"{sig.mean.shape} and {sig.var.shape}. Recompute the signatures stage."
        )
    if sig.count.shape != (sig.n_classes,):
        raise CAHPError(
            f"signature counts have shape {sig.count.shape}; expected ({sig.n_classes},). "
            "Recompute the signatures stage."
        )
    if not (np.isfinite(sig.mean).all() and np.isfinite(sig.var).all()):
        raise CAHPError("the signatures hold NaN or infinite values; recompute the signatures")


def jm_features(sig: HeadSignatures) -> np.ndarray:
    """Per head, the JM distance of every dimension for every class pair ``i < j``.

    Returns ``[N, P * D]`` with ``P = C (C - 1) / 2`` (SST-5: 10 pairs, MNLI: 3), pairs in
    lexicographic order, each pair a block of ``D`` columns.
    """
    _check_signatures(sig)
    n_classes = sig.n_classes
    if n_classes < 2:
        raise CAHPError(
            f"JM features need at least two classes; the signatures have {n_classes}. "
            "Use a task with two or more labels."
        )
    dims = sig.mean.shape[-1]
    mean = sig.mean.reshape(-1, n_classes, dims)  # [N, C, D]
    var = sig.var.reshape(-1, n_classes, dims)  # [N, C, D]
    pairs = [
        jeffries_matusita(bhattacharyya_gaussian(mean[:, i], var[:, i], mean[:, j], var[:, j]))
        for i, j in combinations(range(n_classes), 2)
    ]  # P x [N, D]
    return np.concatenate(pairs, axis=1)  # [N, P * D]


def head_mean_maps(sig: HeadSignatures) -> np.ndarray:
    """Each head's class-count-weighted mean attention map as a distribution: ``[N, D]``.

    Negative values are clipped to 0; a map that sums to 0 becomes uniform.
    """
    _check_signatures(sig)
    total = float(sig.count.sum())
    weights = sig.count / total if total > 0 else np.full(sig.n_classes, 1.0 / sig.n_classes)
    dims = sig.mean.shape[-1]
    maps = np.tensordot(sig.mean, weights, axes=([2], [0])).reshape(-1, dims)  # [N, D]
    maps = np.clip(maps, 0.0, None)
    totals = maps.sum(axis=1, keepdims=True)  # [N, 1]
    uniform = np.full_like(maps, 1.0 / dims)
    return np.where(totals > 0, maps / np.where(totals > 0, totals, 1.0), uniform)


def js_distance_matrix(maps: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, in [0, 1]) between the rows of ``maps`` ``[N, D]``.

    Same values as ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` for every pair,
    computed with scipy's compiled ``pdist`` (natural log) divided by ``sqrt(ln 2)``.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2 or not np.isfinite(maps).all() or (maps < 0).any():
        raise CAHPError("JS distances need finite, non-negative maps of shape [N, D]")
    rows = maps / maps.sum(axis=1, keepdims=True)  # [N, D], each a distribution
    condensed = pdist(rows, "jensenshannon") / np.sqrt(np.log(2.0))
    distance = squareform(np.clip(np.nan_to_num(condensed), 0.0, 1.0))  # [N, N]
    return distance


def feature_distance_matrix(features: np.ndarray) -> np.ndarray:
    """Euclidean distance between head feature vectors ``[N, F]``: ``[N, N]``, exactly
    symmetric with a zero diagonal."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or not np.isfinite(features).all():
        raise CAHPError(
            f"head features must be a finite 2-D array [heads, features]; got shape "
            f"{features.shape}. Recompute the distances stage."
        )
    distance = cdist(features, features)  # [N, N]
    distance = (distance + distance.T) / 2.0
    np.fill_diagonal(distance, 0.0)
    return distance


@dataclass(frozen=True)
class HeadDistances:
    """Head features ``[N, F]`` and the head x head distance matrix ``[N, N]``."""

    method: str
    features: np.ndarray  # [N, F]: JM features, or mean maps for "js"
    distance: np.ndarray  # [N, N]


def head_distances(sig: HeadSignatures, method: str = "jm") -> HeadDistances:
    """JM features + Euclidean distances (paper), or JS between mean attention maps."""
    if method == "jm":
        features = jm_features(sig)
        return HeadDistances(method, features, feature_distance_matrix(features))
    if method == "js":
        maps = head_mean_maps(sig)
        return HeadDistances(method, maps, js_distance_matrix(maps))
    check_choice("distance", method, DISTANCE_METHODS)
    raise AssertionError(f"{method} is in DISTANCE_METHODS but has no implementation")
