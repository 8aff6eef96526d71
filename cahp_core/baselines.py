"""Baselines at a head budget: gradient importance (Michel et al., 2019) and random."""

from __future__ import annotations

import numpy as np

from .errors import CAHPError


def _check_budget(n_keep: int, total: int) -> None:
    if isinstance(n_keep, bool) or not 1 <= int(n_keep) <= total:
        raise CAHPError(f"head budget must be between 1 and {total}; got {n_keep}")


def top_n(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Bool map of the ``n_keep`` highest scores (ties: lowest flat index first)."""
    flat = scores.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))[:n_keep]
    keep = np.zeros(flat.size, dtype=bool)
    keep[order] = True
    return keep.reshape(scores.shape)


def gradient_selection(
    importance: np.ndarray, n_heads: int, normalise_per_layer: bool = True
) -> np.ndarray:
    """Keep the globally top-``n_heads`` heads by accumulated |dL/dgate|.

    With ``normalise_per_layer`` each layer's importances are divided by their L2 norm, as in
    Michel et al. (2019).
    """
    importance = np.asarray(importance, dtype=np.float64)
    _check_budget(n_heads, importance.size)
    if normalise_per_layer:
        norms = np.linalg.norm(importance, axis=1, keepdims=True)
        importance = importance / np.where(norms > 0, norms, 1.0)
    return top_n(importance, int(n_heads))


def random_selection(n_layers: int, n_heads: int, n_keep: int, seed: int) -> np.ndarray:
    """``n_keep`` heads uniformly at random (seeded)."""
    _check_budget(n_keep, n_layers * n_heads)
    chosen = np.random.default_rng(seed).choice(n_layers * n_heads, size=int(n_keep), replace=False)
    keep = np.zeros(n_layers * n_heads, dtype=bool)
    keep[chosen] = True
    return keep.reshape(n_layers, n_heads)
