"""Clustering the heads for every k: t-SNE + k-medoids (paper) or Louvain on the head graph.

Every result holds, for each k, the label of every head and the medoid of every cluster,
with clusters numbered 0..k-1 in order of their smallest member (flat head index), so
``medoids[row][c]`` is the medoid of cluster ``c`` in ``labels[row]``.

The quality curve over k is, by default, the authors' mean simplified silhouette
(``quality="mss"``, yanivlivert/cahp ``cahp/graph/mss.py``): ``a`` is a head's distance to its
own medoid, ``b`` its *mean* distance to all other medoids, heads with ``a == 0`` (the
medoids) are left out, and once the curve reaches 1 the sweep's remaining values are 1. It
rises with k because more medoids bring every head closer to its own. The variant
``"simplified-silhouette"`` (Hruschka et al., 2004, as this project computed it before) uses
the *nearest* other medoid for ``b`` and scores every medoid 1.

t-SNE runs as the authors run it: scikit-learn's defaults (PCA start, Barnes-Hut,
perplexity 10, 1000 iterations) on the head feature matrix, so the embedding barely depends
on the seed; FasterPAM then gets the same seed. Distances with no feature matrix (``js``)
start t-SNE from classical MDS of the distances, the same geometry a PCA start gives.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import kmedoids
import numpy as np
from scipy.spatial.distance import cdist
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from cahp_core.choices import CLUSTERING_METHODS, QUALITY_METHODS, check_choice, is_whole
from cahp_core.errors import CAHPError, earlier_version_error
from cahp_core.method.graph import build_head_graph, canonical_labels, louvain_labels

TSNE_INITS = ("pca", "random")
CLUSTERING_FORMAT = 2  # clustering.npz: one result per seed (format 1: one seed, old curve)


@dataclass(frozen=True)
class ClusteringResult:
    """Labels of every head for every k, and the quality curve over k."""

    method: str
    ks: np.ndarray  # [K] int
    labels: np.ndarray  # [K, N] int, clusters 0..k-1 ordered by smallest member
    medoids: list[np.ndarray]  # K x [k] int, medoids[row][c] = medoid of cluster c
    quality: np.ndarray  # [K] cluster quality (``quality_name``)
    embedding: np.ndarray | None = None  # [N, 2] t-SNE coordinates
    quality_name: str = "mss"
    seed: int = 42

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
            "quality_name": np.array(self.quality_name),
            "seed": np.array(self.seed, dtype=np.int64),
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
            method=str(_scalar(arrays["method"])),
            ks=np.asarray(arrays["ks"], dtype=np.int64),
            labels=np.asarray(arrays["labels"], dtype=np.int64),
            medoids=medoids,
            quality=np.asarray(arrays["quality"], dtype=np.float64),
            embedding=None if embedding is None else np.asarray(embedding, dtype=np.float64),
            quality_name=str(_scalar(arrays.get("quality_name", "simplified-silhouette"))),
            seed=int(_scalar(arrays.get("seed", 42))),
        )

    def with_embedding(self, embedding: np.ndarray | None) -> ClusteringResult:
        """The same clustering with t-SNE coordinates attached."""
        return replace(self, embedding=embedding)


def _scalar(value: object) -> object:
    """The one value of a scalar array as saved in npz (stored 1-D, ``[1]``)."""
    return np.asarray(value).reshape(-1)[0].item()


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


def classical_mds(distance: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS coordinates of a distance matrix ``[N, N]``: ``[N, d]``.

    For Euclidean distances between feature vectors these are the features' PCA
    projections (up to the sign of each axis). Signs are fixed so that the largest absolute
    coordinate of each axis is positive (deterministic).
    """
    squared = np.asarray(distance, dtype=np.float64) ** 2
    n = len(squared)
    centring = np.eye(n) - np.full((n, n), 1.0 / n)
    gram = -0.5 * centring @ squared @ centring  # [N, N]
    values, vectors = np.linalg.eigh(gram)  # ascending
    order = np.argsort(values)[::-1][:n_components]
    coords = vectors[:, order] * np.sqrt(np.clip(values[order], 0.0, None))  # [N, d]
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), range(coords.shape[1])])
    return coords * np.where(signs == 0, 1.0, signs)


