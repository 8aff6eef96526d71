"""Quality and proximity-bias benchmark: CAHP and its variants vs gradient vs random at equal
head budgets, with and without re-tuning.

Per task and protocol, minilm-l6 is fine-tuned once (seed 42) and CAHP's cached stages are
computed once. Then for each seed (t-SNE / k-medoids seed, random selection, post-pruning
fine-tune) and each budget every method prunes. Two measurements per kept map:

- **masked** (the retraining-free view): the full model with the other heads gated off, no
  re-tune: accuracy, macro-F1 and the KL divergence of its predictions from the full
  model's (paired, so more sensitive than accuracy);
- **re-tuned**: physically pruned, fine-tuned once with the protocol's settings, evaluated.

Gradient, random and the CAHP variants keep exactly as many heads as the paper's CAHP kept at
that budget. Proximity statistics also cover gradient importance without per-layer
normalisation (``gradient-raw``), which is not fine-tuned.

Protocols (``--protocol``):
  cpu    (default) CPU-sized: seeded training subsets, a 1-epoch re-tune on 800 (SST-5) /
         1,200 (MNLI) examples; SST-5 full test, 1,000-pair MNLI subsets. 2 idle cores: SST-5
         about 30 min, MNLI about 1.5 h with every method.
  paper  the paper's: full training split, 3 epochs before and 3 after pruning, lr 2e-5,
         batch 32; SST-5 full test; MNLI full validation_matched and mismatched-hard. SST-5
         on 2 CPU cores: about 8 min for the full fine-tune plus about 6 min per re-tune
         (measured: 52 training examples/s with all heads, 71 at 20 %). MNLI needs a GPU:
         python benchmarks/quality.py --protocol paper --tasks mnli --device cuda

    python benchmarks/quality.py                          # CPU protocol, both tasks
    python benchmarks/quality.py --protocol paper --tasks sst5 --budgets 0.1 0.2
    python benchmarks/quality.py --methods cahp gradient  # a subset of the methods
    python benchmarks/quality.py --masked-only            # the retraining-free view only
    python benchmarks/quality.py --smoke [--protocol paper]   # tiny end-to-end checks (CI)

Writes benchmarks/results/quality.json, proximity.json and quality_meta.json; records carry
``protocol`` and ``retune``, and re-running one protocol or task keeps the others. Finished
measurements are cached in benchmarks/runs/, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from common import (
    RecordCache,
    data_dir,
    machine,
    merge_task_records,
    parse_args,
    read_results,
    work_dir,
    write_results,
)

from cahp_core.data import subset, tokenize_records
from cahp_core.method.baselines import same_budget_maps
from cahp_core.method.clustering import cluster_heads
from cahp_core.method.distances import head_distances
from cahp_core.method.proximity import depth_stats
from cahp_core.method.signatures import HeadSignatures
from cahp_core.model.training import evaluate, predict_logits
from cahp_core.runs.config import RunConfig
from cahp_core.runs.exporting import prune_finetune
from cahp_core.runs.pipeline import open_context
from cahp_core.runs.run_selection import make_selector
from cahp_core.runs.stages import clustering_options

PROTOCOLS = ("cpu", "paper")
BASELINES = ("gradient", "random")
# CAHP and its variants: selector parameters on top of the run's (the paper's rule is "cahp")
CAHP_METHODS: dict[str, dict] = {
    "cahp": {},
    "cahp-js": {"distance": "js"},
    "cahp-radius": {"rule": "salience-radius"},
    "cahp-mmr": {"rule": "mmr"},
    "cahp-radius-js": {"distance": "js", "rule": "salience-radius"},
    "cahp-mmr-js": {"distance": "js", "rule": "mmr"},
}
METHODS = (*CAHP_METHODS, *BASELINES)
DEFAULT_METHODS = ("cahp", "gradient", "random")
BUDGETS = {"cpu": (0.1, 0.2, 0.3, 0.5, "knee"), "paper": (0.1, 0.2)}
SMOKE_BUDGETS: tuple = (0.1, "knee")
SEEDS = (0, 1, 2)
LAMBDA_GRID = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)  # MMR weights tried on validation data
LAMBDA_TASK = "sst5"  # whose validation split chooses lambda (SST-5's test split is apart)

# Stated settings per protocol. Full fine-tune: the run config. Pruned fine-tune: the run's
# prune_epochs over ``prune_train`` examples (None: the whole training split). CPU protocol:
# SST-5's full test split; seeded 1,000-pair subsets of MNLI validation_matched and
# validation_mismatched_hard. MNLI gets more data and a higher learning rate on CPU: with
# 3,000 pairs at 2e-5 the full model reached only 0.47.
SETTINGS = {
    "cpu": {
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
    },
    "paper": {  # RunConfig's defaults are the paper's: full splits, 3 + 3 epochs, lr 2e-5
        "sst5": {"config": {}, "prune_train": None, "eval_splits": {"test": None}},
        "mnli": {
            "config": {},
            "prune_train": None,
            "eval_splits": {"validation_matched": None, "validation_mismatched_hard": None},
        },
    },
}
SMOKE = {"max_train": 64, "max_eval": 32, "epochs": 1.0, "prune_epochs": 1.0}


def run_name(task: str, protocol: str, smoke: bool) -> str:
    """benchmarks/runs/<name>: ``sst5`` (CPU protocol), ``sst5-paper``, ``sst5-smoke`` ..."""
    return task + ("" if protocol == "cpu" else f"-{protocol}") + ("-smoke" if smoke else "")


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


def prepare(task: str, protocol: str, smoke: bool, device: str):
    """The task's run context, fine-tuned once, with salience, signatures and distances."""
    overrides = SMOKE if smoke else SETTINGS[protocol][task]["config"]
    config = RunConfig(
        model="minilm-l6",
        task=task,
        data_dir=data_dir(task),
        seed=42,
        device=device,
        preset="benchmark",
        **overrides,
    ).validate()
    # a second benchmark process (--reverse) waits here until the first has prepared the run
    with open_context(
        work_dir() / run_name(task, protocol, smoke), config, timeout=24 * 3600
    ) as ctx:
        salience = ctx.result("salience")
        signatures = ctx.result("signatures")
        distances = {"jm": ctx.result("distances")}
    return ctx, salience, signatures, distances


