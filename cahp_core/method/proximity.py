"""Proximity-bias statistics: where in depth the kept heads sit, and whether a method keeps
heads closer to the output than random selections of the same size (a permutation test)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cahp_core.errors import CAHPError

N_DRAWS = 10_000  # random selections per test
TEST_SEED = 0  # the test's own seed (numpy.random.default_rng), fixed so a page reruns the same
ALPHA = 0.05  # the verdict's significance level (one-sided, per method, uncorrected)
# scipy 1.15 renamed permutation_test's ``random_state`` to ``rng``; pyproject allows >= 1.11
_RNG_KEYWORD = (
    "rng" if "rng" in inspect.signature(stats.permutation_test).parameters else ("random_state")
)


def layer_depths(n_layers: int) -> np.ndarray:
    """Normalised depth of every layer: 0 = first, 1 = last (a single layer is at 0). [L]"""
    return np.arange(n_layers) / max(n_layers - 1, 1)


def last_third_start(n_layers: int) -> int:
    """Index of the first layer of the "last third" (the last ``ceil(L / 3)`` layers)."""
    return n_layers - math.ceil(n_layers / 3)


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
    depth = layer_depths(n_layers)  # [L], 0 = first, 1 = last
    last_third = last_third_start(n_layers)
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


def format_p(p: float) -> str:
    """``p = 0.31`` / ``p = 0.047`` / ``p < 0.001``."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if p >= 0.1 else f"p = {p:.3f}"


