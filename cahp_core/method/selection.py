"""Complementary head selection and the scikit-learn-style ``CAHPSelector``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from cahp_core.choices import (
    CLUSTERING_METHODS,
    DISTANCE_METHODS,
    KNEE_CURVES,
    SELECTION_RULES,
    check_choice,
    is_whole,
)
from cahp_core.errors import CAHPError
from cahp_core.method.clustering import (
    ClusteringResult,
    check_quality,
    cluster_heads_seeds,
    clustering_seeds,
)
from cahp_core.method.distances import HeadDistances, head_distances
from cahp_core.method.knee import KneeResult, check_degree, check_shape, find_knee
from cahp_core.method.signatures import HeadSignatures


class SelectorNotFittedError(CAHPError, NotFittedError):
    """A ``CAHPSelector`` used before ``fit``: scikit-learn's ``NotFittedError`` and a
    ``CAHPError`` (the CLI and the dashboard print it on one line)."""


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


def check_rule(name: str) -> str:
    return check_choice("selection rule", name, SELECTION_RULES)


def layer_normalised(salience: np.ndarray) -> np.ndarray:
    """Salience divided by its layer's L2 norm, as Michel et al. (2019) rank heads (the
    ``gradient`` baseline's ranking). ``[layers, heads]``; an all-zero layer stays zero."""
    from cahp_core.method.baselines import NORM_EPS

    salience = np.asarray(salience, dtype=np.float64)
    return salience / (np.linalg.norm(salience, axis=1, keepdims=True) + NORM_EPS)


