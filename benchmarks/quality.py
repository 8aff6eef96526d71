"""Quality and proximity-bias benchmark: CAHP vs gradient vs random at equal head budgets.

Per task, minilm-l6 is fine-tuned once (seed 42) and CAHP's cached stages are computed once.
Then for each seed (t-SNE / k-medoids seed, random selection, post-pruning fine-tune) and each
budget (10/20/30/50 % of heads and CAHP's own knee) every method prunes, is fine-tuned once
with the same settings and is evaluated. Gradient and random keep exactly as many heads as CAHP
kept at that budget. Proximity statistics also cover gradient importance without per-layer
normalisation (``gradient-raw``), which is not fine-tuned.

    python benchmarks/quality.py                  # the published numbers (2 idle cores: SST-5
                                                  # about 20 min, MNLI about 1 h)
    python benchmarks/quality.py --tasks mnli     # one task; the other task's records are kept
    python benchmarks/quality.py --proximity-only # depth statistics only, no pruned fine-tunes
    python benchmarks/quality.py --smoke          # a tiny end-to-end check (CI)

Writes benchmarks/results/quality.json, proximity.json and quality_meta.json. Finished
measurements are cached in benchmarks/runs/, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import WORK, RecordCache, data_dir, machine, merge_task_records, write_results

from cahp_core.baselines import same_budget_maps
from cahp_core.clustering import cluster_heads
from cahp_core.config import RunConfig
from cahp_core.data import subset, tokenize_records
from cahp_core.pipeline import (
    clustering_options,
    distances_stage,
    ensure_finetuned,
    make_selector,
    open_context,
    prune_finetune,
    salience_stage,
    signatures_stage,
)
from cahp_core.proximity import depth_stats
from cahp_core.training import evaluate

BUDGETS: tuple = (0.1, 0.2, 0.3, 0.5, "knee")
SMOKE_BUDGETS: tuple = (0.1, "knee")
QUALITY_METHODS = ("cahp", "gradient", "random")  # pruned, fine-tuned and evaluated
SEEDS = (0, 1, 2)

# Stated CPU-sized settings. Full fine-tune: a seeded subset of the training split. Pruned
# fine-tune: one epoch over a seeded subset of it. Evaluation: SST-5's full test split; seeded
# 1,000-pair subsets of MNLI validation_matched and validation_mismatched_hard. MNLI gets more
# data and a higher learning rate: with 3,000 pairs at 2e-5 the full model reached only 0.47.
SETTINGS = {
    "sst5": {
        "config": {"max_train": 2000, "max_eval": 500, "epochs": 3.0, "prune_epochs": 1.0},
        "prune_train": 800,
        "eval_splits": {"test": None},
    },
    "mnli": {
        "config": {
            "max_train": 10000,
            "max_eval": 1000,
            "epochs": 2.0,
            "prune_epochs": 1.0,
            "learning_rate": 5e-5,
            "signature_examples": 4000,
        },
        "prune_train": 1200,
        "eval_splits": {"validation_matched": 1000, "validation_mismatched_hard": 1000},
    },
}
SMOKE = {"max_train": 64, "max_eval": 32, "epochs": 1.0, "prune_epochs": 1.0}


def budget_keep(selector, n_layers: int, n_heads: int, budget) -> np.ndarray:
    """CAHP's kept map at a budget fraction of all heads (at least one per layer), or its knee."""
    if budget == "knee":
        return selector.support_
    return selector.select_budget(max(n_layers, int(round(budget * n_layers * n_heads))))


def eval_features(ctx, splits: dict[str, int | None], smoke: bool) -> dict[str, list]:
    out = {}
    for split, n in splits.items():
        records = subset(ctx.task.splits[split], 32 if smoke else n, 0)
        out[split] = tokenize_records(records, ctx.tokenizer, ctx.task.spec, ctx.config.max_length)
    return out


def prepare(task: str, smoke: bool):
    """The task's run context, fine-tuned once, with salience and distances cached."""
    overrides = SMOKE if smoke else SETTINGS[task]["config"]
    config = RunConfig(
        model="minilm-l6",
        task=task,
        data_dir=data_dir(task),
        seed=42,
        device="cpu",
        preset="benchmark",
        **overrides,
    ).validate()
    ctx = open_context(WORK / f"{task}{'-smoke' if smoke else ''}", config)
    ensure_finetuned(ctx)
    salience = salience_stage(ctx)
    signatures = None if ctx.run.is_done("distances") else signatures_stage(ctx)
    distances = distances_stage(ctx, signatures)
    return ctx, salience, distances


def seed_clustering(config, distances, seed: int):
    """This seed's clustering as the paper clusters: t-SNE (PCA start) of the JM feature
    matrix, FasterPAM for every k, the run's quality curve (the authors' MSS by default)."""
    return cluster_heads(distances.distance, seed=seed, **clustering_options(config, distances))


