"""Does CAHP's premise hold for this model? Two checks of the head signatures.

- **Split-half agreement**: the training examples are split in two seeded halves; each half's
  signatures give its own distances and clustering (same method, seed and k). The adjusted
  Rand index between the two halves' clusters says how much of the clustering is the
  model's behaviour rather than the sample (1: the same partition; 0: chance).
- **Class signal**: the JM distances are recomputed with the class labels shuffled. JM
  compares each head's attention across classes; if the shuffled-label distances rank the
  head pairs like the true ones (Spearman correlation near 1), the distances describe
  something other than class-specific behaviour.

Both come from one extra signature pass (``compute_signature_sets``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

from cahp_core.errors import CAHPError
from cahp_core.method.clustering import cluster_heads
from cahp_core.method.distances import head_distances
from cahp_core.method.signatures import HeadSignatures

# thresholds of the verdict shown to users (see docs/selection.md)
LOW_AGREEMENT = 0.5  # split-half ARI below this: the clusters are weakly reproducible
HIGH_SHUFFLED_CORRELATION = 0.9  # above this: JM distances barely depend on the labels


def diagnostic_classes(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Class assignments of the diagnostic signature sets, one entry per example (-1: not in
    the set): ``half_a`` and ``half_b`` (a seeded split in two, each with its true labels)
    and ``shuffled`` (every example, labels permuted with the same seed)."""
    labels = np.asarray(labels, dtype=np.int64)  # [examples]
    if len(labels) < 4:
        raise CAHPError(
            f"the diagnostics need at least 4 training examples; got {len(labels)}. "
            "Pass a larger --max-train"
        )
    rng = np.random.default_rng(seed)
    in_a = np.zeros(len(labels), dtype=bool)
    in_a[rng.permutation(len(labels))[: len(labels) // 2]] = True
    return {
        "half_a": np.where(in_a, labels, -1),
        "half_b": np.where(in_a, -1, labels),
        "shuffled": rng.permutation(labels),
    }


def check_ks(ks: Sequence[int], n_heads: int) -> list[int]:
    """The cluster counts to compare at: whole, within ``[2, n_heads - 1]``, sorted, unique."""
    valid = sorted({int(k) for k in ks if 2 <= int(k) <= n_heads - 1})
    if not valid:
        raise CAHPError(f"no cluster count in [2, {n_heads - 1}] to compare the halves at")
    return valid


def split_half_agreement(
    half_a: HeadSignatures,
    half_b: HeadSignatures,
    distance: str,
    ks: Sequence[int],
    seeds: Sequence[int],
    perplexity: float = 10.0,
) -> dict[int, list[float]]:
    """Adjusted Rand index between the two halves' clusterings (t-SNE + k-medoids, the
    paper's method) at every k in ``ks``, for every seed: ``{k: [ARI per seed]}``."""
    sides = [head_distances(half, distance) for half in (half_a, half_b)]
    n = len(sides[0].distance)
    out: dict[int, list[float]] = {k: [] for k in check_ks(ks, n)}
    for seed in seeds:  # one t-SNE per half and seed; k-medoids for every k in between
        clusterings = [
            cluster_heads(
                side.distance,
                perplexity=perplexity,
                seed=seed,
                k_min=min(out),
                k_max=max(out),
                features=side.features if distance == "jm" else None,
            )
            for side in sides
        ]
        for k in out:
            a, b = (c.labels_for(k) for c in clusterings)
            out[k].append(float(adjusted_rand_score(a, b)))
    return out


def shuffled_label_correlation(true: HeadSignatures, shuffled: HeadSignatures) -> float:
    """Spearman correlation between the JM distances of all head pairs with the true labels
    and with shuffled labels (near 1: the distances do not depend on the classes)."""
    if true.n_classes < 2:
        raise CAHPError("the class-signal check needs at least 2 classes")
    pairs = np.triu_indices(true.n_layers * true.n_heads, k=1)
    d_true = head_distances(true, "jm").distance[pairs]  # [pairs]
    d_shuffled = head_distances(shuffled, "jm").distance[pairs]
    return float(spearmanr(d_true, d_shuffled).statistic)


@dataclass(frozen=True)
class Diagnostics:
    """The two checks of one run, with the verdict shown to users."""

    ks: list[int]
    seeds: list[int]
    agreement: dict[str, dict[int, list[float]]]  # distance -> k -> ARI per seed
    shuffled_correlation: float
    examples: int

    def mean_agreement(self, distance: str) -> float:
        return float(
            np.mean([v for per_seed in self.agreement[distance].values() for v in per_seed])
        )

    def warnings(self) -> list[str]:
        """Plain sentences for each check that fails (empty: the premise holds here)."""
        out = []
        jm = self.mean_agreement("jm") if "jm" in self.agreement else None
        if jm is not None and jm < LOW_AGREEMENT:
            better = (
                f" JS distances agree at {self.mean_agreement('js'):.2f}; try --distance js."
                if "js" in self.agreement and self.mean_agreement("js") > jm + 0.1
                else ""
            )
            out.append(
                f"The JM clusters are weakly reproducible: clusterings from two halves of the "
                f"data agree at an adjusted Rand index of {jm:.2f} (1 = identical, 0 = chance), "
                f"so part of what they group is sampling noise.{better}"
            )
        if self.shuffled_correlation > HIGH_SHUFFLED_CORRELATION:
            out.append(
                f"The JM distances carry little class signal: with shuffled labels they rank "
                f"the head pairs almost the same (Spearman {self.shuffled_correlation:.2f}), so "
                "they describe how heads attend in general, not per class."
            )
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["agreement"] = {
            dist: {str(k): v for k, v in per_k.items()} for dist, per_k in self.agreement.items()
        }
        d["mean_agreement"] = {dist: self.mean_agreement(dist) for dist in self.agreement}
        d["warnings"] = self.warnings()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Diagnostics:
        agreement = {
            dist: {int(k): [float(x) for x in v] for k, v in per_k.items()}
            for dist, per_k in d["agreement"].items()
        }
        return cls(
            [int(k) for k in d["ks"]],
            [int(s) for s in d["seeds"]],
            agreement,
            float(d["shuffled_correlation"]),
            int(d["examples"]),
        )


def diagnose(
    sets: dict[str, HeadSignatures],
    ks: Sequence[int],
    seeds: Sequence[int],
    perplexity: float = 10.0,
) -> Diagnostics:
    """Both checks from the signature sets of ``diagnostic_classes`` plus ``"all"`` (the
    run's own signatures): split-half agreement for JM and JS distances, and the JM
    shuffled-label correlation."""
    missing = {"all", "half_a", "half_b", "shuffled"} - set(sets)
    if missing:
        raise CAHPError(f"diagnostic signature sets missing: {', '.join(sorted(missing))}")
    agreement = {
        distance: split_half_agreement(
            sets["half_a"], sets["half_b"], distance, ks, seeds, perplexity
        )
        for distance in ("jm", "js")
    }
    return Diagnostics(
        ks=list(next(iter(agreement.values()))),
        seeds=[int(s) for s in seeds],
        agreement=agreement,
        shuffled_correlation=shuffled_label_correlation(sets["all"], sets["shuffled"]),
        examples=int(sets["all"].count.sum()),
    )
