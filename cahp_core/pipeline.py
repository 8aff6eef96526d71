"""All CAHP stages end to end, cached in a run folder and resumable.

Stage order: finetune -> signatures -> salience -> distances -> clustering -> task_curve
-> selection (degree) -> graph -> export (prune, fine-tune once, evaluate, save).
Everything before ``selection`` is independent of the polynomial degree, so a new degree
re-uses it all (``cahp export RUN --degree D``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from transformers import set_seed

from . import run_format
from .atomic import (
    write_json_atomic,
)
from .baselines import gradient_selection, random_selection
from .choices import RULE_PARAMETER
from .clustering import (
    ClusteringResult,
    cluster_heads_seeds,
    clustering_seeds,
    clusterings_from_arrays,
    clusterings_to_arrays,
)
from .config import EXPORT_ONLY_FIELDS, RunConfig, check_seed_sweep
from .data import TaskData, load_task, subset, tokenize_records
from .distances import HeadDistances, head_distances
from .errors import CAHPError
from .graph import build_head_graph, graph_to_json
from .model_card import write_model_card
from .models import LoadedModel, count_parameters, load_model, save_model_folder
from .onnx_export import ONNX_FILE, export_onnx_report, int8_path_for, onnx_accuracy
from .proximity import depth_stats
from .pruning import remove_heads, save_pruned
from .run_format import (
    CLUSTERING,
    DIAGNOSTICS,
    DISTANCES,
    EXPORT_INFO,
    GRAPH,
    KEPT_HEADS_FILE,
    MANIFEST,
    MODEL,
    PRUNED,
    SALIENCE,
    SELECTION,
    SIGNATURES,
    SUMMARY,
    TASK_CURVE,
)
from .run_selection import fit_selector
from .runs import RunFolder, locked_folder
from .salience import Salience, gradient_salience
from .selection import CAHPSelector
from .signatures import HeadSignatures, compute_signatures
from .training import (
    FinetuneConfig,
    eval_batches,
    evaluate,
    finetune,
    logit_metrics,
    predict_logits,
)

log = logging.getLogger(__name__)

# (stage, fraction done in [0, 1], message) -> None; the CLI logs it, the dashboard draws it
Progress = Callable[[str, float, str], None]

STAGES = (  # in the order run_pipeline runs them
    "finetune",
    "salience",
    "signatures",
    "distances",
    "diagnostics",
    "clustering",
    "task_curve",
    "selection",
    "graph",
    "export",
)
EXPORT_STAGES = ("finetune", "export")  # `cahp export`: the full model first if missing
# stages that depend on the clustering: `cahp recluster` redoes them
RECLUSTER_STAGES = ("clustering", "task_curve", "selection", "graph", "export")
# share of a fine-tuning stage's progress bar that training fills (evaluation, saving and
# the ONNX export share the rest), so a stage's fraction never moves backwards
FINETUNE_SHARE = 0.85


def _no_progress(stage: str, fraction: float, message: str) -> None:
    pass


@dataclass
class RunContext:
    """A run folder with its configuration, data and (lazily) its fine-tuned model."""

    run: RunFolder
    config: RunConfig
    progress: Progress = _no_progress
    _model: LoadedModel | None = field(default=None, repr=False)

    @cached_property
    def task(self) -> TaskData:
        c = self.config
        return load_task(
            c.task,
            data_dir=c.data_dir,
            max_train=c.max_train,
            max_eval=c.max_eval,
            seed=c.seed,
            text_columns=c.text_columns,
            label_column=c.label_column,
            num_labels=c.num_labels,
        )

    @property
    def num_labels(self) -> int:
        return self.task.spec.num_labels

    @cached_property
    def tokenizer(self):
        from .models import load_tokenizer

        if self.run.is_done("finetune"):
            return load_tokenizer(MODEL.path(self.run.root))
        return load_tokenizer(self.config.model)

    def features(self, split: str) -> list[dict]:
        return self._features_cache(split)

    @cached_property
    def _feature_store(self) -> dict[str, list[dict]]:
        return {}

    def _features_cache(self, split: str) -> list[dict]:
        if split not in self._feature_store:
            if split not in self.task.splits:
                raise CAHPError(
                    f"split {split!r} not found for task {self.config.task!r}; "
                    f"available: {', '.join(self.task.splits)}"
                )
            self._feature_store[split] = tokenize_records(
                self.task.splits[split], self.tokenizer, self.task.spec, self.config.max_length
            )
        return self._feature_store[split]

    @property
    def train_features(self) -> list[dict]:
        return self.features(self.task.spec.train_split)

    @property
    def eval_features(self) -> list[dict]:
        return self.features(self.task.spec.eval_split)

    def finetuned(self) -> LoadedModel:
        """The fine-tuned full model (fine-tunes it first if this run has none yet)."""
        if self._model is None:
            ensure_finetuned(self)
            self._model = load_model(
                MODEL.path(self.run.root), self.num_labels, device=self.config.device
            )
        return self._model

    def stage_progress(
        self, stage: str, start: float = 0.0, end: float = 1.0
    ) -> Callable[[float, str], None]:
        """A ``(fraction, message)`` callback reporting ``stage`` within ``[start, end]``,
        for one step of a stage that has several (fine-tuning, then evaluating, ...)."""
        return lambda fraction, message: self.progress(
            stage, start + (end - start) * fraction, message
        )


# ---------------------------------------------------------------- stages (one job each)


def ensure_finetuned(ctx: RunContext) -> None:
    """Stage 1: fine-tune the base encoder on the task and save it as ``RUN/model``."""
    if ctx.run.is_done("finetune"):
        ctx.progress("finetune", 1.0, "reused from the run folder")
        return
    c = ctx.config
    with ctx.run.stage("finetune") as st:
        set_seed(c.seed)  # before loading: the new classifier's initialisation is seeded too
        loaded = load_model(
            c.model, ctx.num_labels, device=c.device, trust_remote_code=c.trust_remote_code
        )
        stats = finetune(
            loaded.model,
            loaded.tokenizer,
            ctx.train_features,
            FinetuneConfig(c.epochs, c.learning_rate, c.batch_size, seed=c.seed),
            device=c.device,
            progress=ctx.stage_progress("finetune", 0.0, FINETUNE_SHARE),
        )
        ctx.progress("finetune", FINETUNE_SHARE, "evaluating the fine-tuned model")
        metrics = evaluate(loaded.model, loaded.tokenizer, ctx.eval_features)
        ctx.progress("finetune", 0.98, "saving the model")
        save_model_folder(loaded, MODEL.path(ctx.run.root))
        st.add_artefact(MODEL.file)
        st.info.update(
            train=stats,
            accuracy=metrics["accuracy"],
            macro_f1=metrics["macro_f1"],
            n_eval=metrics["n"],
            params=count_parameters(loaded.model),
        )
    ctx._model = loaded


def signature_features(ctx: RunContext) -> list[dict]:
    """The training examples signatures are computed on (a seeded subset of
    ``signature_examples`` when set)."""
    c = ctx.config
    features = ctx.train_features
    if c.signature_examples is not None and c.signature_examples < len(features):
        rng = np.random.default_rng(c.seed)
        chosen = sorted(rng.choice(len(features), c.signature_examples, replace=False))
        features = [features[i] for i in chosen]
    return features


def signatures_stage(ctx: RunContext) -> HeadSignatures:
    """Stage 2: padding-aware per-class signatures of every head (eager attention)."""
    if ctx.run.is_done("signatures"):
        ctx.progress("signatures", 1.0, "reused from the run folder")
        return HeadSignatures.from_arrays(run_format.read(ctx.run.root, SIGNATURES))
    c = ctx.config
    features = signature_features(ctx)
    with ctx.run.stage("signatures") as st:
        loaded = ctx.finetuned()
        signatures = compute_signatures(
            loaded.model,
            loaded.tokenizer,
            features,
            ctx.num_labels,
            grid=c.grid,
            batch_size=c.batch_size,
            progress=ctx.stage_progress("signatures"),
        )
        run_format.write(ctx.run.root, SIGNATURES, signatures.to_arrays())
        st.add_artefact(SIGNATURES.file)
        st.info.update(examples=len(features), grid=c.grid)
    return signatures


def salience_stage(ctx: RunContext) -> Salience:
    """Stage 5 of the paper (computed early: cheap): |dLoss/dgate| on the first batches."""
    if ctx.run.is_done("salience"):
        ctx.progress("salience", 1.0, "reused from the run folder")
        return Salience.from_dict(run_format.read(ctx.run.root, SALIENCE))
    c = ctx.config
    with ctx.run.stage("salience") as st:
        loaded = ctx.finetuned()
        salience = gradient_salience(
            loaded.model,
            loaded.tokenizer,
            ctx.train_features,
            fraction=c.salience_fraction,
            batch_size=c.batch_size,
            seed=c.seed,
            progress=ctx.stage_progress("salience"),
        )
        run_format.write(ctx.run.root, SALIENCE, salience.to_dict())
        st.add_artefact(SALIENCE.file)
    return salience


def distances_stage(ctx: RunContext, signatures: HeadSignatures | None) -> HeadDistances:
    """Stage 3: information-theoretic head features and the head x head distance matrix."""
    if ctx.run.is_done("distances"):
        ctx.progress("distances", 1.0, "reused from the run folder")
        arrays = run_format.read(ctx.run.root, DISTANCES)
        return HeadDistances(ctx.config.distance, arrays["features"], arrays["distance"])
    with ctx.run.stage("distances") as st:
        signatures = signatures if signatures is not None else signatures_stage(ctx)
        ctx.progress("distances", 0.0, f"{ctx.config.distance} distances")
        distances = head_distances(signatures, method=ctx.config.distance)
        arrays = {"features": distances.features, "distance": distances.distance}
        run_format.write(ctx.run.root, DISTANCES, arrays)
        st.add_artefact(DISTANCES.file)
        st.info.update(method=ctx.config.distance, features=int(distances.features.shape[1]))
    ctx.progress("distances", 1.0, "done")
    return distances


def load_clusterings(run: RunFolder) -> list[ClusteringResult]:
    """The run's clusterings, one per seed; a CAHPError that says how to re-cluster a run
    clustered by an earlier version."""
    return clusterings_from_arrays(run_format.read(run.root, CLUSTERING), where=str(run.root))


DIAGNOSTIC_BUDGETS = (0.1, 0.2, 0.3)  # cluster counts compared: these shares of all heads
DIAGNOSTIC_SEEDS = 3  # the first clustering seeds used (t-SNE and k-medoids)


def diagnostics_stage(ctx: RunContext) -> dict:
    """Does CAHP's premise hold here? Split-half agreement of the clusterings and the JM
    distances' class signal (``diagnostics.py``), from one extra signature pass."""

    from .diagnostics import diagnose, diagnostic_classes
    from .signatures import compute_signature_sets

    if ctx.run.is_done("diagnostics"):
        ctx.progress("diagnostics", 1.0, "reused from the run folder")
        return run_format.read(ctx.run.root, DIAGNOSTICS)
    c = ctx.config
    features = signature_features(ctx)
    labels = np.array([f["labels"] for f in features], dtype=np.int64)  # [examples]
    with ctx.run.stage("diagnostics") as st:
        loaded = ctx.finetuned()
        ctx.progress("diagnostics", 0.0, "signatures of two halves and of shuffled labels")
        classes = {"all": labels, **diagnostic_classes(labels, c.seed)}
        sets = compute_signature_sets(
            loaded.model,
            loaded.tokenizer,
            features,
            ctx.num_labels,
            classes,
            grid=c.grid,
            batch_size=c.batch_size,
            progress=lambda f, m: ctx.progress("diagnostics", 0.8 * f, m),
        )
        ctx.progress("diagnostics", 0.8, "clustering both halves")
        n_heads = sets["all"].n_layers * sets["all"].n_heads
        ks = [max(2, round(b * n_heads)) for b in DIAGNOSTIC_BUDGETS]
        seeds = clustering_seeds(c.seed, min(c.n_seeds, DIAGNOSTIC_SEEDS))
        result = diagnose(sets, ks, seeds, perplexity=c.perplexity).to_dict()
        run_format.write(ctx.run.root, DIAGNOSTICS, result)
        st.add_artefact(DIAGNOSTICS.file)
    ctx.progress("diagnostics", 1.0, " ".join(result["warnings"]) or "the premise holds")
    return result