def distances_for(name: str, signatures: HeadSignatures, distances: dict) -> object:
    """The run's distances of one kind, computed once per task (``jm`` is the run's stage)."""
    if name not in distances:
        distances[name] = head_distances(signatures, name)
    return distances[name]


def seed_selector(ctx, salience, signatures, distances, seed: int, **params):
    """A selector fitted on this one seed's clustering (the paper's: t-SNE with a PCA start
    on the JM features, FasterPAM for every k, the MSS curve), with ``params`` on top."""
    config = ctx.config
    n_layers, n_heads = salience.raw.shape
    selector = make_selector(config).set_params(seed=seed, n_seeds=1, **params)
    run_distances = distances_for(selector.distance, signatures, distances)
    options = clustering_options(replace(config, distance=selector.distance), run_distances)
    clustering = cluster_heads(run_distances.distance, seed=seed, **options)
    # raw salience: the complementary rule only compares heads (any increasing scale gives
    # the same selection); the salience-led rules normalise it per layer like ``gradient``
    return selector.fit_from_clustering(
        [clustering], salience.raw, n_layers, n_heads, distance=run_distances.distance
    )


def seed_maps(task, seed, selectors: dict, salience, budgets, methods) -> list[tuple[dict, object]]:
    """(key, kept map) for every budget and method of one seed, ``gradient-raw`` included.
    Every method keeps exactly as many heads as the paper's CAHP at that budget."""
    n_layers, n_heads = salience.raw.shape
    out = []
    for budget in budgets:
        keep = budget_keep(selectors["cahp"], n_layers, n_heads, budget)
        maps = same_budget_maps(keep, salience.raw, seed, raw_gradient=True)
        for name, selector in selectors.items():
            if name != "cahp":
                maps[name] = selector.select_budget(int(keep.sum()))
        for method, kept in maps.items():
            if method in methods or method == "gradient-raw":
                key = {"task": task, "method": method, "budget_frac": budget, "seed": seed}
                out.append((key, kept))
    return out


class Evaluator:
    """Evaluates kept maps on the benchmark's splits; the full model's logits are the
    reference for the KL divergence. Identical masked maps are measured once."""

    def __init__(self, ctx, features: dict[str, list]):
        self.ctx = ctx
        self.features = features
        full = ctx.finetuned()
        self.full_logits = {
            split: predict_logits(full.model, full.tokenizer, feats)
            for split, feats in features.items()
        }  # {split: [examples, labels]}
        self._masked: dict[bytes, dict] = {}

    def metrics(self, model, tokenizer, keep=None) -> dict[str, dict]:
        return {
            split: evaluate(
                model, tokenizer, feats, keep=keep, reference_logits=self.full_logits[split]
            )
            for split, feats in self.features.items()
        }

    def masked(self, keep: np.ndarray) -> dict[str, dict]:
        key = map_id(keep)
        if key not in self._masked:
            full = self.ctx.finetuned()
            self._masked[key] = self.metrics(full.model, full.tokenizer, keep=keep)
        return self._masked[key]


