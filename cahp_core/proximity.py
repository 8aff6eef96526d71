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
    n_layers = keep.shape[0]
    per_layer = keep.sum(axis=1)
    total = int(per_layer.sum())
    if total == 0:
        raise CAHPError("the kept-head map keeps no head; keep at least one head")
    depth = np.arange(n_layers) / max(n_layers - 1, 1)
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
    """One row of depth statistics per method."""
    return pd.DataFrame([{"method": name, **depth_stats(keep)} for name, keep in maps.items()])