def diagnose_run(run_dir: str | Path, progress: Progress | None = None) -> dict:
    """The diagnostics of an existing run (computed once, then read from the run folder)."""
    ctx = load_context(run_dir, progress)
    with ctx.run.lock():
        return diagnostics_stage(ctx)


def clustering_options(config: RunConfig, distances: HeadDistances) -> dict:
    """``cluster_heads`` keyword arguments for a run's settings (all but the seed): the
    paper's t-SNE runs on the JM features."""
    return {
        "method": config.clustering,
        "perplexity": config.perplexity,
        "n_neighbors": config.graph_neighbors,
        "quality": config.quality,
        "features": distances.features if config.distance == "jm" else None,
    }


def clustering_stage(ctx: RunContext, distances: HeadDistances) -> list[ClusteringResult]:
    """Stage 4: cluster the heads for every k and every seed (t-SNE + k-medoids, or Louvain)."""
    if ctx.run.is_done("clustering"):
        ctx.progress("clustering", 1.0, "reused from the run folder")
        return load_clusterings(ctx.run)
    c = ctx.config
    seeds = clustering_seeds(c.seed, c.n_seeds)
    with ctx.run.stage("clustering") as st:
        ctx.progress("clustering", 0.0, f"{c.clustering} for every k, seed 1/{len(seeds)}")
        clusterings = cluster_heads_seeds(
            distances.distance,
            seeds,
            progress=lambda done, total: ctx.progress(
                "clustering", done / total, f"{done}/{total} seeds clustered"
            ),
            **clustering_options(c, distances),
        )
        run_format.write(ctx.run.root, CLUSTERING, clusterings_to_arrays(clusterings))
        st.add_artefact(CLUSTERING.file)
        ks = clusterings[0].ks
        st.info.update(
            method=c.clustering, quality=c.quality, seeds=seeds, ks=[int(ks[0]), int(ks[-1])]
        )
    ctx.progress("clustering", 1.0, "done")
    return clusterings