def _tsne_perplexity(n: int, perplexity: float) -> float:
    if n < 3:
        raise CAHPError(f"t-SNE needs at least 3 heads; got {n}")
    if not perplexity > 0:
        raise CAHPError(f"perplexity must be > 0; got {perplexity}. Try 10.")
    # t-SNE needs about three times the perplexity in neighbours: small models still work
    return float(max(1, min(perplexity, (n - 1) // 3)))


def tsne_embedding(
    distance: np.ndarray,
    perplexity: float = 10.0,
    seed: int = 42,
    *,
    features: np.ndarray | None = None,
    init: str = "pca",
) -> np.ndarray:
    """2-D t-SNE of the heads: ``[N, 2]``.

    With ``features`` ``[N, F]`` (the JM feature matrix) t-SNE runs on them exactly as the
    authors run it: scikit-learn's defaults (Euclidean, PCA start, Barnes-Hut), perplexity
    10 and 1000 iterations. Without features it runs on the precomputed ``distance``
    ``[N, N]``, started from classical MDS (``init="pca"``) or at random (``init="random"``,
    this project's earlier behaviour, seed-dependent). The perplexity is clamped to
    ``max(1, floor((N - 1) / 3))`` so that small models (few heads) still work.
    """
    distance = check_distance_matrix(distance)
    n = len(distance)
    perplexity = _tsne_perplexity(n, perplexity)
    if init not in TSNE_INITS:
        raise CAHPError(f"unknown t-SNE start {init!r}; choose one of {', '.join(TSNE_INITS)}")
    common = {"n_components": 2, "perplexity": perplexity, "max_iter": 1000, "random_state": seed}
    if features is not None:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) != n or not np.isfinite(features).all():
            raise CAHPError(
                f"head features must be finite with one row per head [{n}, F]; got shape "
                f"{features.shape}. Recompute the distances stage."
            )
        with one_openmp_thread():
            return TSNE(init=init, **common).fit_transform(features)  # [N, 2]
    start = "random"
    if init == "pca":  # scikit-learn refuses a PCA start on a precomputed matrix
        start = classical_mds(distance)
        start = start / np.std(start[:, 0]) * 1e-4  # scaled as scikit-learn scales PCA
    # a copy: scikit-learn's exact t-SNE squares a precomputed matrix in place (not Barnes-Hut,
    # but the caller's matrix must never depend on which method runs)
    tsne = TSNE(metric="precomputed", init=start, **common)
    with one_openmp_thread():
        return tsne.fit_transform(distance.copy())  # [N, 2]


def one_openmp_thread():
    """Run Barnes-Hut t-SNE's OpenMP loops on one thread. Its gradient sums in thread
    order, so the embedding (and every knee after it) would otherwise depend on the core
    count; and with torch's own OpenMP runtime in the same process, the threaded loop
    sometimes never finished on a busy 2-core machine. Tens of heads: one thread is enough."""
    return threadpool_limits(limits=1, user_api="openmp")


def umap_embedding(distance: np.ndarray, seed: int = 42) -> np.ndarray:
    """Seeded 2-D UMAP of the heads from their distance matrix ``[N, N]``: ``[N, 2]``.

    Few heads (tens), so few neighbours; random init as spectral init needs more points.
    """
    import umap  # slow to import: only when a page asks for it

    distance = check_distance_matrix(distance)  # [N, N]
    reducer = umap.UMAP(
        n_neighbors=min(10, len(distance) - 1),
        metric="precomputed",
        random_state=seed,
        init="random",
    )
    with warnings.catch_warnings():  # "no inverse_transform", "n_jobs overridden": expected
        warnings.simplefilter("ignore", UserWarning)
        return reducer.fit_transform(distance)  # [N, 2]


def _check_partition(labels: np.ndarray, medoids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=int)
    medoids = np.asarray(medoids, dtype=int)
    if len(medoids) < 2:
        raise CAHPError(f"a silhouette needs at least 2 clusters; got {len(medoids)}")
    if labels.min() < 0 or labels.max() >= len(medoids):
        raise CAHPError(f"labels must be cluster positions 0..{len(medoids) - 1} in medoids")
    return labels, medoids


def mean_simplified_silhouette(
    dissimilarity: np.ndarray, labels: np.ndarray, medoids: np.ndarray
) -> float:
    """The authors' MSS: mean over points with ``a > 0`` of ``(b - a) / max(a, b)``.

    ``labels[i]`` is the position in ``medoids`` of point i's cluster; ``a`` is the
    dissimilarity to its own medoid, ``b`` the *mean* dissimilarity to all other medoids.
    Points with ``a == 0`` (the medoids and their duplicates) are left out; 1 if every point
    has ``a == 0``.
    """
    labels, medoids = _check_partition(labels, medoids)
    rows = np.arange(len(labels))
    to_medoids = np.asarray(dissimilarity, dtype=np.float64)[:, medoids]  # [N, k]
    a = to_medoids[rows, labels]  # [N]
    b = (to_medoids.sum(axis=1) - a) / (len(medoids) - 1)  # [N] mean over the other medoids
    scored = a != 0
    if not scored.any():
        return 1.0
    a, b = a[scored], b[scored]
    return float(np.mean((b - a) / np.maximum(a, b)))


def simplified_silhouette(
    dissimilarity: np.ndarray, labels: np.ndarray, medoids: np.ndarray
) -> float:
    """Variant ``"simplified-silhouette"``: mean over *all* points of ``(b - a) / max(a, b)``
    with ``b`` the dissimilarity to the *nearest* other medoid (0 where ``a == b == 0``).

    Every medoid scores 1 here, so the curve rises with k mostly because medoids are added.
    """
    labels, medoids = _check_partition(labels, medoids)
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


QUALITY_FUNCTIONS = {
    "mss": mean_simplified_silhouette,
    "simplified-silhouette": simplified_silhouette,
}


def check_quality(name: str) -> str:
    """``name`` if it is a known quality curve, else a CAHPError listing them."""
    return check_choice("cluster quality", name, QUALITY_METHODS)


def cluster_quality(
    name: str, dissimilarity: np.ndarray, labels: np.ndarray, medoids: np.ndarray
) -> float:
    """The quality ``name`` (``mss`` or ``simplified-silhouette``) of one clustering."""
    return QUALITY_FUNCTIONS[check_quality(name)](dissimilarity, labels, medoids)


def pad_after_perfect(quality: np.ndarray) -> np.ndarray:
    """The authors' early stop: once the curve reaches 1, every later value is 1."""
    quality = np.asarray(quality, dtype=np.float64).copy()
    perfect = np.flatnonzero(np.isclose(quality, 1.0, rtol=0.0, atol=1e-12))
    if len(perfect):
        quality[perfect[0] :] = 1.0
    return quality


def quality_curve(name: str, values: Sequence[float]) -> np.ndarray:
    """The sweep's curve: MSS pads with 1 after its first 1; the variant is left as it is."""
    values = np.asarray(values, dtype=np.float64)
    return pad_after_perfect(values) if name == "mss" else values


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
    points: np.ndarray,
    ks: Sequence[int],
    seed: int = 42,
    *,
    precomputed: bool = False,
    quality: str = "mss",
) -> ClusteringResult:
    """FasterPAM k-medoids for every k in ``ks``.

    ``points`` ``[N, 2]`` (the t-SNE embedding; Euclidean distances are used), or an
    ``[N, N]`` dissimilarity matrix with ``precomputed=True``. Each medoid belongs to its own
    cluster; every other head goes to its nearest medoid (ties: first medoid). Every k is
    clustered (the selection may need any of them); with ``quality="mss"`` the curve is 1
    from the first k where it reaches 1 on, as the authors' sweep stops there.
    """
    check_quality(quality)
    points = np.asarray(points, dtype=np.float64)
    dissimilarity = check_distance_matrix(points) if precomputed else cdist(points, points)
    n = len(dissimilarity)
    ks = _check_ks(ks, n)
    labels, medoids, values = [], [], []
    for k in ks:
        result = kmedoids.fasterpam(dissimilarity, int(k), random_state=seed, n_cpu=1)
        found = np.asarray(result.medoids, dtype=int)  # [k]
        assignment = np.argmin(dissimilarity[:, found], axis=1)  # [N]
        assignment[found] = np.arange(len(found))  # a medoid is in its own cluster
        values.append(cluster_quality(quality, dissimilarity, assignment, found))
        canonical, ordered = canonical_clustering(assignment, found)
        labels.append(canonical)
        medoids.append(ordered)
    return ClusteringResult(
        "tsne-kmedoids",
        ks,
        np.asarray(labels, dtype=np.int64),
        medoids,
        quality_curve(quality, values),
        quality_name=quality,
        seed=int(seed),
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
    quality: str = "mss",
) -> ClusteringResult:
    """Graph-native alternative: Louvain on the kNN head graph over a resolution sweep.

    ``resolutions`` defaults to ``np.geomspace(0.05, 50, 60)``. The first partition found
    for each distinct number of communities ``k`` in ``[k_min, k_max]`` (default 2..N-1) is
    kept; medoid = the member with the smallest summed distance to the others; quality on
    ``distance``. Raises a CAHPError if fewer than 3 distinct k are found (too few points for
    a knee).
    """
    check_quality(quality)
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
    values = [
        cluster_quality(quality, distance, found[k], m) for k, m in zip(ks, medoids, strict=True)
    ]
    return ClusteringResult(
        "graph",
        np.asarray(ks, dtype=np.int64),
        np.asarray([found[k] for k in ks], dtype=np.int64),
        medoids,
        quality_curve(quality, values),
        quality_name=quality,
        seed=int(seed),
    )


def cluster_heads(
    distance: np.ndarray,
    method: str = "tsne-kmedoids",
    perplexity: float = 10.0,
    seed: int = 42,
    k_min: int = 2,
    k_max: int | None = None,
    n_neighbors: int = 5,
    *,
    quality: str = "mss",
    features: np.ndarray | None = None,
    tsne_init: str = "pca",
) -> ClusteringResult:
    """Cluster all heads for every k in ``[k_min, k_max]`` (default 2..N-1).

    ``tsne-kmedoids`` (paper): t-SNE of the head ``features`` (or of the distances when
    there are none), then FasterPAM for every k on the 2-D points, quality on those points.
    ``graph``: Louvain on the kNN head graph (k values are those Louvain finds), quality on
    ``distance``; the t-SNE embedding is computed too, for plots.
    """
    check_choice("clustering", method, CLUSTERING_METHODS)
    check_quality(quality)
    distance = check_distance_matrix(distance)
    n = len(distance)
    k_max = n - 1 if k_max is None else k_max
    if not (is_whole(k_min) and is_whole(k_max)) or not 2 <= k_min <= k_max <= n - 1:
        raise CAHPError(
            f"cluster counts must be whole numbers with 2 <= k_min <= k_max <= {n - 1} "
            f"(heads - 1); got k_min={k_min}, k_max={k_max}"
        )
    if not is_whole(n_neighbors) or n_neighbors < 1:
        raise CAHPError(f"graph neighbours must be a whole number >= 1; got {n_neighbors}")
    embedding = tsne_embedding(
        distance, perplexity, seed, features=features, init=tsne_init
    )  # [N, 2]
    if method == "tsne-kmedoids":
        result = kmedoids_sweep(embedding, range(k_min, k_max + 1), seed, quality=quality)
    else:
        result = louvain_sweep(
            distance, n_neighbors, seed=seed, k_min=k_min, k_max=k_max, quality=quality
        )
    return result.with_embedding(embedding)


def clustering_seeds(first: int, n_seeds: int) -> list[int]:
    """The seeds of a seed sweep: ``first, first + 1, ..., first + n_seeds - 1``."""
    if not is_whole(n_seeds) or n_seeds < 1:
        raise CAHPError(f"--seeds must be a whole number >= 1; got {n_seeds!r}. Try 5.")
    if not is_whole(first):
        raise CAHPError(f"seed must be a whole number; got {first!r}")
    return [int(first) + i for i in range(int(n_seeds))]


def cluster_heads_seeds(
    distance: np.ndarray,
    seeds: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> list[ClusteringResult]:
    """``cluster_heads`` once per seed (same options); ``progress(done, total)`` after each."""
    results = []
    for done, seed in enumerate(seeds, start=1):
        results.append(cluster_heads(distance, seed=int(seed), **options))
        if progress is not None:
            progress(done, len(seeds))
    return results


def clusterings_to_arrays(results: Sequence[ClusteringResult]) -> dict[str, np.ndarray]:
    """Plain arrays for ``clustering.npz``: every seed's result under ``s<i>_<name>``."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(CLUSTERING_FORMAT, dtype=np.int64),
        "seeds": np.asarray([r.seed for r in results], dtype=np.int64),
    }
    for i, result in enumerate(results):
        arrays.update({f"s{i}_{name}": v for name, v in result.to_arrays().items()})
    return arrays


def clusterings_from_arrays(
    arrays: dict[str, np.ndarray], where: str = ""
) -> list[ClusteringResult]:
    """Inverse of ``clusterings_to_arrays``; a CAHPError for the single-seed format of
    earlier versions (its curve is the old simplified silhouette) that says how to re-cluster."""
    if "format" not in arrays or int(_scalar(arrays["format"])) != CLUSTERING_FORMAT:
        raise earlier_version_error(where or "RUN")
    results = []
    for i in range(len(arrays["seeds"])):
        prefix = f"s{i}_"
        part = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        results.append(ClusteringResult.from_arrays(part))
    return results
