"""Information-theoretic distances between heads (Bhattacharyya / Jeffries–Matusita, JS)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.spatial.distance import cdist, jensenshannon

from .errors import CAHPError
from .signatures import HeadSignatures

DISTANCE_METHODS = ("jm", "js")


def bhattacharyya_gaussian(
    mean_a: np.ndarray, var_a: np.ndarray, mean_b: np.ndarray, var_b: np.ndarray, eps: float = 1e-8
) -> np.ndarray:
    """Per-dimension Bhattacharyya distance between 1-D Gaussians (elementwise)."""
    va, vb = var_a + eps, var_b + eps
    pooled = (va + vb) / 2.0
    return (mean_a - mean_b) ** 2 / (8.0 * pooled) + 0.5 * np.log(pooled / np.sqrt(va * vb))


def jeffries_matusita(bhattacharyya: np.ndarray) -> np.ndarray:
    """JM = 2 (1 - exp(-B)), bounded in [0, 2]."""
    return 2.0 * (1.0 - np.exp(-bhattacharyya))


def jm_features(sig: HeadSignatures) -> np.ndarray:
    """Per head, the JM distance of every dimension for every class pair: ``[N, P * D]``."""
    n_classes = sig.n_classes
    if n_classes < 2:
        raise CAHPError("JM features need at least two classes in the training data")
    mean = sig.mean.reshape(-1, n_classes, sig.mean.shape[-1])  # [N, C, D]
    var = sig.var.reshape(-1, n_classes, sig.var.shape[-1])  # [N, C, D]
    pairs = [
        jeffries_matusita(bhattacharyya_gaussian(mean[:, i], var[:, i], mean[:, j], var[:, j]))
        for i, j in combinations(range(n_classes), 2)
    ]  # P x [N, D]
    return np.concatenate(pairs, axis=1)


def head_mean_maps(sig: HeadSignatures) -> np.ndarray:
    """Each head's class-count-weighted mean attention map as a distribution: ``[N, D]``."""
    weights = sig.count / max(float(sig.count.sum()), 1.0)  # [C]
    maps = np.tensordot(sig.mean, weights, axes=([2], [0])).reshape(-1, sig.mean.shape[-1])
    maps = np.clip(maps, 0.0, None)
    totals = maps.sum(axis=1, keepdims=True)
    uniform = np.full_like(maps, 1.0 / maps.shape[1])
    return np.where(totals > 0, maps / np.where(totals > 0, totals, 1.0), uniform)


def js_distance_matrix(maps: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, in [0, 1]) between heads' mean maps: ``[N, N]``."""
    n = len(maps)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = jensenshannon(maps[i], maps[j], base=2.0)
    return np.nan_to_num(out)


def feature_distance_matrix(features: np.ndarray) -> np.ndarray:
    """Euclidean distance between head feature vectors, exactly symmetric, zero diagonal."""
    distance = cdist(features, features)
    distance = (distance + distance.T) / 2.0
    np.fill_diagonal(distance, 0.0)
    return distance


@dataclass(frozen=True)
class HeadDistances:
    """Head features ``[N, F]`` and the head x head distance matrix ``[N, N]``."""

    method: str
    features: np.ndarray
    distance: np.ndarray


def head_distances(sig: HeadSignatures, method: str = "jm") -> HeadDistances:
    """JM features + Euclidean distances (paper), or JS between mean attention maps."""
    if method == "jm":
        features = jm_features(sig)
        return HeadDistances(method, features, feature_distance_matrix(features))
    if method == "js":
        maps = head_mean_maps(sig)
        return HeadDistances(method, maps, js_distance_matrix(maps))
    raise CAHPError(f"unknown distance {method!r}; choose one of {', '.join(DISTANCE_METHODS)}")