def curve_grid(ks: np.ndarray, points: int) -> list[int]:
    """``points`` cluster counts spread evenly over ``ks`` (always the two ends)."""
    idx = np.unique(np.round(np.linspace(0, len(ks) - 1, min(points, len(ks)))).astype(int))
    return [int(ks[i]) for i in idx]


def comparison_maps(
    clustering: ClusteringResult, salience: Salience, k: int, seed: int
) -> dict[str, np.ndarray]:
    """CAHP at k clusters and the gradient / random baselines at the same head budget."""
    from .selection import complementary_selection

    cahp = complementary_selection(
        clustering.labels_for(k), salience.normalised, *salience.normalised.shape
    )
    n = int(cahp.sum())
    n_layers, n_heads = cahp.shape
    return {
        "cahp": cahp,
        "gradient": gradient_selection(salience.raw, n),
        "random": random_selection(n_layers, n_heads, n, seed),
    }


def task_curve_stage(
    ctx: RunContext, clusterings: list[ClusteringResult], salience: Salience
) -> list[dict]:
    """Masked validation accuracy (no fine-tuning) of CAHP, gradient and random for a k grid.

    CAHP's maps come from the first seed's clustering (one measured curve per run; its
    knee is applied to every seed's clustering)."""
    if ctx.run.is_done("task_curve"):
        ctx.progress("task_curve", 1.0, "reused from the run folder")
        return run_format.read(ctx.run.root, TASK_CURVE)
    c = ctx.config
    clustering = clusterings[0]
    grid = curve_grid(clustering.ks, c.curve_points)
    with ctx.run.stage("task_curve") as st:
        loaded = ctx.finetuned()
        batches = eval_batches(loaded.tokenizer, ctx.eval_features)  # collated once for every map
        full_logits = predict_logits(loaded.model, loaded.tokenizer, batches)  # [n, labels]
        full = logit_metrics(batches.labels, full_logits, full_logits)  # kl 0
        n_total = int(salience.raw.size)
        records = [
            {"k": None, "heads_kept": n_total, "method": m, **_metrics(full)}
            for m in ("cahp", "gradient", "random")
        ]
        for step, k in enumerate(grid):
            ctx.progress("task_curve", step / len(grid), f"masked accuracy at k={k}")
            for method, keep in comparison_maps(clustering, salience, k, c.seed).items():
                metrics = evaluate(
                    loaded.model,
                    loaded.tokenizer,
                    batches,
                    keep=keep,
                    reference_logits=full_logits,
                )
                records.append(
                    {"k": k, "heads_kept": int(keep.sum()), "method": method, **_metrics(metrics)}
                )
        run_format.write(ctx.run.root, TASK_CURVE, records)
        st.add_artefact(TASK_CURVE.file)
    ctx.progress("task_curve", 1.0, "done")
    return records


