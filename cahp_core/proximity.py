"""Proximity-bias statistics: where in depth the kept heads sit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import CAHPError


def depth_stats(keep: np.ndarray) -> dict:
    """Kept heads per layer, mean normalised depth (0 first, 1 last layer), last-third share,
    and the total-variation distance of the layer distribution from uniform (0 = uniform)."""
    keep = np.asarray(keep, dtype=bool)
    if keep.ndim != 2 or 0 in keep.shape:
        raise CAHPError(f"a kept-head map must be 2-D [layers, heads]; got shape {keep.shape}")
    n_layers = keep.shape[0]
    per_layer = keep.sum(axis=1)  # [L]
    total = int(per_layer.sum())
    if total == 0:
        raise CAHPError("the kept-head map keeps no head; keep at least one head")
    depth = np.arange(n_layers) / max(n_layers - 1, 1)  # [L], 0 = first, 1 = last
    last_third = n_layers - math.ceil(n_layers / 3)
    share = per_layer / total
    return {
        "kept_per_layer": [int(n) for n in per_layer],
        "heads_kept": total,
        "mean_depth": float((per_layer * depth).sum() / total),
        "last_third_share": float(per_layer[last_third:].sum() / total),
        "uniform_distance": float(0.5 * np.abs(share - 1.0 / n_layers).sum()),
    }


def compare_depths(maps: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row of depth statistics per method (columns: method + the ``depth_stats`` keys)."""
    return pd.DataFrame([{"method": name, **depth_stats(keep)} for name, keep in maps.items()])
