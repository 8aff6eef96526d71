"""Quality and proximity-bias benchmark: CAHP vs gradient vs random at equal head budgets.

Per task, minilm-l6 is fine-tuned once (seed 42) and CAHP's cached stages are computed once.
Then for each seed (t-SNE / k-medoids seed, random selection, post-pruning fine-tune) and each
budget (10/20/30/50 % of heads and CAHP's own knee) every method prunes, is fine-tuned once
with the same settings and is evaluated. Gradient and random keep exactly as many heads as CAHP
kept at that budget.

    python benchmarks/quality.py            # the published numbers (about 75 min on 2 cores)
    python benchmarks/quality.py --smoke    # a tiny end-to-end check (CI)

Writes benchmarks/results/quality.json, proximity.json and quality_meta.json. Finished
measurements are cached in benchmarks/runs/, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import WORK, RecordCache, data_dir, machine, write_results

from cahp_core.baselines import gradient_selection, random_selection
from cahp_core.clustering import cluster_heads
from cahp_core.config import RunConfig
from cahp_core.data import subset, tokenize_records
from cahp_core.pipeline import (
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
SEEDS = (0, 1, 2)

# Stated CPU-sized settings. Full fine-tune: a seeded subset of the training split. Pruned
# fine-tune: one epoch over a seeded 800-example subset of it. Evaluation: SST-5's full test
# split; seeded 1,000-example subsets of MNLI validation_matched and validation_mismatched_hard.
SETTINGS = {
    "sst5": {
        "config": {"max_train": 2000, "max_eval": 500, "epochs": 3.0, "prune_epochs": 1.0},
        "prune_train": 800,
        "eval_splits": {"test": None},
    },
    "mnli": {
        "config": {"max_train": 3000, "max_eval": 500, "epochs": 2.0, "prune_epochs": 1.0},
        "prune_train": 800,
        "eval_splits": {"validation_matched": 1000, "validation_mismatched_hard": 1000},
    },
}
SMOKE = {"max_train": 64, "max_eval": 32, "epochs": 1.0, "prune_epochs": 1.0}


def method_maps(selector, salience, budget, seed: int) -> dict[str, np.ndarray]:
    """CAHP at the budget (or its knee) and the baselines with the same number of heads."""
    n_layers, n_heads = salience.raw.shape
    if budget == "knee":
        cahp = selector.support_
    else:
        cahp = selector.select_budget(max(n_layers, int(round(budget * n_layers * n_heads))))
    n = int(cahp.sum())
    return {
        "cahp": cahp,
        "gradient": gradient_selection(salience.raw, n),
        "random": random_selection(n_layers, n_heads, n, seed),
    }


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


def run_seed(task, seed, ctx, salience, distances, cache: RecordCache, smoke: bool) -> list[dict]:
    config = ctx.config
    clustering = cluster_heads(
        distances.distance, method=config.clustering, perplexity=config.perplexity, seed=seed
    )
    n_layers, n_heads = salience.raw.shape
    selector = make_selector(config).set_params(seed=seed)
    selector.fit_from_clustering(clustering, salience.normalised, n_layers, n_heads)
    features = eval_features(ctx, SETTINGS[task]["eval_splits"], smoke)
    prune_train = 32 if smoke else SETTINGS[task]["prune_train"]
    proximity = []
    for budget in (0.1, "knee") if smoke else BUDGETS:
        for method, keep in method_maps(selector, salience, budget, seed).items():
            key = {"task": task, "method": method, "budget_frac": budget, "seed": seed}
            proximity.append({**key, **depth_stats(keep)})
            if cache.find(**key):
                continue
            start = time.perf_counter()
            pruned, _ = prune_finetune(
                ctx,
                keep,
                stage=f"{method}@{budget}",
                masked_accuracy=False,
                seed=seed,
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
                f"{task} seed {seed} {method:8s} budget {budget}: {int(keep.sum())} heads, "
                f"accuracy {accuracies}",
                flush=True,
            )
    return proximity


def full_model_records(task: str, ctx, n_heads: int, smoke: bool) -> list[dict]:
    """The unpruned fine-tuned model on the same evaluation splits (reference line)."""
    loaded = ctx.finetuned()
    records = []
    for split, feats in eval_features(ctx, SETTINGS[task]["eval_splits"], smoke).items():
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
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.smoke else args.seeds
    proximity, references, records = [], [], []
    for task in args.tasks:  # one cache per task, so tasks can run in parallel processes
        cache = RecordCache(WORK / f"quality-{task}{'.smoke' if args.smoke else ''}.jsonl")
        ctx, salience, distances = prepare(task, args.smoke)
        references += full_model_records(task, ctx, int(salience.raw.size), args.smoke)
        for seed in seeds:
            proximity += run_seed(task, seed, ctx, salience, distances, cache, args.smoke)
        records += [r for r in cache.records if r["seed"] in seeds]
    write_results("quality", references + records, args.smoke)
    write_results("proximity", proximity, args.smoke)
    meta = {"machine": machine(), "settings": SETTINGS, "budgets": list(BUDGETS), "seeds": seeds}
    write_results("quality_meta", meta, args.smoke)


if __name__ == "__main__":
    main()