def _metrics(m: dict) -> dict:
    """accuracy, macro-F1, n and (masked maps) the KL divergence from the full model."""
    return {k: m[k] for k in ("accuracy", "macro_f1", "kl", "n") if k in m}


def _knee_summary(result) -> dict | None:
    if result is None:
        return None
    return {"knee": int(result.knee), "fallback": bool(result.fallback), "reason": result.reason}


def rule_summary(selector: CAHPSelector) -> dict:
    """The selection rule and the one parameter it uses (none for the paper's rule)."""
    name = RULE_PARAMETER.get(selector.rule)
    return {"name": selector.rule, **({name: float(getattr(selector, name))} if name else {})}


def export_command(
    run_dir: str | Path,
    record: dict,
    out_dir: str | Path,
    *,
    onnx: bool = False,
    quantize: str | None = None,
) -> str:
    """The ``cahp export`` command that writes this selection again (for model cards)."""
    import shlex

    rule = record["rule"]
    words = ["cahp", "export", str(run_dir), "--degree", str(record["degree"])]
    words += ["--knee-curve", record["knee_curve"]]
    if rule["name"] != "complementary":
        words += ["--rule", rule["name"]]
        words += [f"--{k.replace('_', '-')}={v:g}" for k, v in rule.items() if k != "name"]
    words += ["--out", str(out_dir)] + (["--onnx"] if onnx else [])
    words += ["--quantize", quantize] if quantize else []
    return shlex.join(words)


def selection_extra(record: dict, command: str) -> dict:
    """What an exported folder records about the selection it holds."""
    keys = ("degree", "knee_curve", "rule", "knee", "consensus_seed", "heads_by_seed")
    return {**{k: record[k] for k in keys}, "command": command}


