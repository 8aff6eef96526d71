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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from transformers import set_seed

from .atomic import (
    load_npz,
    load_safetensors_numpy,
    write_json_atomic,
    write_npz_atomic,
    write_safetensors_atomic,
)
from .baselines import gradient_selection, random_selection
from .clustering import ClusteringResult, cluster_heads
from .config import EXPORT_ONLY_FIELDS, RunConfig
from .data import TaskData, load_task, subset, tokenize_records
from .distances import HeadDistances, head_distances
from .errors import CAHPError
from .graph import build_head_graph, graph_to_json
from .models import LoadedModel, count_parameters, load_model
from .onnx_export import ONNX_FILE, export_onnx
from .proximity import depth_stats
from .pruning import remove_heads, save_pruned
from .runs import RunFolder
from .salience import Salience, gradient_salience
from .selection import CAHPSelector
from .signatures import HeadSignatures, compute_signatures
from .training import FinetuneConfig, evaluate, finetune

log = logging.getLogger(__name__)

# (stage, fraction done in [0, 1], message) -> None; the CLI logs it, the dashboard draws it
Progress = Callable[[str, float, str], None]

STAGES = (
    "finetune",
    "signatures",
    "salience",
    "distances",
    "clustering",
    "task_curve",
    "selection",
    "graph",
    "export",
)
MODEL_DIR, PRUNED_DIR = "model", "pruned"
EXPORT_INFO = "cahp_export.json"


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
            return load_tokenizer(self.run.path(MODEL_DIR))
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
                self.run.path(MODEL_DIR), self.num_labels, device=self.config.device
            )
        return self._model

    def stage_progress(self, stage: str) -> Callable[[float, str], None]:
        return lambda fraction, message: self.progress(stage, fraction, message)


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
            progress=ctx.stage_progress("finetune"),
        )
        metrics = evaluate(loaded.model, loaded.tokenizer, ctx.eval_features)
        _save_model_folder(loaded, ctx.run.path(MODEL_DIR))
        st.add_artefact(MODEL_DIR)
        st.info.update(
            train=stats,
            accuracy=metrics["accuracy"],
            macro_f1=metrics["macro_f1"],
            n_eval=metrics["n"],
            params=count_parameters(loaded.model),
        )
    ctx._model = loaded


