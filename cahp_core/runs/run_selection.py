"""A ``CAHPSelector`` from a run's configuration and its cached stages: the one fit the
pipeline, the CLI's export, the read-only views and every dashboard page share, so they agree
on the knee and the kept heads."""

from __future__ import annotations

import numpy as np

from cahp_core.errors import CAHPError
from cahp_core.method.clustering import ClusteringResult
from cahp_core.method.salience import Salience
from cahp_core.method.selection import CAHPSelector, performance_points
from cahp_core.runs.config import RunConfig
from cahp_core.runs.run_format import DISTANCES


def make_selector(
    config: RunConfig, degree: int | None = None, knee_curve: str | None = None
) -> CAHPSelector:
    return CAHPSelector(
        degree=config.degree if degree is None else degree,
        clustering=config.clustering,
        distance=config.distance,
        quality=config.quality,
        perplexity=config.perplexity,
        seed=config.seed,
        n_seeds=config.n_seeds,
        knee_curve=config.knee_curve if knee_curve is None else knee_curve,
        knee_shape=config.knee_shape,
        n_neighbors=config.graph_neighbors,
        rule=config.rule,
        radius_quantile=config.radius_quantile,
        mmr_lambda=config.mmr_lambda,
    )


def fit_selector(
    config: RunConfig,
    clusterings: list[ClusteringResult],
    salience: Salience,
    degree: int | None = None,
    *,
    knee_curve: str | None = None,
    task_curve: list[dict] | None = None,
    distance: np.ndarray | None = None,
) -> CAHPSelector:
    """A fitted selector from cached clusterings + salience (+ the measured task curve, for
    the performance knee; + the head distances ``[N, N]``, for the salience-radius and mmr
    rules): no signature or clustering pass. The CLI, the export and every dashboard page go
    through here, so they agree on the knee and the kept heads.

    The raw salience is passed: the complementary rule only compares heads (any increasing
    rescaling selects the same), the salience-led rules normalise it per layer as the
    gradient baseline does."""
    n_layers, n_heads = salience.raw.shape
    performance = performance_points(task_curve) if task_curve else None
    if config.rule != "complementary" and distance is None:
        raise CAHPError(
            f"the {config.rule} rule needs the run's head distances ({DISTANCES.file}), which this "
            "run lacks; finish its distances stage with `cahp run` or use --rule complementary"
        )
    return make_selector(config, degree, knee_curve).fit_from_clustering(
        clusterings, salience.raw, n_layers, n_heads, performance=performance, distance=distance
    )