def map_id(keep: np.ndarray) -> str:
    """A short id of a kept map: the same heads give the same id (re-tunes are shared)."""
    return np.packbits(np.asarray(keep, dtype=bool)).tobytes().hex()


def add_records(cache: RecordCache, key: dict, keep, selector, metrics: dict, extra: dict):
    for split, m in metrics.items():
        cache.add(
            {
                **key,
                "split": split,
                "model": "minilm-l6",
                "heads": int(keep.sum()),
                "map": map_id(keep),
                **m,
                "knee": int(selector.knee_),
                "degree": int(selector.degree),
                **extra,
            }
        )


def measure(ctx, key: dict, keep, selector, evaluator, prune_train, retune: bool, cache):
    """Masked metrics (always) and, with ``retune``, prune + fine-tune once + evaluate."""
    cache.refresh()  # a second process (``--reverse``) may share this cache
    if not cache.find(**key, retune=False):
        add_records(cache, {**key, "retune": False}, keep, selector, evaluator.masked(keep), {})
    if not retune or cache.find(**key, retune=True):
        return
    same = cache.find(map=map_id(keep), seed=key["seed"], retune=True)
    if same:  # another method or budget kept the very same heads: same re-tune, same numbers
        fields = ("task", "method", "budget_frac", "seed", "protocol")
        for record in same:
            source = f"{record['method']}@{record['budget_frac']}"
            cache.add({**record, **{f: key[f] for f in fields}, "same_as": source})
        return
    start = time.perf_counter()
    pruned, _ = prune_finetune(
        ctx,
        keep,
        stage=f"{key['method']}@{key['budget_frac']}",
        masked_accuracy=False,
        seed=key["seed"],
        max_train=prune_train,
    )
    metrics = evaluator.metrics(pruned.model, pruned.tokenizer)
    seconds = {"seconds": round(time.perf_counter() - start, 1)}
    add_records(cache, {**key, "retune": True}, keep, selector, metrics, seconds)
    accuracies = [round(r["accuracy"], 3) for r in cache.find(**key, retune=True)]
    print(
        f"{key['task']} [{key['protocol']}] seed {key['seed']} {key['method']:14s} budget "
        f"{key['budget_frac']}: {int(keep.sum())} heads, re-tuned accuracy {accuracies}",
        flush=True,
    )


def seed_selectors(ctx, salience, signatures, distances, seed: int, methods, lambdas: dict):
    """The fitted selector of every CAHP method in ``methods`` (the paper's always)."""
    names = ["cahp", *(m for m in methods if m in CAHP_METHODS and m != "cahp")]
    out = {}
    for name in names:
        params = dict(CAHP_METHODS[name])
        if params.get("rule") == "mmr":
            params["mmr_lambda"] = lambdas[params.get("distance", "jm")]
        out[name] = seed_selector(ctx, salience, signatures, distances, seed, **params)
    return out


def full_model_records(task, protocol, evaluator, n_heads: int) -> list[dict]:
    """The unpruned fine-tuned model on the same evaluation splits (reference line)."""
    loaded = evaluator.ctx.finetuned()
    return [
        {
            "task": task,
            "protocol": protocol,
            "split": split,
            "model": "minilm-l6",
            "method": "full",
            "budget_frac": 1.0,
            "heads": n_heads,
            "seed": 42,
            "retune": False,
            **m,
        }
        for split, m in evaluator.metrics(loaded.model, loaded.tokenizer).items()
    ]