def selection_record(selector: CAHPSelector) -> dict:
    """What selection.json holds for one degree and knee curve."""
    keep = selector.support_
    return {
        "degree": int(selector.degree),
        "knee_curve": selector.knee_curve,
        "rule": rule_summary(selector),
        "knee": int(selector.knee_),
        "knee_fallback": bool(selector.knee_result_.fallback),
        "knee_reason": selector.knee_result_.reason,
        "quality": selector.quality,
        "quality_knee": _knee_summary(selector.quality_knee_result_),
        "performance_knee": _knee_summary(selector.performance_knee_result_),
        "seeds": selector.seeds_,
        "consensus_seed": int(selector.consensus_seed_),
        "knee_by_seed": {str(s): k for s, k in selector.knee_by_seed_.items()},
        "heads_by_seed": {str(s): n for s, n in selector.heads_by_seed_.items()},
        "knee_spread": selector.knee_spread_,
        "heads_total": int(keep.size),
        "heads_kept": int(keep.sum()),
        "kept": keep.astype(int).tolist(),
        "kept_per_layer": [int(n) for n in keep.sum(axis=1)],
        "labels": [int(x) for x in selector.labels_],
        "depth": depth_stats(keep),
    }


def selection_stage(
    ctx: RunContext,
    clusterings: list[ClusteringResult],
    salience: Salience,
    task_curve: list[dict],
    distances: HeadDistances,
) -> dict:
    """Stage 6-7: knee of the fitted curve for this degree and the complementary selection
    (every seed, then their consensus)."""
    selector = fit_selector(
        ctx.config, clusterings, salience, task_curve=task_curve, distance=distances.distance
    )
    record = selection_record(selector)
    with ctx.run.stage("selection") as st:
        run_format.write(ctx.run.root, SELECTION, record)
        st.add_artefact(SELECTION.file)
        st.info.update(degree=record["degree"], knee=record["knee"])
    ctx.progress("selection", 1.0, f"knee k={record['knee']}, {record['heads_kept']} heads kept")
    return record


def graph_stage(
    ctx: RunContext, distances: HeadDistances, salience: Salience, record: dict
) -> None:
    """The global head graph (all heads of all layers) with cluster and kept marks."""
    keep = np.asarray(record["kept"], dtype=bool)
    graph = build_head_graph(
        distances.distance,
        keep.shape[0],
        keep.shape[1],
        n_neighbors=ctx.config.graph_neighbors,
        salience=salience.normalised,
        labels=np.asarray(record["labels"]),
        keep=keep,
    )
    with ctx.run.stage("graph") as st:
        run_format.write(ctx.run.root, GRAPH, graph_to_json(graph))
        st.add_artefact(GRAPH.file)


def prune_finetune(
    ctx: RunContext,
    keep: np.ndarray,
    *,
    stage: str = "export",
    masked_accuracy: bool = True,
    seed: int | None = None,
    max_train: int | None = None,
) -> tuple[LoadedModel, dict | None]:
    """Prune a copy of the fine-tuned model to ``keep`` and fine-tune it once.

    Returns the pruned model and the masked accuracy of the full model before fine-tuning
    (None if ``masked_accuracy`` is False). The cached full model is never mutated.
    ``seed`` and ``max_train`` (a seeded subset of the training split) default to the run's.
    """
    c = ctx.config
    seed = c.seed if seed is None else seed
    full = ctx.finetuned()
    ctx.progress(stage, 0.0, f"pruning to {int(keep.sum())} of {keep.size} heads")
    masked = None
    if masked_accuracy:
        ctx.progress(stage, 0.0, "accuracy of the masked full model")
        masked = evaluate(full.model, full.tokenizer, ctx.eval_features, keep=keep)
    pruned = LoadedModel(remove_heads(copy.deepcopy(full.model), keep), full.tokenizer, "pruned")
    torch.manual_seed(seed)
    finetune(
        pruned.model,
        pruned.tokenizer,
        subset(ctx.train_features, max_train, seed),
        FinetuneConfig(c.prune_epochs, c.learning_rate, c.batch_size, seed=seed),
        device=c.device,
        progress=ctx.stage_progress(stage, 0.05, FINETUNE_SHARE),
    )
    return pruned, masked


