"""Clustering the heads for every k: t-SNE + k-medoids (paper) or Louvain on the head graph.

Every result holds, for each k, the label of every head and the medoid of every cluster,
with clusters numbered 0..k-1 in order of their smallest member (flat head index), so
``medoids[row][c]`` is the medoid of cluster ``c`` in ``labels[row]``. The quality curve is
the mean simplified silhouette (Hruschka et al., 2004) over k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import kmedoids
import numpy as np
from scipy.spatial.distance import cdist
from sklearn.manifold import TSNE

from .errors import CAHPError
from .graph import build_head_graph, canonical_labels, louvain_labels

CLUSTERING_METHODS = ("tsne-kmedoids", "graph")


@dataclass(frozen=True)
class ClusteringResult:
    """Labels of every head for every k, and the quality curve over k."""

    method: str
    ks: np.ndarray  # [K] int
    labels: np.ndarray  # [K, N] int, clusters 0..k-1 ordered by smallest member
    medoids: list[np.ndarray]  # K x [k] int, medoids[row][c] = medoid of cluster c
    quality: np.ndarray  # [K] mean simplified silhouette
    embedding: np.ndarray | None = None  # [N, 2] t-SNE coordinates

    def valid_ks(self) -> str:
        """The clustered k values, as text for error messages."""
        ks = [int(k) for k in self.ks]
        if ks and ks == list(range(ks[0], ks[-1] + 1)):
            return f"{ks[0]}..{ks[-1]}"
        return ", ".join(map(str, ks))

    def labels_for(self, k: int) -> np.ndarray:
        """Cluster of every head with ``k`` clusters: ``[N]``."""
        matches = np.flatnonzero(self.ks == k)
        if not len(matches):
            raise CAHPError(f"k={k} was not clustered; choose k in {self.valid_ks()}")
        return self.labels[matches[0]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an npz file (no pickle); medoids padded with -1 to ``[K, max k]``."""
        width = max((len(m) for m in self.medoids), default=0)
        medoids = np.full((len(self.medoids), width), -1, dtype=np.int64)
        for row, m in enumerate(self.medoids):
            medoids[row, : len(m)] = m
        arrays = {
            "method": np.array(self.method),
            "ks": np.asarray(self.ks, dtype=np.int64),
            "labels": np.asarray(self.labels, dtype=np.int64),
            "medoids": medoids,
            "quality": np.asarray(self.quality, dtype=np.float64),
        }
        if self.embedding is not None:
            arrays["embedding"] = np.asarray(self.embedding, dtype=np.float64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ClusteringResult:
        """Inverse of ``to_arrays`` (accepts an open ``np.load`` archive)."""
        medoids = [row[row >= 0] for row in np.asarray(arrays["medoids"], dtype=np.int64)]
        embedding = arrays.get("embedding")
        return cls(
            method=str(arrays["method"]),
            ks=np.asarray(arrays["ks"], dtype=np.int64),
            labels=np.asarray(arrays["labels"], dtype=np.int64),
            medoids=medoids,
            quality=np.asarray(arrays["quality"], dtype=np.float64),
            embedding=None if embedding is None else np.asarray(embedding, dtype=np.float64),
        )


def check_distance_matrix(distance: np.ndarray) -> np.ndarray:
    """A square, finite, non-negative float matrix, or a CAHPError saying what is wrong."""
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2 or distance.shape[0] != distance.shape[1]:
        raise CAHPError(
            f"the distance matrix must be square [heads, heads]; got shape {distance.shape}. "
            "Recompute the distances stage."
        )
    if not np.isfinite(distance).all() or (distance < 0).any():
        raise CAHPError(
            "the distance matrix holds NaN, infinite or negative values; "
            "recompute the distances stage"
        )
    return distance


def tsne_embedding(distance: np.ndarray, perplexity: float = 10.0, seed: int = 42) -> np.ndarray:
    """2-D t-SNE of the heads from a precomputed distance matrix ``[N, N]``: ``[N, 2]``.

    The perplexity is clamped to ``max(1, floor((N - 1) / 3))`` so that small models (few
    heads) still work: t-SNE needs about three times the perplexity in neighbours.
    scikit-learn's default Barnes-Hut gradients are used (the published benchmarks and the
    embedded example run were made with them).
    """
    distance = check_distance_matrix(distance)
    n = len(distance)
    if n < 3:
        raise CAHPError(f"t-SNE needs at least 3 heads; got {n}")
    if not perplexity > 0:
        raise CAHPError(f"perplexity must be > 0; got {perplexity}. Try 10.")
    perplexity = float(max(1, min(perplexity, (n - 1) // 3)))
    tsne = TSNE(
        n_components=2,
        metric="precomputed",
        init="random",
        perplexity=perplexity,
        method="barnes_hut",
        random_state=seed,
    )
    # a copy: scikit-learn's exact t-SNE squares a precomputed matrix in place (not Barnes-Hut,
    # but the caller's matrix must never depend on which method runs)
    return tsne.fit_transform(distance.copy())  # [N, 2]


def simplified_silhouette(
    dissimilarity: np.ndarray, labels: np.ndarray, medoids: np.ndarray
) -> float:
    """Mean over points of ``(b - a) / max(a, b)`` (0 where both are 0).

    ``labels[i]`` is the position in ``medoids`` of point i's cluster; ``a`` is the
    dissimilarity to its own medoid, ``b`` to the nearest other medoid.
    """
    labels = np.asarray(labels, dtype=int)
    medoids = np.asarray(medoids, dtype=int)
    if len(medoids) < 2:
        raise CAHPError(f"a silhouette needs at least 2 clusters; got {len(medoids)}")
    if labels.min() < 0 or labels.max() >= len(medoids):
        raise CAHPError(f"labels must be cluster positions 0..{len(medoids) - 1} in medoids")
    rows = np.arange(len(labels))
    to_medoids = np.asarray(dissimilarity, dtype=np.float64)[:, medoids]  # [N, k]
    a = to_medoids[rows, labels]  # [N]
    others = to_medoids.copy()
    others[rows, labels] = np.inf
    b = others.min(axis=1)  # [N]
    denominator = np.maximum(a, b)
    safe = np.where(denominator > 0, denominator, 1.0)
    scores = np.where(denominator > 0, (b - a) / safe, 0.0)
    return float(scores.mean())


def canonical_clustering(labels: np.ndarray, medoids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters 0..k-1 by smallest member and reorder ``medoids`` to match.

    ``labels[i]`` is a position in ``medoids``; every medoid position must be used.
    """
    canonical = canonical_labels(labels)  # [N]
    order = np.empty(len(medoids), dtype=int)
    order[canonical] = np.asarray(labels, dtype=int)  # new id -> old medoid position
    return canonical, np.asarray(medoids, dtype=int)[order]


def _check_ks(ks: Sequence[int], n: int) -> np.ndarray:
    ks = np.asarray(ks)
    if ks.ndim != 1 or not len(ks) or not np.issubdtype(ks.dtype, np.integer):
        raise CAHPError(f"ks must be a non-empty list of whole numbers; got {ks.tolist()}")
    if ks.min() < 2 or ks.max() > n - 1:
        raise CAHPError(
            f"every k must be between 2 and {n - 1} (heads - 1); got {ks.min()}..{ks.max()}"
        )
    return ks.astype(np.int64)


def kmedoids_sweep(
    points: np.ndarray, ks: Sequence[int], seed: int = 42, *, precomputed: bool = False
) -> ClusteringResult:
    """FasterPAM k-medoids for every k in ``ks``.

    ``points`` ``[N, 2]`` (the t-SNE embedding; Euclidean distances are used), or an
    ``[N, N]`` dissimilarity matrix with ``precomputed=True``. Each medoid belongs to its own
    cluster; every other head goes to its nearest medoid (ties: first medoid).
    """
    points = np.asarray(points, dtype=np.float64)
    dissimilarity = check_distance_matrix(points) if precomputed else cdist(points, points)
    n = len(dissimilarity)
    ks = _check_ks(ks, n)
    labels, medoids, quality = [], [], []
    for k in ks:
        result = kmedoids.fasterpam(dissimilarity, int(k), random_state=seed, n_cpu=1)
        found = np.asarray(result.medoids, dtype=int)  # [k]
        assignment = np.argmin(dissimilarity[:, found], axis=1)  # [N]
        assignment[found] = np.arange(len(found))  # a medoid is in its own cluster
        quality.append(simplified_silhouette(dissimilarity, assignment, found))
        canonical, ordered = canonical_clustering(assignment, found)
        labels.append(canonical)
        medoids.append(ordered)
    return ClusteringResult(
        "tsne-kmedoids", ks, np.asarray(labels, dtype=np.int64), medoids, np.asarray(quality)
    )


def community_medoids(distance: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per cluster 0..k-1, the member with the smallest summed distance to the other members
    (ties: lowest index): ``[k]``."""
    medoids = []
    for label in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == label)
        within = distance[np.ix_(members, members)].sum(axis=1)  # [m]
        medoids.append(members[int(np.argmin(within))])
    return np.asarray(medoids, dtype=np.int64)


def louvain_sweep(
    distance: np.ndarray,
    n_neighbors: int = 5,
    resolutions: np.ndarray | None = None,
    seed: int = 42,
    k_min: int = 2,
    k_max: int | None = None,
) -> ClusteringResult:
    """Graph-native alternative: Louvain on the kNN head graph over a resolution sweep.

    ``resolutions`` defaults to ``np.geomspace(0.05, 50, 60)``. The first partition found
    for each distinct number of communities ``k`` in ``[k_min, k_max]`` (default 2..N-1) is
    kept; medoid = the member with the smallest summed distance to the others; quality =
    simplified silhouette on ``distance``. Raises a CAHPError if fewer than 3 distinct k are
    found (too few points for a knee).
    """
    distance = check_distance_matrix(distance)
    n = len(distance)
    k_max = n - 1 if k_max is None else k_max
    resolutions = np.geomspace(0.05, 50, 60) if resolutions is None else np.asarray(resolutions)
    graph = build_head_graph(distance, 1, n, n_neighbors=n_neighbors)  # one "layer" of N
    found: dict[int, np.ndarray] = {}
    for resolution in resolutions:
        labels = louvain_labels(graph, float(resolution), seed)  # canonical
        k = int(labels.max() + 1)
        if k_min <= k <= k_max and k not in found:
            found[k] = labels
    if len(found) < 3:
        raise CAHPError(
            f"graph clustering found only {len(found)} distinct community counts in "
            f"{k_min}..{k_max}; use --clustering tsne-kmedoids or more graph neighbours"
        )
    ks = sorted(found)
    medoids = [community_medoids(distance, found[k]) for k in ks]
    quality = [
        simplified_silhouette(distance, found[k], m) for k, m in zip(ks, medoids, strict=True)
    ]
    return ClusteringResult(
        "graph",
        np.asarray(ks, dtype=np.int64),
        np.asarray([found[k] for k in ks], dtype=np.int64),
        medoids,
        np.asarray(quality),
    )


def _whole(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def cluster_heads(
    distance: np.ndarray,
    method: str = "tsne-kmedoids",
    perplexity: float = 10.0,
    seed: int = 42,
    k_min: int = 2,
    k_max: int | None = None,
    n_neighbors: int = 5,
) -> ClusteringResult:
    """Cluster all heads for every k in ``[k_min, k_max]`` (default 2..N-1).

    ``tsne-kmedoids`` (paper): t-SNE of the distances, then FasterPAM for every k.
    ``graph``: Louvain on the kNN head graph (k values are those Louvain finds); the t-SNE
    embedding is computed too, for plots.
    """
    if method not in CLUSTERING_METHODS:
        raise CAHPError(
            f"unknown clustering {method!r}; choose one of {', '.join(CLUSTERING_METHODS)}"
        )
    distance = check_distance_matrix(distance)
    n = len(distance)
    k_max = n - 1 if k_max is None else k_max
    if not (_whole(k_min) and _whole(k_max)) or not 2 <= k_min <= k_max <= n - 1:
        raise CAHPError(
            f"cluster counts must be whole numbers with 2 <= k_min <= k_max <= {n - 1} "
            f"(heads - 1); got k_min={k_min}, k_max={k_max}"
        )
    if not _whole(n_neighbors) or n_neighbors < 1:
        raise CAHPError(f"graph neighbours must be a whole number >= 1; got {n_neighbors}")
    embedding = tsne_embedding(distance, perplexity, seed)  # [N, 2]
    if method == "tsne-kmedoids":
        result = kmedoids_sweep(embedding, range(k_min, k_max + 1), seed)
    else:
        result = louvain_sweep(distance, n_neighbors, seed=seed, k_min=k_min, k_max=k_max)
    return ClusteringResult(
        result.method, result.ks, result.labels, result.medoids, result.quality, embedding
    )
