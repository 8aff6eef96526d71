"""Knee stability: heads kept at CAHP's knee per clustering seed and polynomial degree.

For the quality benchmark's fine-tuned minilm-l6 models (SST-5 and MNLI; their salience and
distances are cached in benchmarks/runs/ by ``quality.prepare``), every clustering seed
(0-4) and every polynomial degree (1-12), the knee and the number of heads kept:

- knee curve ``quality``, method ``paper``: t-SNE of the JM feature matrix from a PCA start,
  FasterPAM for every k, the authors' mean simplified silhouette (``mss``) and their kneed
  call (concave, increasing): what the engine does by default;
- knee curve ``quality``, method ``previous``: t-SNE of the precomputed distances from a
  random start, the nearest-medoid simplified silhouette and the shape guessed from the fit
  (``auto``): what this project did before, for the before/after comparison;
- knee curve ``performance``: per seed, the masked validation accuracy (no fine-tuning) of
  that seed's CAHP selection (paper clustering) at 12 cluster counts, then the same
  polynomial and knee (a degree must stay below the 12 points).

Degree 1 is refused by the engine (a straight line has no knee) and recorded as refused.
Per (task, knee curve, method, degree) a ``"seed": "consensus"`` record holds the selection
of the seed whose kept map is closest to all others (``consensus_index``), as the engine
exports it.

    python benchmarks/knee.py                 # both tasks (fine-tunes the models if needed)
    python benchmarks/knee.py --tasks sst5    # one task; the other task's records are kept
    python benchmarks/knee.py --smoke         # a tiny end-to-end check (CI)

Writes benchmarks/results/knee.json and knee_meta.json. Clusterings and measured accuracy
curves are cached in benchmarks/runs/, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
from common import (
    RecordCache,
    machine,
    merge_task_records,
    parse_args,
    read_results,
    work_dir,
    write_results,
)
from quality import SETTINGS, SMOKE, eval_features, prepare

from cahp_core.atomic import load_npz, write_npz_atomic
from cahp_core.errors import CAHPError
from cahp_core.method.clustering import ClusteringResult, cluster_heads
from cahp_core.method.selection import complementary_selection, consensus_index, performance_points
from cahp_core.model.training import evaluate
from cahp_core.runs.run_selection import make_selector
from cahp_core.runs.stages import clustering_options, curve_grid

SEEDS = (0, 1, 2, 3, 4)
DEGREES = tuple(range(1, 13))
SMOKE_SEEDS = (0, 1)
SMOKE_DEGREES = (1, 2, 3, 4)
CURVE_POINTS = 12  # cluster counts of the measured performance curve (curve_grid)
SMOKE_CURVE_POINTS = 6
EVAL = {"sst5": ("validation", 500), "mnli": ("validation_matched", 500)}  # seeded subsets
SMOKE_EVAL = 32
# How each method clusters and finds its knee (the engine's options).
METHODS = {
    "paper": {"quality": "mss", "tsne_init": "pca", "features": True, "knee_shape": "concave"},
    "previous": {
        "quality": "simplified-silhouette",
        "tsne_init": "random",
        "features": False,
        "knee_shape": "auto",
    },
}
REFUSED_DEGREE_1 = "refused: a degree-1 fit is a straight line"


class Clock:
    """Elapsed time since the start, for progress lines."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start

    def say(self, message: str) -> None:
        print(f"[{self() / 60:6.1f} min] {message}", flush=True)


def fingerprint(array: np.ndarray) -> str:
    """A short hash of the distance matrix: cached clusterings and curves belong to it."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes()).hexdigest()[:12]


def clusterings(task, method, config, distances, seeds, smoke, clock) -> list[ClusteringResult]:
    """One clustering per seed with ``method``'s options (cached per distance matrix)."""
    options = METHODS[method]
    folder = work_dir() / f"knee-{task}{'-smoke' if smoke else ''}"
    tag = fingerprint(distances.distance)
    out = []
    for seed in seeds:
        path = folder / f"clustering-{method}-s{seed}-{tag}.npz"
        if path.is_file():
            out.append(ClusteringResult.from_arrays(load_npz(path)))
            continue
        start = time.perf_counter()
        paper = clustering_options(config, distances)
        result = cluster_heads(
            distances.distance,
            seed=seed,
            **{
                **paper,
                "quality": options["quality"],
                "features": paper["features"] if options["features"] else None,
                "tsne_init": options["tsne_init"],
            },
        )
        folder.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(path, **result.to_arrays())
        out.append(result)
        clock.say(f"{task} {method} clustering, seed {seed}: {time.perf_counter() - start:.1f} s")
    return out