def export_selection(
    ctx: RunContext,
    keep: np.ndarray,
    out_dir: str | Path,
    *,
    onnx: bool = False,
    quantize: str | None = None,
    stage: str = "export",
    extra: dict | None = None,
) -> dict:
    """Physically prune, fine-tune once, evaluate and save a deployment-ready folder.

    ``onnx`` adds the fused ONNX graph, ``quantize="int8"`` (implies ``onnx``) its dynamic
    int8 version, whose accuracy is measured on the evaluation split; on a CPU run, the
    batch-1 latency of the full and pruned models is measured for the model card.

    Everything (weights, ONNX, model card, ``cahp_export.json``) is written into a staging
    folder that appears under ``out_dir`` only when complete: an interrupted or cancelled
    export leaves no half-written folder."""
    pruned, masked = prune_finetune(ctx, keep, stage=stage)
    ctx.progress(stage, FINETUNE_SHARE, "evaluating the pruned model")
    after = evaluate(pruned.model, pruned.tokenizer, ctx.eval_features)
    finetuned = ctx.run.stage_info("finetune")
    info = {
        "model": ctx.config.model,
        "task": ctx.config.task,
        "eval_split": ctx.task.spec.eval_split,
        "heads_total": int(keep.size),
        "heads_kept": int(keep.sum()),
        "kept_per_layer": [int(n) for n in keep.sum(axis=1)],
        "accuracy_full": finetuned.get("accuracy"),
        "macro_f1_full": finetuned.get("macro_f1"),
        "accuracy_masked": masked["accuracy"],
        "macro_f1_masked": masked["macro_f1"],
        "accuracy_pruned": after["accuracy"],
        "macro_f1_pruned": after["macro_f1"],
        "n_eval": after["n"],
        "params_full": count_parameters(ctx.finetuned().model),
        "params_pruned": count_parameters(pruned.model),
        "size_full_bytes": _weights_bytes(MODEL.path(ctx.run.root)),
        **(extra or {}),
    }

    def complete(folder: Path, head_map: dict) -> None:
        if onnx or quantize:
            info.update(_onnx_files(ctx, pruned, folder, quantize, stage))
        if next(pruned.model.parameters()).device.type == "cpu":  # beside ONNX on the CPU
            ctx.progress(stage, 0.96, "timing the full and the pruned model")
            info["latency_ms"] = _card_latency(ctx, pruned, folder)
        ctx.progress(stage, 0.98, "writing the model card")
        info["size_pruned_bytes"] = _weights_bytes(folder)
        head_map["cahp"] = info
        write_json_atomic(folder / KEPT_HEADS_FILE, head_map)
        write_model_card(folder, head_map)
        write_json_atomic(folder / EXPORT_INFO, info)

    save_pruned(pruned, keep, out_dir, extra={"cahp": info}, complete=complete)
    ctx.progress(stage, 1.0, f"accuracy after fine-tuning {after['accuracy']:.3f}")
    return info


def _onnx_files(
    ctx: RunContext, pruned: LoadedModel, folder: Path, quantize: str | None, stage: str
) -> dict:
    """Write the fused ONNX graph (and its int8 version) into ``folder``; what the export
    records about them, the int8 graph's accuracy included."""
    ctx.progress(stage, 0.9, "exporting ONNX" + (" and its int8 version" if quantize else ""))
    report = export_onnx_report(
        pruned.model, pruned.tokenizer, folder / ONNX_FILE, quantize=quantize
    )
    out = {"onnx": report.to_dict()}
    if report.int8_path is not None:
        ctx.progress(stage, 0.93, "accuracy of the int8 graph")
        pad_id = pruned.tokenizer.pad_token_id or 0
        int8 = onnx_accuracy(report.int8_path, ctx.eval_features, pad_id=pad_id)
        out.update(accuracy_int8=int8["accuracy"], macro_f1_int8=int8["macro_f1"])
    return out


def _card_latency(ctx: RunContext, pruned: LoadedModel, folder: Path) -> dict:
    """Batch-1 latency on this machine of the full and pruned models (PyTorch and the ONNX
    graphs in ``folder``), for the model card."""
    from .latency import export_latency_ms

    graphs = {"pruned_fp32": folder / ONNX_FILE, "pruned_int8": int8_path_for(folder / ONNX_FILE)}
    column = ctx.task.spec.text_columns[0]  # the first text of a pair is enough for timing
    texts = [str(r[column]) for r in ctx.task.splits[ctx.task.spec.eval_split][:8]]
    models = {"full": ctx.finetuned().model.eval(), "pruned": pruned.model.eval()}
    return export_latency_ms(
        models,
        {k: v for k, v in graphs.items() if v.is_file()},
        pruned.tokenizer,
        texts or ["a short example sentence"],
    )