@dataclass(frozen=True)
class ProximityTest:
    """One kept-head map against random selections of the same size.

    Mean depth: a permutation test (``scipy.stats.permutation_test``, exact when every
    selection fits in ``n_draws``). Last-third share: exact, the number of kept heads in the
    last third of a uniform random selection being hypergeometric. p-values are one-sided,
    for "closer to the output than random"; effects are in standard deviations of random.
    """

    method: str  # as named in the sentence ("gradient", "CAHP")
    heads_kept: int
    heads_total: int
    n_draws: int  # random selections drawn (all of them when ``exact_depth``)
    seed: int
    exact_depth: bool
    mean_depth: float
    random_depth_mean: float
    random_depth_sd: float
    random_depth_range: tuple[float, float]  # central 95 % of the random selections
    depth_effect: float  # (observed - random mean) / random sd
    p_depth: float  # P(random mean depth >= observed)
    last_third_share: float
    random_last_third_mean: float
    random_last_third_sd: float
    random_last_third_range: tuple[float, float]
    last_third_effect: float
    p_last_third: float  # P(random share >= observed), exact
    alpha: float = ALPHA

    @property
    def closer_to_output(self) -> bool:
        """The verdict: mean depth significantly above random's at ``alpha``."""
        return self.p_depth < self.alpha

    @property
    def sentence(self) -> str:
        """The verdict in one plain sentence, with its numbers."""
        verb = "keeps" if self.closer_to_output else "does not keep"
        nearer_input = self.mean_depth < self.random_depth_range[0]
        return (
            f"On this run, {self.method} pruning ({self.heads_kept} of {self.heads_total} heads) "
            f"{verb} heads closer to the output than random selections of the same size "
            f"(mean depth {self.mean_depth:.2f} vs {self.random_depth_mean:.2f} "
            f"± {self.random_depth_sd:.2f}, {self.depth_effect:+.1f} sd, {format_p(self.p_depth)}"
            + ("; nearer the input than 97.5 % of them" if nearer_input else "")
            + f"; share in the last third {self.last_third_share:.2f} vs "
            f"{self.random_last_third_mean:.2f}, {format_p(self.p_last_third)})."
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["random_depth_range"] = list(self.random_depth_range)
        d["random_last_third_range"] = list(self.random_last_third_range)
        d["closer_to_output"] = self.closer_to_output
        d["sentence"] = self.sentence
        return d


def _kept_map(keep: np.ndarray) -> np.ndarray:
    """``keep`` as a bool [L, H] map, or a CAHPError naming what is wrong."""
    array = np.asarray(keep)
    if array.dtype != bool and not (
        np.issubdtype(array.dtype, np.number) and np.isin(array, (0, 1)).all()
    ):
        raise CAHPError("a kept-head map must hold True/False (or 0/1) per head")
    keep = array.astype(bool)
    depth_stats(keep)  # shape and "keeps no head" checks
    if keep.shape[0] < 2:
        raise CAHPError("the proximity test needs a model with at least 2 layers")
    if keep.all():
        raise CAHPError("the map keeps every head: every random selection is the same map")
    return keep


def _check_settings(n_draws: int, seed: int, alpha: float) -> None:
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 100:
        raise CAHPError(f"the proximity test needs at least 100 random draws; got {n_draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise CAHPError(f"the test's seed must be a whole number >= 0; got {seed!r}")
    if not 0 < alpha < 1:
        raise CAHPError(f"the significance level must lie between 0 and 1; got {alpha!r}")


def _mean(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean depth of the first sample (the kept heads); ``y`` (the pruned heads) unused."""
    return np.mean(x, axis=axis)


def _depth_null(
    depth: np.ndarray, keep: np.ndarray, n_draws: int, seed: int
) -> tuple[np.ndarray, float]:
    """Mean depths of random selections of as many heads ([draws]) and the one-sided p-value
    of the kept heads' mean depth. ``depth``, ``keep``: [L, H]."""
    kept, pruned = depth[keep], depth[~keep]  # [n], [N - n]
    if min(kept.size, pruned.size) == 1:
        # scipy refuses a one-observation sample; a single kept (or pruned) head has only N
        # selections, so enumerate them: exact, and the same p-value scipy's exact test gives
        every = depth.ravel()  # [N]
        null = every if kept.size == 1 else (every.sum() - every) / (every.size - 1)
        observed = kept.mean()
        return null, float(np.mean(null >= observed - 1e-12 * max(abs(observed), 1.0)))
    # Relabel which heads are kept: scipy's independent-samples permutation test (exact when
    # every selection fits in n_draws); its p-value counts the observed selection,
    # (hits + 1) / (draws + 1)
    result = stats.permutation_test(
        (kept, pruned),
        _mean,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_draws,
        alternative="greater",
        **{_RNG_KEYWORD: np.random.default_rng(seed)},
    )
    return np.asarray(result.null_distribution, dtype=float), float(result.pvalue)


def proximity_test(
    keep: np.ndarray,
    method: str = "this",
    *,
    n_draws: int = N_DRAWS,
    seed: int = TEST_SEED,
    alpha: float = ALPHA,
) -> ProximityTest:
    """Is ``keep`` (bool [L, H]) closer to the output than uniform random selections of as
    many heads? ``method`` names it in the sentence."""
    keep = _kept_map(keep)
    _check_settings(n_draws, seed, alpha)
    n_layers, n_heads = keep.shape
    depth = np.repeat(layer_depths(n_layers), n_heads).reshape(keep.shape)  # [L, H]
    observed = depth_stats(keep)
    n_keep, n_total = observed["heads_kept"], keep.size
    null, p_depth = _depth_null(depth, keep, int(n_draws), int(seed))  # [draws], float
    low, high = np.percentile(null, [2.5, 97.5])
    # Last-third share: kept heads in the last third ~ hypergeometric(N, last-third heads, n)
    in_last = (n_layers - last_third_start(n_layers)) * n_heads
    count = stats.hypergeom(n_total, in_last, n_keep)
    hits = int(keep[last_third_start(n_layers) :].sum())
    share_sd = float(count.std()) / n_keep
    share_mean = float(count.mean()) / n_keep
    return ProximityTest(
        method=str(method),
        heads_kept=n_keep,
        heads_total=n_total,
        n_draws=int(null.size),
        seed=int(seed),
        exact_depth=null.size == math.comb(n_total, n_keep),  # every selection
        mean_depth=observed["mean_depth"],
        random_depth_mean=float(null.mean()),
        random_depth_sd=float(null.std()),
        random_depth_range=(float(low), float(high)),
        depth_effect=float((observed["mean_depth"] - null.mean()) / null.std()),
        p_depth=p_depth,
        last_third_share=observed["last_third_share"],
        random_last_third_mean=share_mean,
        random_last_third_sd=share_sd,
        random_last_third_range=(
            float(count.ppf(0.025)) / n_keep,
            float(count.ppf(0.975)) / n_keep,
        ),
        last_third_effect=(observed["last_third_share"] - share_mean) / share_sd,
        p_last_third=float(count.sf(hits - 1)),
        alpha=float(alpha),
    )


def proximity_tests(
    maps: Mapping[str, np.ndarray],
    names: Mapping[str, str] | None = None,
    *,
    n_draws: int = N_DRAWS,
    seed: int = TEST_SEED,
    alpha: float = ALPHA,
) -> dict[str, ProximityTest]:
    """``proximity_test`` of every map ({method: bool [L, H]}); the maps must keep the same
    number of heads (a comparison at one budget). ``names``: each method in the sentence."""
    if not maps:
        raise CAHPError("no kept-head maps to test")
    counts = {method: int(_kept_map(keep).sum()) for method, keep in maps.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{m} {n}" for m, n in counts.items())
        raise CAHPError(
            f"the maps keep different numbers of heads ({listed}); compare them at one budget"
        )
    names = names or {}
    return {
        method: proximity_test(
            keep, names.get(method, method), n_draws=n_draws, seed=seed, alpha=alpha
        )
        for method, keep in maps.items()
    }


def proximity_table(tests: Mapping[str, ProximityTest]) -> pd.DataFrame:
    """One row per test: observed vs random (mean ± sd, 95 % range), effect and p-value."""
    return pd.DataFrame(
        [
            {
                "method": method,
                "mean depth": t.mean_depth,
                "random mean depth": f"{t.random_depth_mean:.2f} ± {t.random_depth_sd:.2f}",
                "random 95 % range": "{:.2f}–{:.2f}".format(*t.random_depth_range),
                "effect (sd)": t.depth_effect,
                "p (depth)": t.p_depth,
                "share in last third": t.last_third_share,
                "random share": f"{t.random_last_third_mean:.2f} ± {t.random_last_third_sd:.2f}",
                "effect, share (sd)": t.last_third_effect,
                "p (share, exact)": t.p_last_third,
                "closer to the output": "yes" if t.closer_to_output else "no",
            }
            for method, t in tests.items()
        ]
    )


def common_curve_count(
    task_curve: Iterable[Mapping], methods: Iterable[str], heads: int
) -> int | None:
    """The head count measured for every one of ``methods`` (those in ``task_curve`` at all)
    nearest to ``heads`` (ties: the smaller), or None when they share no count."""
    measured: dict[str, set[int]] = {}
    for record in task_curve:
        measured.setdefault(record["method"], set()).add(int(record["heads_kept"]))
    sets = [measured[m] for m in methods if m in measured]
    shared = set.intersection(*sets) if sets else set()
    return min(shared, key=lambda n: (abs(n - heads), n)) if shared else None