def _save_model_folder(loaded: LoadedModel, out: Path) -> None:
    """Save a full (unpruned) model folder atomically."""
    import shutil
    import tempfile

    from .atomic import replace_dir_atomic

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        replace_dir_atomic(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def signatures_stage(ctx: RunContext) -> HeadSignatures:
    """Stage 2: padding-aware per-class signatures of every head (eager attention)."""
    name = "signatures.safetensors"
    if ctx.run.is_done("signatures"):
        ctx.progress("signatures", 1.0, "reused from the run folder")
        return HeadSignatures.from_arrays(load_safetensors_numpy(ctx.run.path(name)))
    c = ctx.config
    features = ctx.train_features
    if c.signature_examples is not None and c.signature_examples < len(features):
        rng = np.random.default_rng(c.seed)
        features = [
            features[i]
            for i in sorted(rng.choice(len(features), c.signature_examples, replace=False))
        ]
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
        write_safetensors_atomic(ctx.run.path(name), signatures.to_arrays())
        st.add_artefact(name)
        st.info.update(examples=len(features), grid=c.grid)
    return signatures


def salience_stage(ctx: RunContext) -> Salience:
    """Stage 5 of the paper (computed early: cheap): |dLoss/dgate| on the first batches."""
    import json

    name = "salience.json"
    if ctx.run.is_done("salience"):
        ctx.progress("salience", 1.0, "reused from the run folder")
        return Salience.from_dict(json.loads(ctx.run.path(name).read_text()))
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
        write_json_atomic(ctx.run.path(name), salience.to_dict())
        st.add_artefact(name)
    return salience


def distances_stage(ctx: RunContext, signatures: HeadSignatures | None) -> HeadDistances:
    """Stage 3: information-theoretic head features and the head x head distance matrix."""
    name = "distances.npz"
    if ctx.run.is_done("distances"):
        ctx.progress("distances", 1.0, "reused from the run folder")
        arrays = load_npz(ctx.run.path(name))
        return HeadDistances(ctx.config.distance, arrays["features"], arrays["distance"])
    with ctx.run.stage("distances") as st:
        signatures = signatures if signatures is not None else signatures_stage(ctx)
        ctx.progress("distances", 0.0, f"{ctx.config.distance} distances")
        distances = head_distances(signatures, method=ctx.config.distance)
        write_npz_atomic(
            ctx.run.path(name), features=distances.features, distance=distances.distance
        )
        st.add_artefact(name)
        st.info.update(method=ctx.config.distance, features=int(distances.features.shape[1]))
    ctx.progress("distances", 1.0, "done")
    return distances


def clustering_stage(ctx: RunContext, distances: HeadDistances) -> ClusteringResult:
    """Stage 4: cluster the heads for every k (t-SNE + k-medoids, or Louvain on the graph)."""
    name = "clustering.npz"
    if ctx.run.is_done("clustering"):
        ctx.progress("clustering", 1.0, "reused from the run folder")
        return ClusteringResult.from_arrays(load_npz(ctx.run.path(name)))
    c = ctx.config
    with ctx.run.stage("clustering") as st:
        ctx.progress("clustering", 0.0, f"{c.clustering} for every k")
        clustering = cluster_heads(
            distances.distance,
            method=c.clustering,
            perplexity=c.perplexity,
            seed=c.seed,
            n_neighbors=c.graph_neighbors,
        )
        write_npz_atomic(ctx.run.path(name), **clustering.to_arrays())
        st.add_artefact(name)
        st.info.update(method=c.clustering, ks=[int(clustering.ks[0]), int(clustering.ks[-1])])
    ctx.progress("clustering", 1.0, "done")
    return clustering


def make_selector(config: RunConfig, degree: int | None = None) -> CAHPSelector:
    return CAHPSelector(
        degree=config.degree if degree is None else degree,
        clustering=config.clustering,
        distance=config.distance,
        perplexity=config.perplexity,
        seed=config.seed,
        n_neighbors=config.graph_neighbors,
    )


def fit_selector(
    config: RunConfig, clustering: ClusteringResult, salience: Salience, degree: int | None = None
) -> CAHPSelector:
    """A fitted selector from cached clustering + salience: no signature or clustering pass."""
    n_layers, n_heads = salience.normalised.shape
    return make_selector(config, degree).fit_from_clustering(
        clustering, salience.normalised, n_layers, n_heads
    )


def curve_grid(ks: np.ndarray, points: int) -> list[int]:
    """``points`` cluster counts spread evenly over ``ks`` (always the two ends)."""
    idx = np.unique(np.round(np.linspace(0, len(ks) - 1, min(points, len(ks)))).astype(int))
    return [int(ks[i]) for i in idx]


def comparison_maps(
    selector: CAHPSelector, salience: Salience, k: int, seed: int
) -> dict[str, np.ndarray]:
    """CAHP at k clusters and the gradient / random baselines at the same head budget."""
    cahp = selector.select(k)
    n = int(cahp.sum())
    n_layers, n_heads = cahp.shape
    return {
        "cahp": cahp,
        "gradient": gradient_selection(salience.raw, n),
        "random": random_selection(n_layers, n_heads, n, seed),
    }


def task_curve_stage(
    ctx: RunContext, clustering: ClusteringResult, salience: Salience
) -> list[dict]:
    """Masked validation accuracy (no fine-tuning) of CAHP, gradient and random for a k grid."""
    import json

    name = "task_curve.json"
    if ctx.run.is_done("task_curve"):
        ctx.progress("task_curve", 1.0, "reused from the run folder")
        return json.loads(ctx.run.path(name).read_text())
    c = ctx.config
    selector = fit_selector(c, clustering, salience)
    grid = curve_grid(clustering.ks, c.curve_points)
    with ctx.run.stage("task_curve") as st:
        loaded = ctx.finetuned()
        features = ctx.eval_features
        full = evaluate(loaded.model, loaded.tokenizer, features)
        n_total = int(salience.raw.size)
        records = [
            {"k": None, "heads_kept": n_total, "method": m, **_metrics(full)}
            for m in ("cahp", "gradient", "random")
        ]
        for step, k in enumerate(grid):
            ctx.progress("task_curve", step / len(grid), f"masked accuracy at k={k}")
            for method, keep in comparison_maps(selector, salience, k, c.seed).items():
                metrics = evaluate(loaded.model, loaded.tokenizer, features, keep=keep)
                records.append(
                    {"k": k, "heads_kept": int(keep.sum()), "method": method, **_metrics(metrics)}
                )
        write_json_atomic(ctx.run.path(name), records)
        st.add_artefact(name)
    ctx.progress("task_curve", 1.0, "done")
    return records


def _metrics(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]}


