"""Complementary head selection and the scikit-learn-style ``CAHPSelector``."""

from __future__ import annotations

import hashlib

import numpy as np

from .clustering import ClusteringResult, cluster_heads
from .distances import HeadDistances, head_distances
from .errors import CAHPError
from .knee import KneeResult, find_knee
from .signatures import HeadSignatures

UPSTREAM_PARAMS = ("clustering", "distance", "perplexity", "seed", "k_min", "k_max", "n_neighbors")


def complementary_selection(
    labels: np.ndarray, salience: np.ndarray, n_layers: int, n_heads: int
) -> np.ndarray:
    """Keep the most salient head of each cluster, then give every empty layer its most
    salient head back. Ties go to the lowest flat index. Returns bool ``[layers, heads]``."""
    labels = np.asarray(labels)
    flat_salience = np.asarray(salience, dtype=np.float64).reshape(-1)  # [N]
    keep = np.zeros(n_layers * n_heads, dtype=bool)
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        keep[members[np.argmax(flat_salience[members])]] = True  # argmax: first of ties
    keep = keep.reshape(n_layers, n_heads)
    per_layer = flat_salience.reshape(n_layers, n_heads)
    for layer in np.flatnonzero(~keep.any(axis=1)):
        keep[layer, int(np.argmax(per_layer[layer]))] = True
    return keep


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class CAHPSelector:
    """Select a complementary set of attention heads, like a scikit-learn feature selector.

    Parameters are stored as given; ``fit`` computes distances, clusters the heads for every
    k, fits a polynomial of ``degree`` to the cluster-quality curve and keeps the most salient
    head of each cluster at its knee (at least one head per layer). Refitting with another
    ``degree`` (``set_params(degree=3).fit(...)``) reuses the distances and the clustering.

    Fitted attributes: ``distances_``, ``clustering_``, ``curve_`` ([K, 2]: k, quality),
    ``knee_``, ``knee_result_``, ``labels_`` (cluster of every head at the knee), ``support_``
    (bool [layers, heads]), ``kept_per_layer_``, ``n_heads_kept_``, ``salience_``.
    """

    def __init__(
        self,
        degree: int = 6,
        clustering: str = "tsne-kmedoids",
        distance: str = "jm",
        perplexity: float = 10.0,
        seed: int = 42,
        k_min: int = 2,
        k_max: int | None = None,
        n_neighbors: int = 5,
    ):
        self.degree = degree
        self.clustering = clustering
        self.distance = distance
        self.perplexity = perplexity
        self.seed = seed
        self.k_min = k_min
        self.k_max = k_max
        self.n_neighbors = n_neighbors

    # -- scikit-learn protocol
    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in ("degree", *UPSTREAM_PARAMS)}

    def set_params(self, **params) -> CAHPSelector:
        for name, value in params.items():
            if name not in self.get_params():
                raise CAHPError(
                    f"unknown parameter {name!r}; valid: {', '.join(self.get_params())}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"CAHPSelector({args})"

    # -- fitting
    def fit(self, signatures: HeadSignatures, salience: np.ndarray) -> CAHPSelector:
        """Distances -> clustering for every k -> knee of the fitted curve -> selection."""
        salience = np.asarray(salience, dtype=np.float64)
        expected = (signatures.n_layers, signatures.n_heads)
        if salience.shape != expected:
            raise CAHPError(
                f"salience has shape {salience.shape}; expected {expected} [layers, heads]"
            )
        key = (
            tuple(getattr(self, p) for p in UPSTREAM_PARAMS),
            _fingerprint(signatures.mean, signatures.var, signatures.count),
        )
        cache = getattr(self, "_upstream_cache", None)
        if cache is None or cache[0] != key:
            distances = head_distances(signatures, self.distance)
            clustering = cluster_heads(
                distances.distance,
                method=self.clustering,
                perplexity=self.perplexity,
                seed=self.seed,
                k_min=self.k_min,
                k_max=self.k_max,
                n_neighbors=self.n_neighbors,
            )
            self._upstream_cache = (key, distances, clustering)
        _, distances, clustering = self._upstream_cache
        self.fit_from_clustering(clustering, salience, *expected)
        self.distances_: HeadDistances | None = distances
        return self

    def fit_from_clustering(
        self, clustering: ClusteringResult, salience: np.ndarray, n_layers: int, n_heads: int
    ) -> CAHPSelector:
        """Fit from a cached clustering (only the knee and the selection are computed)."""
        salience = np.asarray(salience, dtype=np.float64)
        if salience.shape != (n_layers, n_heads):
            raise CAHPError(
                f"salience has shape {salience.shape}; expected ({n_layers}, {n_heads})"
            )
        if clustering.labels.shape[1] != n_layers * n_heads:
            raise CAHPError("the clustering and the salience describe different models")
        self.distances_ = None
        self.clustering_ = clustering
        self.salience_ = salience
        self.shape_ = (n_layers, n_heads)
        self.curve_ = np.column_stack([clustering.ks, clustering.quality]).astype(float)
        self.knee_result_: KneeResult = find_knee(clustering.ks, clustering.quality, self.degree)
        self.knee_ = int(self.knee_result_.knee)
        self.labels_ = clustering.labels_for(self.knee_)
        self.support_ = self.select(self.knee_)
        self.kept_per_layer_ = self.support_.sum(axis=1)
        self.n_heads_kept_ = int(self.support_.sum())
        return self

    # -- using a fitted selector
    def _check_fitted(self) -> None:
        if not hasattr(self, "clustering_"):
            raise CAHPError("this CAHPSelector is not fitted yet; call fit(...) first")

    def select(self, k: int) -> np.ndarray:
        """The complementary selection with ``k`` clusters: bool ``[layers, heads]``."""
        self._check_fitted()
        labels = self.clustering_.labels_for(int(k))
        return complementary_selection(labels, self.salience_, *self.shape_)

    def select_budget(self, n_heads: int) -> np.ndarray:
        """The selection keeping the most heads without exceeding ``n_heads``."""
        self._check_fitted()
        n_layers, per_layer = self.shape_
        total = n_layers * per_layer
        if not n_layers <= int(n_heads) <= total:
            raise CAHPError(
                f"head budget must be between {n_layers} (one per layer) and {total}; got {n_heads}"
            )
        best = None
        for k in self.clustering_.ks:
            keep = self.select(int(k))
            if keep.sum() <= n_heads and (best is None or keep.sum() > best.sum()):
                best = keep
        if best is None:  # even the smallest k keeps too many heads
            best = self.select(int(self.clustering_.ks[0]))
        return best

    def get_support(self) -> np.ndarray:
        self._check_fitted()
        return self.support_