def record(task, knee_curve, method, seed, degree, knee_k, heads, fallback, reason, **extra):
    return {
        "task": task,
        "knee_curve": knee_curve,
        "quality": METHODS[method]["quality"],
        "method": method,
        "seed": seed,
        "degree": int(degree),
        "knee_k": None if knee_k is None else int(knee_k),
        "heads_kept": None if heads is None else int(heads),
        "fallback": None if fallback is None else bool(fallback),
        "reason": reason,
        **extra,
    }


def refused(task, knee_curve, method, seeds, degree, exc: CAHPError) -> list[dict]:
    """The engine refused this degree: one record per seed and one for the consensus."""
    reason = REFUSED_DEGREE_1 if degree == 1 else f"refused: {exc}"
    return [
        record(task, knee_curve, method, seed, degree, None, None, None, reason)
        for seed in [*seeds, "consensus"]
    ]


def quality_records(task, method, config, results, salience, degrees) -> list[dict]:
    """Knee of each seed's cluster-quality curve per degree, and the consensus selection."""
    n_layers, n_heads = salience.normalised.shape
    seeds = [r.seed for r in results]
    shape = METHODS[method]["knee_shape"]
    out = []
    for degree in degrees:
        selector = make_selector(config, degree=degree, knee_curve="quality").set_params(
            quality=METHODS[method]["quality"], knee_shape=shape, seed=seeds[0], n_seeds=len(seeds)
        )
        try:
            selector.fit_from_clustering(results, salience.normalised, n_layers, n_heads)
        except CAHPError as exc:
            out += refused(task, "quality", method, seeds, degree, exc)
            continue
        for seed in seeds:
            found = selector.quality_knee_by_seed_[seed]
            out.append(
                record(
                    task,
                    "quality",
                    method,
                    seed,
                    degree,
                    selector.knee_by_seed_[seed],
                    selector.heads_by_seed_[seed],
                    found.fallback,
                    found.reason,
                )
            )
        knee = selector.knee_result_
        out.append(
            record(
                task,
                "quality",
                method,
                "consensus",
                degree,
                selector.knee_,
                selector.n_heads_kept_,
                knee.fallback,
                knee.reason,
                consensus_seed=int(selector.consensus_seed_),
            )
        )
    return out


def performance_curve(task, ctx, result, salience, features, points, cache, tag, clock):
    """Masked accuracy of CAHP's selection (this seed's clustering) at ``points`` cluster
    counts: records ``{"method": "cahp", "k", "heads_kept", "accuracy", ...}`` (cached)."""
    n_layers, n_heads = salience.normalised.shape
    loaded = ctx.finetuned()
    rows = []
    for k in curve_grid(result.ks, points):
        key = {"seed": int(result.seed), "k": int(k), "distances": tag, "n": len(features)}
        found = cache.find(**key)
        if not found:
            keep = complementary_selection(
                result.labels_for(k), salience.normalised, n_layers, n_heads
            )
            metrics = evaluate(loaded.model, loaded.tokenizer, features, keep=keep)
            cache.add(
                {
                    **key,
                    "method": "cahp",
                    "heads_kept": int(keep.sum()),
                    "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"],
                }
            )
            found = cache.find(**key)
            clock.say(
                f"{task} seed {result.seed} k={k}: {int(keep.sum())} heads, masked accuracy "
                f"{metrics['accuracy']:.3f}"
            )
        rows.append(found[0])
    return rows