def fill_empty_layers(keep: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Give every layer without a kept head its best-scoring head, in place of the
    worst-scoring kept head of a layer that keeps more than one (the count is unchanged).
    ``keep`` bool, ``score`` float, both ``[layers, heads]``."""
    keep = keep.copy()
    for layer in np.flatnonzero(~keep.any(axis=1)):
        donors = keep & (keep.sum(axis=1, keepdims=True) > 1)  # [L, H]
        if not donors.any():
            raise CAHPError("a head budget below the number of layers cannot keep one per layer")
        worst = np.unravel_index(np.argmin(np.where(donors, score, np.inf)), keep.shape)
        keep[worst] = False
        keep[layer, int(np.argmax(score[layer]))] = True
    return keep


def _check_rule_inputs(salience: np.ndarray, distance: np.ndarray, n_keep: int) -> None:
    n_layers, n_heads = salience.shape
    total = n_layers * n_heads
    if distance.shape != (total, total):
        raise CAHPError(
            f"distance has shape {distance.shape}; expected ({total}, {total}), one row per head"
        )
    whole = isinstance(n_keep, int | np.integer) and not isinstance(n_keep, bool)
    if not whole or not n_layers <= n_keep <= total:
        raise CAHPError(
            f"head budget must be between {n_layers} (one per layer) and {total}; got {n_keep!r}"
        )


def radius_threshold(distance: np.ndarray, quantile: float) -> float:
    """The distance below which two heads count as redundant: the ``quantile`` of all
    pairwise (off-diagonal) head distances; 0 makes no pair redundant."""
    if not 0 <= quantile < 1:
        raise CAHPError(f"radius quantile must be in [0, 1); got {quantile!r}")
    if quantile == 0:
        return 0.0
    pairs = distance[np.triu_indices(len(distance), k=1)]  # [N (N - 1) / 2]
    return float(np.quantile(pairs, quantile))


def salience_radius_selection(
    salience: np.ndarray, distance: np.ndarray, n_keep: int, radius_quantile: float
) -> np.ndarray:
    """Salience-led selection that skips redundant heads.

    Heads are taken from most to least salient (layer-normalised, as the ``gradient``
    baseline ranks them); a head is skipped while it lies closer than the radius (the
    ``radius_quantile`` of pairwise head distances) to a head already kept. If fewer than
    ``n_keep`` heads survive, the most salient skipped heads fill the budget; then every
    empty layer gets its best head back (``fill_empty_layers``). Radius 0 is the gradient
    ranking with one head per layer. ``salience`` ``[layers, heads]``, ``distance``
    ``[N, N]``; returns bool ``[layers, heads]`` with exactly ``n_keep`` heads.
    """
    salience = np.asarray(salience, dtype=np.float64)
    distance = np.asarray(distance, dtype=np.float64)
    _check_rule_inputs(salience, distance, n_keep)
    score = layer_normalised(salience)  # [L, H]
    flat = score.reshape(-1)  # [N]
    order = np.lexsort((np.arange(flat.size), -flat))  # most salient first, ties: lowest index
    radius = radius_threshold(distance, radius_quantile)
    kept: list[int] = []
    skipped: list[int] = []
    for head in order:
        if len(kept) == n_keep:
            break
        redundant = bool(kept) and float(distance[head, kept].min()) < radius
        (skipped if redundant else kept).append(int(head))
    kept += skipped[: n_keep - len(kept)]
    keep = np.zeros(flat.size, dtype=bool)
    keep[kept] = True
    return fill_empty_layers(keep.reshape(score.shape), score)


def mmr_selection(
    salience: np.ndarray, distance: np.ndarray, n_keep: int, mmr_lambda: float
) -> np.ndarray:
    """Maximal marginal relevance: a diversity-salience trade-off.

    Greedily keeps the head maximising ``lambda * s(h) - (1 - lambda) * max_j sim(h, j)``
    over the heads ``j`` already kept, where ``s`` is the layer-normalised salience scaled
    to a maximum of 1 and ``sim = 1 - distance / max distance``. Lambda 1 is the gradient
    ranking; lambda 0 picks the most spread-out heads. Ties go to the lowest flat index;
    then every empty layer gets its best head back. Returns bool ``[layers, heads]`` with
    exactly ``n_keep`` heads.
    """
    if isinstance(mmr_lambda, bool) or not 0 <= mmr_lambda <= 1:
        raise CAHPError(f"mmr_lambda must be in [0, 1]; got {mmr_lambda!r}")
    salience = np.asarray(salience, dtype=np.float64)
    distance = np.asarray(distance, dtype=np.float64)
    _check_rule_inputs(salience, distance, n_keep)
    score = layer_normalised(salience)  # [L, H]
    relevance = score.reshape(-1) / max(float(score.max()), 1e-300)  # [N] in [0, 1]
    scale = float(distance.max())
    similarity = 1.0 - distance / scale if scale > 0 else np.ones_like(distance)  # [N, N]
    nearest = np.full(relevance.size, -np.inf)  # [N] max similarity to a kept head
    keep = np.zeros(relevance.size, dtype=bool)
    for _ in range(n_keep):
        penalty = np.where(np.isfinite(nearest), nearest, 0.0)
        gain = np.where(keep, -np.inf, mmr_lambda * relevance - (1 - mmr_lambda) * penalty)
        head = int(np.argmax(gain))  # first of ties: the lowest flat index
        keep[head] = True
        nearest = np.maximum(nearest, similarity[head])
    return fill_empty_layers(keep.reshape(score.shape), score)


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_knee_curve(name: str) -> str:
    return check_choice("knee curve", name, KNEE_CURVES)


def _check_number(name: str, low: float, high: float, *, closed_high: bool = False):
    """A check that a parameter is a real number in ``[low, high)`` (``]`` if closed)."""
    bracket = "]" if closed_high else ")"

    def check(value: object) -> None:
        number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not (number and low <= value and (value <= high if closed_high else value < high)):
            raise CAHPError(f"{name} must be in [{low:g}, {high:g}{bracket}; got {value!r}")

    return check


def _check_perplexity(value: object) -> None:
    if isinstance(value, bool) or not (isinstance(value, int | float | np.number) and value > 0):
        raise CAHPError(f"perplexity must be a number > 0; got {value!r}")


def _check_neighbors(value: object) -> None:
    if not is_whole(value) or value < 1:
        raise CAHPError(f"n_neighbors must be a whole number >= 1; got {value!r}")


def _check_seed(value: object) -> None:
    clustering_seeds(value, 1)


def _check_n_seeds(value: object) -> None:
    clustering_seeds(0, value)


def _checked_later(value: object) -> None:
    """k_min and k_max: checked by the clustering, which knows the number of heads."""


KNEE_PARAMS = ("degree", "knee_curve", "knee_shape")
RULE_PARAMS = ("rule", "radius_quantile", "mmr_lambda")  # which heads, given how many


def performance_points(task_curve: Sequence[dict], method: str = "cahp") -> np.ndarray:
    """The measured performance curve ``[P, 2]``: (k, masked accuracy) of ``method``'s
    selections, sorted by k (the full model's point, k None, is left out)."""
    points = sorted(
        (int(r["k"]), float(r["accuracy"]))
        for r in task_curve
        if r.get("method") == method and r.get("k") is not None
    )
    return np.asarray(points, dtype=float).reshape(-1, 2)


def consensus_index(supports: np.ndarray) -> int:
    """The seed whose kept map is closest to all the others: the smallest summed Hamming
    distance to the other maps (ties: the first seed). ``supports``: bool ``[S, L, H]``."""
    flat = np.asarray(supports, dtype=bool).reshape(len(supports), -1)  # [S, N]
    distance = (flat[:, None, :] != flat[None, :, :]).sum(axis=(1, 2))  # [S]
    return int(np.argmin(distance))


def spread(values: Sequence[int]) -> dict:
    """min, median, max and the largest relative distance from the median."""
    values = np.asarray(values, dtype=float)
    median = float(np.median(values))
    rel = float(np.max(np.abs(values - median)) / median) if median > 0 else 0.0
    return {
        "min": int(values.min()),
        "median": median,
        "max": int(values.max()),
        "max_rel_from_median": rel,
    }


class CAHPSelector(BaseEstimator):
    """Select a complementary set of attention heads, like a scikit-learn feature selector.

    Parameters are stored as given. ``fit`` computes distances, clusters the heads for every
    k with each of ``n_seeds`` seeds (``seed, seed + 1, ...``), finds the knee of a polynomial
    of ``degree`` fitted to each seed's cluster-quality curve (``knee_curve="quality"``, the
    paper) or to the measured masked-accuracy curve (``"performance"``, needs
    ``performance=``), keeps the most salient head of each cluster at the knee (at least one
    head per layer) for every seed, and uses the consensus seed's selection: the one whose
    kept map is closest to all the others. Refitting with another ``degree``, ``knee_curve``
    or ``knee_shape`` reuses the distances and the clusterings.

    Fitted attributes: ``distances_``, ``clusterings_`` (one per seed), ``seeds_``,
    ``consensus_seed_``, ``clustering_`` (the consensus seed's), ``curve_`` ([K, 2]: k,
    quality of the consensus seed), ``knee_``, ``knee_result_`` (the knee used),
    ``quality_knee_result_`` (the consensus seed's), ``quality_knee_by_seed_`` ({seed:
    KneeResult}), ``performance_knee_result_`` (None without a performance curve), ``knee_by_seed_``, ``heads_by_seed_``, ``support_by_seed_`` (bool [S, L, H]),
    ``knee_spread_``, ``labels_`` (cluster of every head at the knee), ``support_`` (bool
    [layers, heads]), ``kept_per_layer_``, ``n_heads_kept_``, ``salience_``,
    ``head_distance_`` ([N, N] or None).

    ``rule`` says which heads to keep once the knee says how many: ``"complementary"`` (the
    paper, default), ``"salience-radius"`` (``radius_quantile``) or ``"mmr"``
    (``mmr_lambda``); the two variants keep as many heads as the paper's rule at the same
    knee and need the head distances (``fit`` has them; ``fit_from_clustering(...,
    distance=)``). See docs/selection.md.
    """

    # every constructor parameter and its check, declared once (scikit-learn's convention;
    # sklearn's own Interval/StrOptions live in a private module, so these are plain checks
    # raising the project's one-line CAHPError)
    _parameter_constraints: dict = {  # noqa: RUF012 (a class-level declaration, as sklearn's)
        "degree": check_degree,
        "knee_curve": check_knee_curve,
        "knee_shape": check_shape,
        "rule": check_rule,
        "radius_quantile": _check_number("radius_quantile", 0, 1),
        "mmr_lambda": _check_number("mmr_lambda", 0, 1, closed_high=True),
        "clustering": lambda v: check_choice("clustering", v, CLUSTERING_METHODS),
        "distance": lambda v: check_choice("distance", v, DISTANCE_METHODS),
        "quality": check_quality,
        "perplexity": _check_perplexity,
        "seed": _check_seed,
        "n_seeds": _check_n_seeds,
        "k_min": _checked_later,
        "k_max": _checked_later,
        "n_neighbors": _check_neighbors,
    }

    def __init__(
        self,
        degree: int = 6,
        clustering: str = "tsne-kmedoids",
        distance: str = "jm",
        quality: str = "mss",
        perplexity: float = 10.0,
        seed: int = 42,
        n_seeds: int = 5,
        knee_curve: str = "quality",
        knee_shape: str = "concave",
        k_min: int = 2,
        k_max: int | None = None,
        n_neighbors: int = 5,
        rule: str = "complementary",
        radius_quantile: float = 0.1,
        mmr_lambda: float = 0.3,
    ):
        self.degree = degree
        self.clustering = clustering
        self.distance = distance
        self.quality = quality
        self.perplexity = perplexity
        self.seed = seed
        self.n_seeds = n_seeds
        self.knee_curve = knee_curve
        self.knee_shape = knee_shape
        self.k_min = k_min
        self.k_max = k_max
        self.n_neighbors = n_neighbors
        self.rule = rule
        self.radius_quantile = radius_quantile
        self.mmr_lambda = mmr_lambda

    # -- scikit-learn protocol (get_params, clone and repr come from BaseEstimator)
    def set_params(self, **params) -> CAHPSelector:
        """Set constructor parameters; refit to apply them."""
        valid = self.get_params()
        for name in params:
            if name not in valid:
                raise CAHPError(f"unknown parameter {name!r}; valid: {', '.join(valid)}")
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "clustering_")

    def _check(self, names: Sequence[str]) -> None:
        for name in names:
            self._parameter_constraints[name](getattr(self, name))

    def _validate_knee_params(self) -> None:
        """The checks of the parameters that only change the knee and the selection."""
        self._check((*KNEE_PARAMS, *RULE_PARAMS))

    def _validate_params(self) -> None:
        """Cheap checks before any computation (ranges that need the data come later)."""
        self._check(tuple(self._parameter_constraints))

    @classmethod
    def _upstream_params(cls) -> tuple[str, ...]:
        """The parameters the distances and clusterings depend on (their cache key)."""
        return tuple(p for p in cls._parameter_constraints if p not in (*KNEE_PARAMS, *RULE_PARAMS))

    # -- fitting
    def fit(
        self,
        signatures: HeadSignatures,
        salience: np.ndarray,
        performance: np.ndarray | None = None,
    ) -> CAHPSelector:
        """Distances -> clustering for every k and seed -> knee -> selection -> consensus.

        ``performance`` ``[P, 2]`` (k, masked accuracy; see ``performance_points``) is needed
        for ``knee_curve="performance"``. Distances and clusterings are cached on the
        upstream parameters and a hash of the signatures, so refitting after
        ``set_params(degree=...)`` only redoes the knee.
        """
        self._validate_params()
        salience = np.asarray(salience, dtype=np.float64)
        shape = (signatures.n_layers, signatures.n_heads)
        if salience.shape != shape:
            raise CAHPError(
                f"salience has shape {salience.shape}; expected {shape} [layers, heads]"
            )
        key = (
            tuple(getattr(self, p) for p in self._upstream_params()),
            _fingerprint(signatures.mean, signatures.var, signatures.count),
        )
        cache = getattr(self, "_upstream_cache", None)
        if cache is None or cache[0] != key:
            distances = head_distances(signatures, self.distance)
            clusterings = cluster_heads_seeds(
                distances.distance,
                clustering_seeds(self.seed, self.n_seeds),
                method=self.clustering,
                perplexity=self.perplexity,
                k_min=self.k_min,
                k_max=self.k_max,
                n_neighbors=self.n_neighbors,
                quality=self.quality,
                features=distances.features if self.distance == "jm" else None,
            )
            self._upstream_cache = (key, distances, clusterings)
        _, distances, clusterings = self._upstream_cache
        self.fit_from_clustering(
            clusterings, salience, *shape, performance=performance, distance=distances.distance
        )
        self.distances_: HeadDistances | None = distances
        return self

    def fit_from_clustering(
        self,
        clusterings: ClusteringResult | Sequence[ClusteringResult],
        salience: np.ndarray,
        n_layers: int,
        n_heads: int,
        performance: np.ndarray | None = None,
        distance: np.ndarray | None = None,
    ) -> CAHPSelector:
        """Fit from cached clusterings (one per seed): only knees and selections are computed.

        ``distance`` ``[N, N]`` (the run's head distances) is needed by the ``salience-radius``
        and ``mmr`` rules. ``distances_`` is None after this call (``fit`` sets it).
        """
        self._validate_knee_params()
        if isinstance(clusterings, ClusteringResult):
            clusterings = [clusterings]
        clusterings = list(clusterings)
        if not clusterings:
            raise CAHPError("no clustering to select from; recompute the clustering stage")
        salience = np.asarray(salience, dtype=np.float64)
        if salience.shape != (n_layers, n_heads):
            raise CAHPError(
                f"salience has shape {salience.shape}; expected ({n_layers}, {n_heads})"
            )
        for clustering in clusterings:
            if clustering.labels.ndim != 2 or clustering.labels.shape[1] != n_layers * n_heads:
                raise CAHPError(
                    f"the clustering has labels for {clustering.labels.shape[-1]} heads but the "
                    f"model has {n_layers * n_heads}; recompute the clustering stage"
                )
        if self.rule != "complementary" and distance is None:
            raise CAHPError(
                f"the {self.rule!r} rule needs the head distance matrix; pass distance= "
                "(the run's distances.npz) or use rule='complementary'"
            )
        self.head_distance_ = distance  # [N, N] or None; the rules check its shape
        self.distances_ = None
        self.clusterings_ = clusterings
        self.seeds_ = [int(c.seed) for c in clusterings]
        self.salience_ = salience  # [L, H]
        self.shape_ = (n_layers, n_heads)
        quality_knees = [
            find_knee(c.ks, c.quality, self.degree, self.knee_shape) for c in clusterings
        ]
        self.quality_knee_by_seed_ = dict(zip(self.seeds_, quality_knees, strict=True))
        self.performance_knee_result_: KneeResult | None = None
        if performance is not None and len(performance):
            performance = np.asarray(performance, dtype=float)  # [P, 2]
            # reported beside the quality knee where the degree fits its P points; required
            # (with the degree error) only when it is the knee used
            if self.knee_curve == "performance" or self.degree < len(performance):
                self.performance_knee_result_ = find_knee(
                    performance[:, 0], performance[:, 1], self.degree, self.knee_shape
                )
        if self.knee_curve == "performance" and self.performance_knee_result_ is None:
            raise CAHPError(
                "the performance knee needs the run's measured accuracy curve (task_curve.json); "
                "finish the task_curve stage with `cahp run` or use --knee-curve quality"
            )
        if self.knee_curve == "performance":  # one measured curve: the same k (or the
            # nearest clustered k, for Louvain's uneven k grid) for every seed
            k = self.performance_knee_result_.knee
            knees = [int(c.ks[np.argmin(np.abs(c.ks - k))]) for c in clusterings]
        else:
            knees = [result.knee for result in quality_knees]
        paper = np.stack(
            [self._paper_in(c, k) for c, k in zip(clusterings, knees, strict=True)]
        )  # [S, L, H]
        # the consensus seed is chosen on the paper's selections, so a rule changes which
        # heads are kept, never the knee or the head count
        chosen = consensus_index(paper)
        supports = np.stack([self._apply_rule(m) for m in paper])  # [S, L, H]
        self.support_by_seed_ = supports
        self.knee_by_seed_ = {s: int(k) for s, k in zip(self.seeds_, knees, strict=True)}
        self.heads_by_seed_ = {s: int(m.sum()) for s, m in zip(self.seeds_, supports, strict=True)}
        self.knee_spread_ = {
            "knee": spread(knees),
            "heads": spread(list(self.heads_by_seed_.values())),
        }
        self.consensus_seed_ = self.seeds_[chosen]
        self.clustering_ = clusterings[chosen]
        self.quality_knee_result_ = quality_knees[chosen]
        self.knee_result_: KneeResult = (
            self.performance_knee_result_
            if self.knee_curve == "performance"
            else self.quality_knee_result_
        )
        self.curve_ = np.column_stack([self.clustering_.ks, self.clustering_.quality]).astype(
            float
        )  # [K, 2]
        self.knee_ = int(knees[chosen])
        self.labels_ = self.clustering_.labels_for(self.knee_)  # [N]
        self.support_ = supports[chosen]  # [L, H]
        self.kept_per_layer_ = self.support_.sum(axis=1).astype(int)  # [L]
        self.n_heads_kept_ = int(self.support_.sum())
        return self

    def _paper_in(self, clustering: ClusteringResult, k: int) -> np.ndarray:
        """The paper's complementary selection with ``k`` clusters of ``clustering``."""
        if not is_whole(k):
            raise CAHPError(f"k must be a whole number in {clustering.valid_ks()}; got {k!r}")
        labels = clustering.labels_for(int(k))
        return complementary_selection(labels, self.salience_, *self.shape_)

    def _apply_rule(self, paper: np.ndarray) -> np.ndarray:
        """The rule's selection of as many heads as the paper's map ``paper`` keeps: the
        knee says how many, the rule says which."""
        return paper if self.rule == "complementary" else self._select_n(int(paper.sum()))

    def _select_in(self, clustering: ClusteringResult, k: int) -> np.ndarray:
        return self._apply_rule(self._paper_in(clustering, k))

    def _select_n(self, n_heads: int) -> np.ndarray:
        """Exactly ``n_heads`` heads by a non-complementary rule."""
        if self.rule == "salience-radius":
            return salience_radius_selection(
                self.salience_, self.head_distance_, n_heads, self.radius_quantile
            )
        return mmr_selection(self.salience_, self.head_distance_, n_heads, self.mmr_lambda)

    # -- using a fitted selector
    def _check_fitted(self) -> None:
        if not hasattr(self, "clustering_"):
            raise SelectorNotFittedError("this CAHPSelector is not fitted yet; call fit(...) first")

    def select(self, k: int) -> np.ndarray:
        """The complementary selection with ``k`` clusters (consensus seed's clustering):
        bool ``[layers, heads]``."""
        self._check_fitted()
        return self._select_in(self.clustering_, k)

    def select_budget(self, n_heads: int) -> np.ndarray:
        """The selection keeping the most heads without exceeding ``n_heads`` (exactly
        ``n_heads`` for the ``salience-radius`` and ``mmr`` rules).

        Raises a CAHPError if the budget is outside ``[layers, all heads]`` or if even the
        smallest selection keeps more heads (the message names the smallest possible).
        """
        self._check_fitted()
        n_layers, per_layer = self.shape_
        total = n_layers * per_layer
        if not is_whole(n_heads) or not n_layers <= n_heads <= total:
            raise CAHPError(
                f"head budget must be between {n_layers} (one per layer) and {total}; got {n_heads}"
            )
        if self.rule != "complementary":
            return self._select_n(int(n_heads))
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
