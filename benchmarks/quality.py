"""Quality and proximity-bias benchmark: CAHP vs gradient vs random at equal head budgets.

For each task and seed: fine-tune minilm-l6 once, compute CAHP's cached stages, then for every
budget (10/20/30/50 % of heads and CAHP's own knee) prune with each method, fine-tune once and
evaluate. Gradient and random keep exactly as many heads as CAHP kept at that budget.

    python benchmarks/quality.py            # the published numbers (about 1.5 h on 2 CPU cores)
    python benchmarks/quality.py --smoke    # a tiny end-to-end check (CI)

Writes benchmarks/results/quality.json and proximity.json; progress is cached in
benchmarks/runs/ so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from cahp_core.baselines import gradient_selection, random_selection
from cahp_core.data import subset, tokenize_records
from cahp_core.proximity import depth_stats
from common import WORK, RecordCache, data_dir, machine, write_results

from cahp_core.config import RunConfig
from cahp_core.pipeline import (
    clustering_stage,
    distances_stage,
    ensure_finetuned,
    fit_selector,
    open_context,
    prune_finetune,
    salience_stage,
    signatures_stage,
)
from cahp_core.training import evaluate

BUDGETS: tuple = (0.1, 0.2, 0.3, 0.5, "knee")

# Stated settings: CPU-sized subsets of the training splits; full evaluation splits for SST-5,
# fixed seeded subsets of 2,000 examples for each MNLI evaluation split.
SETTINGS = {
    "sst5": {
        "config": {"max_train": 4000, "epochs": 2.0, "prune_epochs": 1.0},
        "eval_splits": {"test": None},
    },
    "mnli": {
        "config": {"max_train": 8000, "epochs": 2.0, "prune_epochs": 1.0, "max_eval": 1000},
        "eval_splits": {"validation_matched": 2000, "validation_mismatched_hard": 2000},
    },
}
SMOKE = {"max_train": 64, "max_eval": 32, "epochs": 1.0, "prune_epochs": 1.0, "curve_points": 3}


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


def eval_features(ctx, splits: dict[str, int | None], seed: int, smoke: bool) -> dict[str, list]:
    out = {}
    for split, n in splits.items():
        records = subset(ctx.task.splits[split], 32 if smoke else n, seed)
        out[split] = tokenize_records(records, ctx.tokenizer, ctx.task.spec, ctx.config.max_length)
    return out


def run_task(task: str, seed: int, cache: RecordCache, smoke: bool) -> list[dict]:
    settings = SETTINGS[task]
    overrides = SMOKE if smoke else settings["config"]
    config = RunConfig(
        model="minilm-l6",
        task=task,
        data_dir=data_dir(task),
        seed=seed,
        device="cpu",
        preset="benchmark",
        **overrides,
    ).validate()
    ctx = open_context(WORK / f"{task}-s{seed}{'-smoke' if smoke else ''}", config)
    ensure_finetuned(ctx)
    salience = salience_stage(ctx)
    distances = distances_stage(
        ctx, None if ctx.run.is_done("distances") else signatures_stage(ctx)
    )
    clustering = clustering_stage(ctx, distances)
    selector = fit_selector(config, clustering, salience)
    features = eval_features(ctx, settings["eval_splits"], seed, smoke)
    proximity = []
    budgets = BUDGETS[:1] + ("knee",) if smoke else BUDGETS
    for budget in budgets:
        for method, keep in method_maps(selector, salience, budget, seed).items():
            proximity.append(
                {
                    "task": task,
                    "method": method,
                    "budget_frac": budget,
                    "seed": seed,
                    **depth_stats(keep),
                }
            )
            key = {"task": task, "method": method, "budget_frac": budget, "seed": seed}
            if cache.find(**key):
                continue
            start = time.perf_counter()
            pruned, _ = prune_finetune(ctx, keep, stage=f"{method}@{budget}", masked_accuracy=False)
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
            print(
                f"{task} seed {seed} {method:8s} budget {budget}: {int(keep.sum())} heads, "
                f"{[round(r['accuracy'], 3) for r in cache.find(**key)]}",
                flush=True,
            )
    return proximity


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["sst5", "mnli"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny subsets, one seed: checks the script works"
    )
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.smoke else args.seeds
    cache = RecordCache(WORK / ("quality.smoke.jsonl" if args.smoke else "quality.jsonl"))
    proximity = []
    for task in args.tasks:
        for seed in seeds:
            proximity += run_task(task, seed, cache, args.smoke)
    records = [r for r in cache.records if r["task"] in args.tasks and r["seed"] in seeds]
    write_results("quality", records, args.smoke)
    write_results("proximity", proximity, args.smoke)
    write_results(
        "quality_meta",
        {"machine": machine(), "settings": SETTINGS, "budgets": list(BUDGETS)},
        args.smoke,
    )


if __name__ == "__main__":
    main()
