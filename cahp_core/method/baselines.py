"""Baselines at a head budget: gradient importance (Michel et al., 2019) and random."""

from __future__ import annotations

import numpy as np

from cahp_core.errors import CAHPError

NORM_EPS = 1e-20  # as in Michel et al.'s code: importance / (layer L2 norm + 1e-20)


def _check_budget(n_keep: int, total: int) -> None:
    whole = isinstance(n_keep, int | np.integer) and not isinstance(n_keep, bool)
    if not whole or not 1 <= n_keep <= total:
        raise CAHPError(f"head budget must be a whole number between 1 and {total}; got {n_keep!r}")


def top_n(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Bool map of the ``n_keep`` highest scores (ties: lowest flat index first)."""
    flat = scores.ravel()  # [N]
    order = np.lexsort((np.arange(flat.size), -flat))[:n_keep]
    keep = np.zeros(flat.size, dtype=bool)
    keep[order] = True
    return keep.reshape(scores.shape)


def gradient_selection(
    importance: np.ndarray, n_heads: int, normalise_per_layer: bool = True
) -> np.ndarray:
    """Keep the globally top-``n_heads`` heads by accumulated |dL/dgate|.

    With ``normalise_per_layer`` each layer's importances are divided by their L2 norm, as in
    Michel et al. (2019) (an all-zero layer stays zero).
    """
    importance = np.asarray(importance, dtype=np.float64)  # [L, H]
    if importance.ndim != 2 or not np.isfinite(importance).all():
        raise CAHPError(
            f"head importance must be a finite [layers, heads] array; got shape {importance.shape}"
        )
    _check_budget(n_heads, importance.size)
    if normalise_per_layer:
        norms = np.linalg.norm(importance, axis=1, keepdims=True)  # [L, 1]
        importance = importance / (norms + NORM_EPS)
    return top_n(importance, int(n_heads))


def random_selection(n_layers: int, n_heads: int, n_keep: int, seed: int) -> np.ndarray:
    """``n_keep`` heads uniformly at random (``numpy.random.default_rng(seed)``)."""
    _check_budget(n_keep, n_layers * n_heads)
    chosen = np.random.default_rng(seed).choice(n_layers * n_heads, size=int(n_keep), replace=False)
    keep = np.zeros(n_layers * n_heads, dtype=bool)
    keep[chosen] = True
    return keep.reshape(n_layers, n_heads)


def same_budget_maps(
    keep: np.ndarray, importance: np.ndarray, seed: int, raw_gradient: bool = False
) -> dict[str, np.ndarray]:
    """CAHP's kept map beside the baselines that keep exactly as many heads.

    ``gradient`` is Michel et al.'s per-layer normalised ranking; with ``raw_gradient`` the
    un-normalised global ranking is added as ``gradient-raw`` (the form whose proximity bias
    the CAHP paper describes; normalisation evens the layers out).
    """
    keep = np.asarray(keep, dtype=bool)  # [L, H]
    n_keep = int(keep.sum())
    maps = {
        "cahp": keep,
        "gradient": gradient_selection(importance, n_keep),
        "random": random_selection(*keep.shape, n_keep, seed),
    }
    if raw_gradient:
        maps["gradient-raw"] = gradient_selection(importance, n_keep, normalise_per_layer=False)
    return maps
