"""Clustering the heads for every k: t-SNE + k-medoids (paper) or Louvain on the head graph."""

from __future__ import annotations

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
    labels: np.ndarray  # [K, N] int
    medoids: list[np.ndarray]  # K x [k] int
    quality: np.ndarray  # [K] mean simplified silhouette
    embedding: np.ndarray | None = None  # [N, 2] t-SNE coordinates

    def labels_for(self, k: int) -> np.ndarray:
        matches = np.flatnonzero(self.ks == k)
        if not len(matches):
            raise CAHPError(
                f"k={k} was not clustered; choose k in {int(self.ks.min())}..{int(self.ks.max())}"
            )
        return self.labels[matches[0]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an npz file (no pickle); medoids padded with -1."""
        width = max((len(m) for m in self.medoids), default=0)
        medoids = np.full((len(self.medoids), width), -1, dtype=int)
        for row, m in enumerate(self.medoids):
            medoids[row, : len(m)] = m
        arrays = {
            "method": np.array(self.method),
            "ks": self.ks,
            "labels": self.labels,
            "medoids": medoids,
            "quality": self.quality,
        }
        if self.embedding is not None:
            arrays["embedding"] = self.embedding
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ClusteringResult:
        medoids = [row[row >= 0] for row in np.asarray(arrays["medoids"])]
        return cls(
            method=str(arrays["method"]),
            ks=np.asarray(arrays["ks"], dtype=int),
            labels=np.asarray(arrays["labels"], dtype=int),
            medoids=medoids,
            quality=np.asarray(arrays["quality"], dtype=float),
            embedding=arrays.get("embedding"),
        )


def tsne_embedding(distance: np.ndarray, perplexity: float = 10.0, seed: int = 42) -> np.ndarray:
    """2-D t-SNE of the heads from a precomputed distance matrix: ``[N, 2]``.

    Perplexity must be below the number of heads; it is clamped to ``(N - 1) / 3``.
    """
    n = len(distance)
    perplexity = float(max(1.0, min(perplexity, (n - 1) // 3)))
    tsne = TSNE(
        n_components=2,
        metric="precomputed",
        init="random",
        perplexity=perplexity,
        random_state=seed,
    )
    return tsne.fit_transform(np.asarray(distance, dtype=np.float64))


def simplified_silhouette(
    dissimilarity: np.ndarray, labels: np.ndarray, medoids: np.ndarray
) -> float:
    """Mean of (b - a) / max(a, b): a = to own medoid, b = to the nearest other medoid."""
    to_medoids = dissimilarity[:, medoids]  # [N, k]
    own = np.array([int(np.flatnonzero(medoids == medoids[label])[0]) for label in labels])
    a = to_medoids[np.arange(len(labels)), own]
    others = to_medoids.copy()
    others[np.arange(len(labels)), own] = np.inf
    b = others.min(axis=1)
    denominator = np.maximum(a, b)
    scores = np.where(denominator > 0, (b - a) / np.where(denominator > 0, denominator, 1), 0.0)
    return float(scores.mean())


def _medoid_labels(dissimilarity: np.ndarray, medoids: np.ndarray) -> np.ndarray:
    """Cluster index (position in ``medoids``) of every point: its nearest medoid."""
    return np.argmin(dissimilarity[:, medoids], axis=1)


def kmedoids_sweep(points: np.ndarray, ks: list[int], seed: int = 42) -> ClusteringResult:
    """FasterPAM k-medoids on the Euclidean distances of ``points`` for every k in ``ks``."""
    dissimilarity = cdist(points, points)
    labels, medoids, quality = [], [], []
    for k in ks:
        result = kmedoids.fasterpam(dissimilarity, k, random_state=seed, n_cpu=1)
        medoid_idx = np.asarray(result.medoids, dtype=int)
        assignment = _medoid_labels(dissimilarity, medoid_idx)
        labels.append(canonical_labels(assignment))
        medoids.append(medoid_idx)
        quality.append(simplified_silhouette(dissimilarity, assignment, medoid_idx))
    return ClusteringResult(
        "tsne-kmedoids", np.asarray(ks, dtype=int), np.asarray(labels), medoids, np.asarray(quality)
    )


def _community_medoids(distance: np.ndarray, labels: np.ndarray) -> np.ndarray:
    medoids = []
    for label in range(labels.max() + 1):
        members = np.flatnonzero(labels == label)
        within = distance[np.ix_(members, members)].sum(axis=1)
        medoids.append(members[int(np.argmin(within))])
    return np.asarray(medoids, dtype=int)


def louvain_sweep(
    distance: np.ndarray,
    n_neighbors: int = 5,
    resolutions: np.ndarray | None = None,
    seed: int = 42,
    k_min: int = 2,
    k_max: int | None = None,
) -> ClusteringResult:
    """Graph-native alternative: Louvain on the kNN head graph over a resolution sweep.

    The first partition found for each distinct number of communities is kept; medoid = the
    member closest to the others; quality = simplified silhouette on ``distance``.
    """
    n = len(distance)
    k_max = n - 1 if k_max is None else k_max
    resolutions = np.geomspace(0.05, 50, 60) if resolutions is None else resolutions
    graph = build_head_graph(distance, 1, n, n_neighbors=n_neighbors)
    found: dict[int, np.ndarray] = {}
    for resolution in resolutions:
        labels = louvain_labels(graph, float(resolution), seed)
        k = int(labels.max() + 1)
        if k_min <= k <= k_max and k not in found:
            found[k] = labels
    if len(found) < 3:
        raise CAHPError(
            f"graph clustering found only {len(found)} distinct community counts; "
            "use --clustering tsne-kmedoids or more graph neighbours"
        )
    ks = sorted(found)
    medoids = [_community_medoids(distance, found[k]) for k in ks]
    quality = [
        simplified_silhouette(distance, found[k], m) for k, m in zip(ks, medoids, strict=True)
    ]
    return ClusteringResult(
        "graph", np.asarray(ks), np.asarray([found[k] for k in ks]), medoids, np.asarray(quality)
    )


def cluster_heads(
    distance: np.ndarray,
    method: str = "tsne-kmedoids",
    perplexity: float = 10.0,
    seed: int = 42,
    k_min: int = 2,
    k_max: int | None = None,
    n_neighbors: int = 5,
) -> ClusteringResult:
    """Cluster all heads for every k in ``[k_min, k_max]`` (default 2..N-1)."""
    n = len(distance)
    k_max = n - 1 if k_max is None else k_max
    if not 2 <= k_min <= k_max <= n - 1:
        raise CAHPError(
            f"cluster counts must satisfy 2 <= k_min <= k_max <= {n - 1} (heads - 1); "
            f"got k_min={k_min}, k_max={k_max}"
        )
    if method == "tsne-kmedoids":
        embedding = tsne_embedding(distance, perplexity, seed)
        result = kmedoids_sweep(embedding, list(range(k_min, k_max + 1)), seed)
        return ClusteringResult(
            result.method, result.ks, result.labels, result.medoids, result.quality, embedding
        )
    if method == "graph":
        result = louvain_sweep(distance, n_neighbors, seed=seed, k_min=k_min, k_max=k_max)
        embedding = tsne_embedding(distance, perplexity, seed)
        return ClusteringResult(
            result.method, result.ks, result.labels, result.medoids, result.quality, embedding
        )
    raise CAHPError(f"unknown clustering {method!r}; choose one of {', '.join(CLUSTERING_METHODS)}")