def seed_selector(ctx, salience, distances, seed: int):
    """CAHP's selector fitted on this one seed's clustering (cached stages reused)."""
    config = ctx.config
    n_layers, n_heads = salience.raw.shape
    selector = make_selector(config).set_params(seed=seed, n_seeds=1)
    return selector.fit_from_clustering(
        [seed_clustering(config, distances, seed)], salience.normalised, n_layers, n_heads
    )


def seed_maps(task, seed, selector, salience, budgets) -> list[tuple[dict, np.ndarray]]:
    """(key, kept map) for every budget and method of one seed, ``gradient-raw`` included."""
    n_layers, n_heads = salience.raw.shape
    out = []
    for budget in budgets:
        keep = budget_keep(selector, n_layers, n_heads, budget)
        for method, kept in same_budget_maps(keep, salience.raw, seed, raw_gradient=True).items():
            out.append(
                ({"task": task, "method": method, "budget_frac": budget, "seed": seed}, kept)
            )
    return out


def measure(ctx, key: dict, keep, selector, features, prune_train: int, cache: RecordCache):
    """Prune to ``keep``, fine-tune once, evaluate on every split; cache one record per split."""
    start = time.perf_counter()
    pruned, _ = prune_finetune(
        ctx,
        keep,
        stage=f"{key['method']}@{key['budget_frac']}",
        masked_accuracy=False,
        seed=key["seed"],
        max_train=prune_train,
    )
    for split, feats in features.items():
        metrics = evaluate(pruned.model, pruned.tokenizer, feats)
        cache.add(
            {
                **key,
                "split": split,
                "model": "minilm-l6",
                "heads": int(keep.sum()),
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "n": metrics["n"],
                "knee": int(selector.knee_),
                "degree": int(selector.degree),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    accuracies = [round(r["accuracy"], 3) for r in cache.find(**key)]
    print(
        f"{key['task']} seed {key['seed']} {key['method']:8s} budget {key['budget_frac']}: "
        f"{int(keep.sum())} heads, accuracy {accuracies}",
        flush=True,
    )


def run_seed(task, seed, ctx, salience, distances, cache, smoke: bool, features: dict | None):
    """Proximity statistics of every method and budget; given evaluation ``features`` (one
    list per split), also their quality after pruning and one fine-tune.

    ``gradient-raw`` (no per-layer normalisation) gets proximity statistics only.
    """
    selector = seed_selector(ctx, salience, distances, seed)
    prune_train = 32 if smoke else SETTINGS[task]["prune_train"]
    proximity = []
    for key, keep in seed_maps(task, seed, selector, salience, SMOKE_BUDGETS if smoke else BUDGETS):
        proximity.append({**key, **depth_stats(keep)})
        if features is not None and key["method"] in QUALITY_METHODS and not cache.find(**key):
            measure(ctx, key, keep, selector, features, prune_train, cache)
    return proximity


def full_model_records(task: str, ctx, n_heads: int, features: dict) -> list[dict]:
    """The unpruned fine-tuned model on the same evaluation splits (reference line)."""
    loaded = ctx.finetuned()
    records = []
    for split, feats in features.items():
        metrics = evaluate(loaded.model, loaded.tokenizer, feats)
        records.append(
            {
                "task": task,
                "split": split,
                "model": "minilm-l6",
                "method": "full",
                "budget_frac": 1.0,
                "heads": n_heads,
                "seed": 42,
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "n": metrics["n"],
            }
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["sst5", "mnli"], choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--smoke", action="store_true", help="tiny subsets, one seed: checks the script works"
    )
    parser.add_argument(
        "--proximity-only",
        action="store_true",
        help="recompute proximity.json (all methods, incl. un-normalised gradient) without "
        "the pruned fine-tunes; quality.json is left as it is",
    )
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.smoke else args.seeds
    proximity, references, records = [], [], []
    for task in args.tasks:  # one cache per task, so tasks can run in parallel processes
        cache = RecordCache(WORK / f"quality-{task}{'.smoke' if args.smoke else ''}.jsonl")
        ctx, salience, distances = prepare(task, args.smoke)
        features = (  # tokenised once per task, shared by every seed and the full model
            None
            if args.proximity_only
            else eval_features(ctx, SETTINGS[task]["eval_splits"], args.smoke)
        )
        for seed in seeds:
            proximity += run_seed(task, seed, ctx, salience, distances, cache, args.smoke, features)
        if features is not None:
            references += full_model_records(task, ctx, int(salience.raw.size), features)
            records += [r for r in cache.records if r["seed"] in seeds]
    # Records of tasks not run now are kept, so `--tasks mnli` adds MNLI beside SST-5.
    write_results(
        "proximity", merge_task_records("proximity", proximity, args.tasks, args.smoke), args.smoke
    )
    if not args.proximity_only:
        quality = merge_task_records("quality", references + records, args.tasks, args.smoke)
        write_results("quality", quality, args.smoke)
        meta = {
            "machine": machine(),
            "settings": SETTINGS,
            "budgets": list(BUDGETS),
            "seeds": seeds,
        }
        write_results("quality_meta", meta, args.smoke)


if __name__ == "__main__":
    main()
