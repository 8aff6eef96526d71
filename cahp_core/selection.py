"""Complementary head selection and the scikit-learn-style ``CAHPSelector``."""

from __future__ import annotations

import hashlib

import numpy as np

from .clustering import CLUSTERING_METHODS, ClusteringResult, cluster_heads
from .distances import DISTANCE_METHODS, HeadDistances, head_distances
from .errors import CAHPError
from .knee import KneeResult, find_knee
from .signatures import HeadSignatures

UPSTREAM_PARAMS = ("clustering", "distance", "perplexity", "seed", "k_min", "k_max", "n_neighbors")


def complementary_selection(
    labels: np.ndarray, salience: np.ndarray, n_layers: int, n_heads: int
) -> np.ndarray:
    """Keep the most salient head of each cluster, then give every empty layer its most
    salient head back. Ties go to the lowest flat index. Returns bool ``[layers, heads]``.

    labels: ``[N]`` cluster of every head (flat index ``layer * n_heads + head``);
    salience: ``[layers, heads]``.
    """
    labels = np.asarray(labels)
    salience = np.asarray(salience, dtype=np.float64)
    if salience.shape != (n_layers, n_heads):
        raise CAHPError(
            f"salience has shape {salience.shape}; expected ({n_layers}, {n_heads}) [layers, heads]"
        )
    if labels.shape != (n_layers * n_heads,):
        raise CAHPError(
            f"labels has shape {labels.shape}; expected ({n_layers * n_heads},), one per head"
        )
    if not np.isfinite(salience).all():
        raise CAHPError("salience holds NaN or infinite values; recompute the salience stage")
    flat_salience = salience.reshape(-1)  # [N]
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
        """The constructor parameters (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in ("degree", *UPSTREAM_PARAMS)}

    def set_params(self, **params) -> CAHPSelector:
        """Set constructor parameters; refit to apply them."""
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

    def _validate_params(self) -> None:
        """Cheap checks before any computation (ranges that need the data come later)."""
        if not _whole(self.degree) or self.degree < 1:
            raise CAHPError(f"degree must be a whole number >= 1; got {self.degree!r}")
        if self.clustering not in CLUSTERING_METHODS:
            raise CAHPError(
                f"unknown clustering {self.clustering!r}; "
                f"choose one of {', '.join(CLUSTERING_METHODS)}"
            )
        if self.distance not in DISTANCE_METHODS:
            raise CAHPError(
                f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCE_METHODS)}"
            )
        if isinstance(self.perplexity, bool) or not (
            isinstance(self.perplexity, int | float | np.number) and self.perplexity > 0
        ):
            raise CAHPError(f"perplexity must be a number > 0; got {self.perplexity!r}")
        if not _whole(self.seed):
            raise CAHPError(f"seed must be a whole number; got {self.seed!r}")
        if not _whole(self.n_neighbors) or self.n_neighbors < 1:
            raise CAHPError(f"n_neighbors must be a whole number >= 1; got {self.n_neighbors!r}")

    # -- fitting
    def fit(self, signatures: HeadSignatures, salience: np.ndarray) -> CAHPSelector:
        """Distances -> clustering for every k -> knee of the fitted curve -> selection.

        Distances and clustering are cached on the upstream parameters and a hash of the
        signatures, so refitting after ``set_params(degree=...)`` only redoes the knee.
        """
        self._validate_params()
        salience = np.asarray(salience, dtype=np.float64)
        shape = (signatures.n_layers, signatures.n_heads)
        if salience.shape != shape:
            raise CAHPError(
                f"salience has shape {salience.shape}; expected {shape} [layers, heads]"
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
        self.fit_from_clustering(clustering, salience, *shape)
        self.distances_: HeadDistances | None = distances
        return self

    def fit_from_clustering(
        self, clustering: ClusteringResult, salience: np.ndarray, n_layers: int, n_heads: int
    ) -> CAHPSelector:
        """Fit from a cached clustering: only the knee and the selection are computed.

        ``distances_`` is None after this call (``fit`` sets it).
        """
        if not _whole(self.degree) or self.degree < 1:
            raise CAHPError(f"degree must be a whole number >= 1; got {self.degree!r}")
        salience = np.asarray(salience, dtype=np.float64)
        if salience.shape != (n_layers, n_heads):
            raise CAHPError(
                f"salience has shape {salience.shape}; expected ({n_layers}, {n_heads})"
            )
        if clustering.labels.ndim != 2 or clustering.labels.shape[1] != n_layers * n_heads:
            raise CAHPError(
                f"the clustering has labels for {clustering.labels.shape[-1]} heads but the "
                f"model has {n_layers * n_heads}; recompute the clustering stage"
            )
        self.distances_ = None
        self.clustering_ = clustering
        self.salience_ = salience  # [L, H]
        self.shape_ = (n_layers, n_heads)
        self.curve_ = np.column_stack([clustering.ks, clustering.quality]).astype(float)  # [K, 2]
        self.knee_result_: KneeResult = find_knee(clustering.ks, clustering.quality, self.degree)
        self.knee_ = int(self.knee_result_.knee)
        self.labels_ = clustering.labels_for(self.knee_)  # [N]
        self.support_ = self.select(self.knee_)  # [L, H]
        self.kept_per_layer_ = self.support_.sum(axis=1).astype(int)  # [L]
        self.n_heads_kept_ = int(self.support_.sum())
        return self

    # -- using a fitted selector
    def _check_fitted(self) -> None:
        if not hasattr(self, "clustering_"):
            raise CAHPError("this CAHPSelector is not fitted yet; call fit(...) first")

    def select(self, k: int) -> np.ndarray:
        """The complementary selection with ``k`` clusters: bool ``[layers, heads]``."""
        self._check_fitted()
        if not _whole(k):
            raise CAHPError(f"k must be a whole number in {self.clustering_.valid_ks()}; got {k!r}")
        labels = self.clustering_.labels_for(int(k))
        return complementary_selection(labels, self.salience_, *self.shape_)

    def select_budget(self, n_heads: int) -> np.ndarray:
        """The selection keeping the most heads without exceeding ``n_heads``.

        Raises a CAHPError if the budget is outside ``[layers, all heads]`` or if even the
        smallest selection keeps more heads (the message names the smallest possible).
        """
        self._check_fitted()
        n_layers, per_layer = self.shape_
        total = n_layers * per_layer
        if not _whole(n_heads) or not n_layers <= n_heads <= total:
            raise CAHPError(
                f"head budget must be between {n_layers} (one per layer) and {total}; got {n_heads}"
            )
        best, fewest = None, None
        for k in self.clustering_.ks:
            keep = self.select(int(k))
            kept = int(keep.sum())
            if kept <= n_heads and (best is None or kept > best.sum()):
                best = keep
            if fewest is None or kept < fewest[0]:
                fewest = (kept, int(k))
        if best is None:
            raise CAHPError(
                f"no clustering keeps at most {n_heads} heads; the fewest is {fewest[0]} "
                f"(k={fewest[1]}). Pass a budget of at least {fewest[0]}."
            )
        return best

    def get_support(self) -> np.ndarray:
        """Bool ``[layers, heads]`` map of the heads kept at the knee."""
        self._check_fitted()
        return self.support_


def _whole(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