def _weights_bytes(folder: Path) -> int | None:
    """Total size of the safetensors weights in ``folder`` (None if it holds none)."""
    files = list(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    return sum(f.stat().st_size for f in files) if files else None


def export_stage(ctx: RunContext, record: dict) -> dict:
    """Stage 8: the pruned, once fine-tuned model of this degree in ``RUN/pruned``."""
    import json

    done = ctx.run.stage_info("export") if ctx.run.is_done("export") else {}
    same_files = (done.get("onnx"), done.get("quantize")) == (ctx.config.onnx, ctx.config.quantize)
    if done.get("kept") == record["kept"] and same_files:  # the exported folder still holds
        ctx.progress("export", 1.0, "reused from the run folder")
        return json.loads((PRUNED.path(ctx.run.root) / EXPORT_INFO).read_text())
    with ctx.run.stage("export") as st:
        keep = np.asarray(record["kept"], dtype=bool)
        info = export_selection(
            ctx,
            keep,
            PRUNED.path(ctx.run.root),
            onnx=ctx.config.onnx,
            quantize=ctx.config.quantize,
            extra=selection_extra(
                record,
                export_command(
                    ctx.run.root,
                    record,
                    PRUNED.path(ctx.run.root),
                    onnx=bool(ctx.config.onnx),
                    quantize=ctx.config.quantize,
                ),
            ),
        )
        st.add_artefact(PRUNED.file)
        st.info.update(
            degree=record["degree"],
            knee_curve=record["knee_curve"],
            kept=record["kept"],
            onnx=ctx.config.onnx,
            quantize=ctx.config.quantize,
        )
    return info


# ---------------------------------------------------------------- the whole pipeline


@contextmanager
def open_context(
    run_dir: str | Path,
    config: RunConfig,
    progress: Progress | None = None,
    *,
    recluster: bool = False,
    timeout: float = 0,
) -> Iterator[RunContext]:
    """Lock the run folder, then create or resume the run in it; the lock is held while the
    context is open. ``recluster`` adopts an earlier version's run (its clustering options
    are replaced by ``config``'s). Nothing in the folder is written before the lock is held,
    so a refused second writer ("in use") changes no file."""
    path = Path(run_dir)
    with locked_folder(path, timeout) as lock:
        if recluster:
            run = RunFolder.open(path)
            run.manifest["config"] = {**run.config, **config.to_dict()}
            run.save()
        elif MANIFEST.exists(path):
            run = RunFolder.open(path)
            check_seed_sweep(run.config, str(run.root))
        run = RunFolder.create(path, config.to_dict(), ignore=EXPORT_ONLY_FIELDS)
        run.adopt_lock(lock)
        yield RunContext(run, config, progress or _no_progress)


def load_context(run_dir: str | Path, progress: Progress | None = None, **overrides) -> RunContext:
    """Re-open an existing run with its own configuration (plus export-only overrides)."""
    run = RunFolder.open(Path(run_dir))
    config = replace(RunConfig.from_dict(run.config), **overrides).validate()
    return RunContext(run, config, progress or _no_progress)


def run_pipeline(
    config: RunConfig,
    run_dir: str | Path,
    progress: Progress | None = None,
    *,
    recluster: bool = False,
) -> dict:
    """Run (or resume) every stage and write ``RUN/summary.json``; returns the summary.

    ``recluster`` redoes the clustering and every stage after it (``RECLUSTER_STAGES``),
    reusing the fine-tuned model, signatures, salience and distances."""
    config = config.validate()
    with open_context(run_dir, config, progress, recluster=recluster) as ctx:
        if recluster:
            for stage in RECLUSTER_STAGES:
                ctx.run.invalidate(stage)
        start = time.perf_counter()
        ensure_finetuned(ctx)
        salience = salience_stage(ctx)
        if ctx.run.is_done("distances"):  # distances hold all later stages need
            ctx.progress("signatures", 1.0, "reused from the run folder")
            signatures = None
        else:
            signatures = signatures_stage(ctx)
        distances = distances_stage(ctx, signatures)
        diagnostics = diagnostics_stage(ctx)
        clusterings = clustering_stage(ctx, distances)
        task_curve = task_curve_stage(ctx, clusterings, salience)
        record = selection_stage(ctx, clusterings, salience, task_curve, distances)
        graph_stage(ctx, distances, salience, record)
        exported = export_stage(ctx, record)
        summary = write_summary(
            ctx, record, exported, time.perf_counter() - start, diagnostics["warnings"]
        )
    return summary


def write_summary(
    ctx: RunContext, record: dict, exported: dict, seconds: float, warnings: list[str]
) -> dict:
    finetune_info = ctx.run.stage_info("finetune")
    summary = {
        "model": ctx.config.model,
        "task": ctx.config.task,
        "preset": ctx.config.preset,
        "heads_total": record["heads_total"],
        "heads_kept": record["heads_kept"],
        "kept_per_layer": record["kept_per_layer"],
        "knee": record["knee"],
        "degree": record["degree"],
        "knee_curve": record["knee_curve"],
        "rule": record["rule"],
        "knee_fallback": record["knee_fallback"],
        "knee_reason": record["knee_reason"],
        "quality_knee": record["quality_knee"],
        "performance_knee": record["performance_knee"],
        "quality": record["quality"],
        "seeds": record["seeds"],
        "consensus_seed": record["consensus_seed"],
        "knee_by_seed": record["knee_by_seed"],
        "heads_by_seed": record["heads_by_seed"],
        "knee_spread": record["knee_spread"],
        "clustering": ctx.config.clustering,
        "distance": ctx.config.distance,
        "accuracy_full": finetune_info["accuracy"],
        "macro_f1_full": finetune_info["macro_f1"],
        "accuracy_masked": exported["accuracy_masked"],
        "accuracy_pruned": exported["accuracy_pruned"],
        "macro_f1_pruned": exported["macro_f1_pruned"],
        "eval_split": ctx.task.spec.eval_split,
        "n_eval": exported["n_eval"],
        "params_full": exported["params_full"],
        "params_pruned": exported["params_pruned"],
        "depth": record["depth"],
        "diagnostic_warnings": warnings,
        "stage_seconds": ctx.run.stage_seconds(),
        "total_seconds": seconds,
    }
    run_format.write(ctx.run.root, SUMMARY, summary)
    return summary


def recluster_run(
    run_dir: str | Path,
    progress: Progress | None = None,
    **overrides,
) -> dict:
    """Re-cluster a run (e.g. one made by an earlier version) with the current method and
    redo every later stage; ``overrides`` (``n_seeds``, ``quality``, ``degree``, ...) change
    its configuration. The fine-tuned model, signatures, salience and distances are kept."""
    run = RunFolder.open(Path(run_dir))
    for stage in ("finetune", "salience", "distances"):
        if not run.is_done(stage):
            raise CAHPError(
                f"run {run_dir} has no finished {stage} stage to keep; finish it with "
                "`cahp run` (same options) instead"
            )
    given = {k: v for k, v in overrides.items() if v is not None}
    config = replace(RunConfig.from_dict(run.config), **given).validate()
    return run_pipeline(config, run_dir, progress, recluster=True)


def load_selection_inputs(
    ctx: RunContext,
) -> tuple[list[ClusteringResult], Salience, list[dict], np.ndarray | None]:
    """The cached clusterings, salience, task curve and head distances ``[N, N]`` (None if
    the run has none) a selection is fitted from."""
    for stage in ("salience", "clustering"):
        if not ctx.run.is_done(stage):
            raise CAHPError(
                f"run {ctx.run.root} has no finished {stage} stage; finish it with `cahp run` first"
            )
    check_seed_sweep(ctx.run.config, str(ctx.run.root))
    salience = Salience.from_dict(run_format.read(ctx.run.root, SALIENCE))
    clusterings = load_clusterings(ctx.run)
    task_curve = run_format.read(ctx.run.root, TASK_CURVE) if ctx.run.is_done("task_curve") else []
    distances = run_format.read(ctx.run.root, DISTANCES, missing_ok=True)
    distance = None if distances is None else distances["distance"]
    return clusterings, salience, task_curve, distance


def export_with_degree(
    run_dir: str | Path,
    degree: int,
    out_dir: str | Path,
    *,
    knee_curve: str | None = None,
    rule: str | None = None,
    radius_quantile: float | None = None,
    mmr_lambda: float | None = None,
    onnx: bool = False,
    quantize: str | None = None,
    progress: Progress | None = None,
    announce: Callable[[dict], None] | None = None,
    model: LoadedModel | None = None,
) -> dict:
    """Re-select with another degree (and knee curve, selection rule) from the cached stages,
    prune, fine-tune once, save. The selection is the one ``fit_selector`` gives every page."""
    given = {
        "knee_curve": knee_curve,
        "quantize": quantize,  # validated before any work
        "rule": rule,
        "radius_quantile": radius_quantile,
        "mmr_lambda": mmr_lambda,
    }
    overrides = {"degree": degree, **{k: v for k, v in given.items() if v is not None}}
    ctx = load_context(run_dir, progress, **overrides)
    ctx._model = model  # a caller's cached fine-tuned model: only ever deep-copied, never changed
    with ctx.run.lock():  # first: a second export of this run is refused before any work
        clusterings, salience, task_curve, distance = load_selection_inputs(ctx)
        selector = fit_selector(
            ctx.config, clusterings, salience, task_curve=task_curve, distance=distance
        )
        record = selection_record(selector)
        if announce:
            announce(record)
        info = export_selection(
            ctx,
            selector.support_,
            out_dir,
            onnx=onnx,
            quantize=quantize,
            extra=selection_extra(
                record, export_command(run_dir, record, out_dir, onnx=onnx, quantize=quantize)
            ),
        )
    return {**record, **info}