def choose_lambda(ctx, salience, signatures, distances, distance: str, seed: int = 42) -> dict:
    """MMR's weight, chosen on SST-5's validation split only (never a reported split): the
    lambda of ``LAMBDA_GRID`` with the best mean masked accuracy at the 10/20/30 % budgets
    (ties: the larger lambda, closer to the salience ranking). MNLI reuses it unchanged, so
    its numbers are an out-of-sample check of the choice."""
    val = {"validation": ctx.eval_features}
    evaluator = Evaluator(ctx, val)
    n_layers, n_heads = salience.raw.shape
    paper = seed_selector(ctx, salience, signatures, distances, seed)
    budgets = [int(budget_keep(paper, n_layers, n_heads, b).sum()) for b in (0.1, 0.2, 0.3)]
    scores = {}
    for lam in LAMBDA_GRID:
        selector = seed_selector(
            ctx,
            salience,
            signatures,
            distances,
            seed,
            distance=distance,
            rule="mmr",
            mmr_lambda=lam,
        )
        accs = [
            evaluator.masked(selector.select_budget(n))["validation"]["accuracy"] for n in budgets
        ]
        scores[lam] = float(np.mean(accs))
    best = max(scores, key=lambda lam: (scores[lam], lam))
    return {"distance": distance, "chosen": best, "scores": scores, "budgets": budgets}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["sst5", "mnli"], choices=["sst5", "mnli"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument(
        "--budgets", nargs="+", default=None, help="fractions of all heads, or 'knee'"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="measure in reverse order: run a second process with the same options and "
        "--reverse to share the work (each skips what the other finished)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny subsets, one seed: checks the script works"
    )
    parser.add_argument(
        "--masked-only",
        action="store_true",
        help="the retraining-free view only (masked metrics and KL, no pruned fine-tunes)",
    )
    args = parse_args(parser)
    protocol = args.protocol
    seeds = args.seeds[:1] if args.smoke else args.seeds
    budgets = (
        SMOKE_BUDGETS
        if args.smoke
        else tuple(b if b == "knee" else float(b) for b in args.budgets)
        if args.budgets
        else BUDGETS[protocol]
    )
    methods = tuple(args.methods)
    proximity, references, records, lambda_choice = [], [], [], {}
    for task in args.tasks:  # one cache per task, so tasks can run in parallel processes
        name = run_name(task, protocol, args.smoke)
        cache = RecordCache(work_dir() / f"quality-{name}.jsonl")
        ctx, salience, signatures, distances = prepare(task, protocol, args.smoke, args.device)
        settings = SETTINGS[protocol][task]
        evaluator = Evaluator(ctx, eval_features(ctx, settings["eval_splits"], args.smoke))
        prune_train = 32 if args.smoke else settings["prune_train"]
        mmr_distances = sorted(
            {
                spec.get("distance", "jm")
                for m, spec in CAHP_METHODS.items()
                if m in methods and spec.get("rule") == "mmr"
            }
        )
        lambdas = {}
        for distance in mmr_distances:
            if task == LAMBDA_TASK:
                choice = choose_lambda(ctx, salience, signatures, distances, distance)
                lambda_choice[f"{protocol}/{distance}"] = choice
            choice = {
                **read_results("quality_meta", args.smoke, {}).get("mmr_lambda", {}),
                **lambda_choice,
            }.get(f"{protocol}/{distance}")
            if choice is None:
                raise SystemExit(
                    f"MMR's lambda is chosen on {LAMBDA_TASK}'s validation split: run "
                    f"--tasks {LAMBDA_TASK} with the same --protocol first"
                )
            lambdas[distance] = choice["chosen"]
        measurements = []
        for seed in seeds:
            selectors = seed_selectors(ctx, salience, signatures, distances, seed, methods, lambdas)
            # depth statistics at every budget of the protocol; measurements at ``budgets``
            every = budgets if args.smoke else BUDGETS[protocol]
            for key, keep in seed_maps(task, seed, selectors, salience, every, methods):
                key = {**key, "protocol": protocol}
                proximity.append({**key, **depth_stats(keep)})
                if key["method"] != "gradient-raw" and key["budget_frac"] in budgets:
                    selector = selectors.get(key["method"], selectors["cahp"])
                    measurements.append((key, keep, selector))
        # the paper's method and gradient first, for every seed and budget; the rest after
        # (--reverse: a second process works from the other end within each group)
        order = sorted(
            range(len(measurements)),
            key=lambda i: (
                measurements[i][0]["method"] not in ("cahp", "gradient"),
                -i if args.reverse else i,
            ),
        )
        measurements = [measurements[i] for i in order]
        for key, keep, selector in measurements:
            measure(ctx, key, keep, selector, evaluator, prune_train, not args.masked_only, cache)
        references += full_model_records(task, protocol, evaluator, int(salience.raw.size))
        cache.refresh()  # a --reverse partner may have finished measurements since
        records += [r for r in cache.records if r["seed"] in seeds]
    write_results(
        "proximity",
        merge_task_records("proximity", proximity, args.tasks, args.smoke, protocol),
        args.smoke,
    )
    quality = merge_task_records("quality", references + records, args.tasks, args.smoke, protocol)
    write_results("quality", quality, args.smoke)
    meta = {
        "machine": machine(),
        "settings": SETTINGS,
        "budgets": {p: list(b) for p, b in BUDGETS.items()},
        "seeds": seeds,
        "methods": CAHP_METHODS,
        "lambda_grid": list(LAMBDA_GRID),
        "mmr_lambda": {
            **read_results("quality_meta", args.smoke, {}).get("mmr_lambda", {}),
            **lambda_choice,
        },
    }
    write_results("quality_meta", meta, args.smoke)


if __name__ == "__main__":
    main()