def selection_record(selector: CAHPSelector) -> dict:
    """What selection.json holds for one degree."""
    keep = selector.support_
    return {
        "degree": int(selector.degree),
        "knee": int(selector.knee_),
        "knee_fallback": bool(selector.knee_result_.fallback),
        "knee_reason": selector.knee_result_.reason,
        "heads_total": int(keep.size),
        "heads_kept": int(keep.sum()),
        "kept": keep.astype(int).tolist(),
        "kept_per_layer": [int(n) for n in keep.sum(axis=1)],
        "labels": [int(x) for x in selector.labels_],
        "depth": depth_stats(keep),
    }


def selection_stage(ctx: RunContext, clustering: ClusteringResult, salience: Salience) -> dict:
    """Stage 6-7: knee of the fitted curve for this degree and the complementary selection."""
    selector = fit_selector(ctx.config, clustering, salience)
    record = selection_record(selector)
    with ctx.run.stage("selection") as st:
        write_json_atomic(ctx.run.path("selection.json"), record)
        st.add_artefact("selection.json")
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
        write_json_atomic(ctx.run.path("graph.json"), graph_to_json(graph))
        st.add_artefact("graph.json")


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
        masked = evaluate(full.model, full.tokenizer, ctx.eval_features, keep=keep)
    pruned = LoadedModel(remove_heads(copy.deepcopy(full.model), keep), full.tokenizer, "pruned")
    torch.manual_seed(seed)
    finetune(
        pruned.model,
        pruned.tokenizer,
        subset(ctx.train_features, max_train, seed),
        FinetuneConfig(c.prune_epochs, c.learning_rate, c.batch_size, seed=seed),
        device=c.device,
        progress=ctx.stage_progress(stage),
    )
    return pruned, masked


def export_selection(
    ctx: RunContext,
    keep: np.ndarray,
    out_dir: str | Path,
    *,
    onnx: bool = False,
    stage: str = "export",
    extra: dict | None = None,
) -> dict:
    """Physically prune, fine-tune once, evaluate and save a deployment-ready folder."""
    pruned, masked = prune_finetune(ctx, keep, stage=stage)
    after = evaluate(pruned.model, pruned.tokenizer, ctx.eval_features)
    info = {
        "heads_total": int(keep.size),
        "heads_kept": int(keep.sum()),
        "kept_per_layer": [int(n) for n in keep.sum(axis=1)],
        "accuracy_masked": masked["accuracy"],
        "macro_f1_masked": masked["macro_f1"],
        "accuracy_pruned": after["accuracy"],
        "macro_f1_pruned": after["macro_f1"],
        "n_eval": after["n"],
        "params_full": count_parameters(ctx.finetuned().model),
        "params_pruned": count_parameters(pruned.model),
        **(extra or {}),
    }
    out = save_pruned(pruned, keep, out_dir, extra={"cahp": info})
    if onnx:
        ctx.progress(stage, 0.95, "exporting ONNX")
        export_onnx(pruned.model, pruned.tokenizer, out / ONNX_FILE)
    write_json_atomic(out / EXPORT_INFO, info)
    ctx.progress(stage, 1.0, f"accuracy after fine-tuning {after['accuracy']:.3f}")
    return info