def performance_records(task, config, results, salience, curves, degrees) -> list[dict]:
    """Knee of each seed's measured accuracy curve per degree, and the consensus selection."""
    n_layers, n_heads = salience.normalised.shape
    seeds = [r.seed for r in results]
    out = []
    for degree in degrees:
        rows, supports = [], []
        try:
            for result in results:
                selector = make_selector(config, degree=degree, knee_curve="performance")
                selector.set_params(seed=result.seed, n_seeds=1).fit_from_clustering(
                    [result],
                    salience.normalised,
                    n_layers,
                    n_heads,
                    performance=performance_points(curves[result.seed]),
                )
                knee = selector.performance_knee_result_
                rows.append(
                    record(
                        task,
                        "performance",
                        "paper",
                        result.seed,
                        degree,
                        selector.knee_,
                        selector.n_heads_kept_,
                        knee.fallback,
                        knee.reason,
                    )
                )
                supports.append(selector.support_)
        except CAHPError as exc:
            out += refused(task, "performance", "paper", seeds, degree, exc)
            continue
        chosen = consensus_index(np.stack(supports))
        consensus = {**rows[chosen], "seed": "consensus", "consensus_seed": seeds[chosen]}
        out += [*rows, consensus]
    return out


def run_task(task: str, smoke: bool, seeds, degrees, clock) -> tuple[list[dict], dict]:
    start = time.perf_counter()
    ctx, salience, _, by_distance = prepare(task, "cpu", smoke, "cpu")  # the CPU protocol's run
    distances = by_distance["jm"]
    prepared = time.perf_counter() - start
    clock.say(f"{task}: fine-tuned model, salience and distances ready ({prepared:.0f} s)")
    config = ctx.config
    records = []
    by_method = {}
    for method in METHODS:
        by_method[method] = clusterings(task, method, config, distances, seeds, smoke, clock)
        records += quality_records(task, method, config, by_method[method], salience, degrees)
        clock.say(f"{task}: quality knees, method {method}, done")
    split, n = EVAL[task]
    features = eval_features(ctx, {split: SMOKE_EVAL if smoke else n}, smoke)[split]
    cache = RecordCache(work_dir() / f"knee-{task}{'.smoke' if smoke else ''}-curves.jsonl")
    points = SMOKE_CURVE_POINTS if smoke else CURVE_POINTS
    tag = fingerprint(distances.distance)
    curves = {
        r.seed: performance_curve(task, ctx, r, salience, features, points, cache, tag, clock)
        for r in by_method["paper"]
    }
    records += performance_records(task, config, by_method["paper"], salience, curves, degrees)
    clock.say(f"{task}: performance knees done")
    meta = {
        "eval": {"split": split, "n": len(features), "subset_seed": 0},
        "curve_points": points,
        "curves": {
            str(seed): [[r["k"], r["heads_kept"], r["accuracy"]] for r in rows]
            for seed, rows in curves.items()
        },
        "prepare_seconds": round(prepared, 1),  # ~0 once the stages below are cached
        "stage_seconds": ctx.run.stage_seconds(),  # fine-tune, salience, ... when first run
        "knee_seconds": round(time.perf_counter() - start - prepared, 1),
        "settings": SMOKE if smoke else SETTINGS["cpu"][task]["config"],
    }
    return records, meta


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["sst5", "mnli"], choices=list(EVAL))
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models and subsets, seeds 0-1, degrees 1-4"
    )
    args = parse_args(parser)
    seeds = SMOKE_SEEDS if args.smoke else SEEDS
    degrees = SMOKE_DEGREES if args.smoke else DEGREES
    clock = Clock()
    records, tasks_meta = [], {}
    for task in args.tasks:
        task_records, tasks_meta[task] = run_task(task, args.smoke, seeds, degrees, clock)
        records += task_records
    write_results("knee", merge_task_records("knee", records, args.tasks, args.smoke), args.smoke)
    previous = read_results("knee_meta", args.smoke, {})
    meta = {
        "machine": machine(),
        "seeds": list(seeds),
        "degrees": list(degrees),
        "methods": METHODS,
        "tasks": {**previous.get("tasks", {}), **tasks_meta},
    }
    write_results("knee_meta", meta, args.smoke)
    clock.say(f"done: {len(records)} records")


if __name__ == "__main__":
    main()