def export_stage(ctx: RunContext, record: dict) -> dict:
    """Stage 8: the pruned, once fine-tuned model of this degree in ``RUN/pruned``."""
    import json

    if ctx.run.is_done("export") and ctx.run.stage_info("export").get("degree") == record["degree"]:
        ctx.progress("export", 1.0, "reused from the run folder")
        return json.loads(ctx.run.path(PRUNED_DIR, EXPORT_INFO).read_text())
    with ctx.run.stage("export") as st:
        keep = np.asarray(record["kept"], dtype=bool)
        info = export_selection(
            ctx,
            keep,
            ctx.run.path(PRUNED_DIR),
            onnx=ctx.config.onnx,
            extra={"degree": record["degree"]},
        )
        st.add_artefact(PRUNED_DIR)
        st.info.update(degree=record["degree"])
    return info


# ---------------------------------------------------------------- the whole pipeline


def open_context(
    run_dir: str | Path, config: RunConfig, progress: Progress | None = None
) -> RunContext:
    run = RunFolder.create(Path(run_dir), config.to_dict(), ignore=EXPORT_ONLY_FIELDS)
    return RunContext(run, config, progress or _no_progress)


def load_context(run_dir: str | Path, progress: Progress | None = None, **overrides) -> RunContext:
    """Re-open an existing run with its own configuration (plus export-only overrides)."""
    run = RunFolder.open(Path(run_dir))
    config = replace(RunConfig.from_dict(run.config), **overrides).validate()
    return RunContext(run, config, progress or _no_progress)


def run_pipeline(config: RunConfig, run_dir: str | Path, progress: Progress | None = None) -> dict:
    """Run (or resume) every stage and write ``RUN/summary.json``; returns the summary."""
    config = config.validate()
    ctx = open_context(run_dir, config, progress)
    with ctx.run.lock():
        start = time.perf_counter()
        ensure_finetuned(ctx)
        salience = salience_stage(ctx)
        if ctx.run.is_done("distances"):  # distances hold all later stages need
            ctx.progress("signatures", 1.0, "reused from the run folder")
            signatures = None
        else:
            signatures = signatures_stage(ctx)
        distances = distances_stage(ctx, signatures)
        clustering = clustering_stage(ctx, distances)
        task_curve_stage(ctx, clustering, salience)
        record = selection_stage(ctx, clustering, salience)
        graph_stage(ctx, distances, salience, record)
        exported = export_stage(ctx, record)
        summary = write_summary(ctx, record, exported, time.perf_counter() - start)
    return summary


def write_summary(ctx: RunContext, record: dict, exported: dict, seconds: float) -> dict:
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
        "knee_fallback": record["knee_fallback"],
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
        "stage_seconds": ctx.run.stage_seconds(),
        "total_seconds": seconds,
    }
    write_json_atomic(ctx.run.path("summary.json"), summary)
    return summary


def export_with_degree(
    run_dir: str | Path,
    degree: int,
    out_dir: str | Path,
    *,
    onnx: bool = False,
    progress: Progress | None = None,
    announce: Callable[[dict], None] | None = None,
    model: LoadedModel | None = None,
) -> dict:
    """Re-select with another degree from the cached stages, prune, fine-tune once, save."""
    import json

    ctx = load_context(run_dir, progress, degree=degree)
    ctx._model = model  # a caller's cached fine-tuned model: only ever deep-copied, never changed
    for stage in ("salience", "clustering"):
        if not ctx.run.is_done(stage):
            raise CAHPError(
                f"run {run_dir} has no finished {stage} stage; finish it with `cahp run` first"
            )
    salience = Salience.from_dict(json.loads(ctx.run.path("salience.json").read_text()))
    clustering = ClusteringResult.from_arrays(load_npz(ctx.run.path("clustering.npz")))
    selector = fit_selector(ctx.config, clustering, salience, degree)
    record = selection_record(selector)
    if announce:
        announce(record)
    with ctx.run.lock():
        info = export_selection(
            ctx,
            selector.support_,
            out_dir,
            onnx=onnx,
            extra={"degree": degree, "knee": record["knee"]},
        )
    return {**record, **info}
