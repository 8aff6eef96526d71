"""Every stage of a CAHP run, declared once: what it needs, how it computes its result and
how that result is saved to and loaded from the run folder (``STAGES``).

Order: finetune -> salience -> signatures -> distances -> diagnostics -> clustering ->
task_curve -> selection (degree) -> graph -> export (prune, fine-tune once, evaluate, save).
Everything before ``selection`` is independent of the polynomial degree, so a new degree
re-uses it all (``cahp export RUN --degree D``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cahp_core.choices import RULE_PARAMETER
from cahp_core.method.baselines import gradient_selection, random_selection
from cahp_core.method.clustering import (
    ClusteringResult,
    cluster_heads_seeds,
    clustering_seeds,
    clusterings_from_arrays,
    clusterings_to_arrays,
)
from cahp_core.method.distances import HeadDistances, head_distances
from cahp_core.method.graph import build_head_graph, graph_to_json
from cahp_core.method.proximity import depth_stats
from cahp_core.method.salience import Salience, gradient_salience
from cahp_core.method.selection import CAHPSelector, complementary_selection
from cahp_core.method.signatures import HeadSignatures, compute_signatures
from cahp_core.model.loaded_model import LoadedModel
from cahp_core.model.loading import load_model, save_model_folder
from cahp_core.model.training import (
    FinetuneConfig,
    eval_batches,
    evaluate,
    finetune_pretrained,
    logit_metrics,
    predict_logits,
)
from cahp_core.runs.config import RunConfig
from cahp_core.runs.exporting import export_command, export_selection, selection_extra
from cahp_core.runs.run_context import RunContext, Stage, StageRecorder
from cahp_core.runs.run_format import (
    CLUSTERING,
    DIAGNOSTICS,
    DISTANCES,
    EXPORT_INFO,
    GRAPH,
    MODEL,
    PRUNED,
    SALIENCE,
    SELECTION,
    SIGNATURES,
    TASK_CURVE,
)
from cahp_core.runs.run_selection import fit_selector

# ---------------------------------------------------------------- finetune


def finetune_stage(ctx: RunContext, st: StageRecorder) -> LoadedModel:
    """Fine-tune the base encoder on the task and save it as ``RUN/model``."""
    c = ctx.config
    loaded, report = finetune_pretrained(
        c.model,
        ctx.task,
        FinetuneConfig(c.epochs, c.learning_rate, c.batch_size, seed=c.seed),
        max_length=c.max_length,
        device=c.device,
        trust_remote_code=c.trust_remote_code,
        progress=ctx.stage_progress("finetune", 0.0, 0.98),
        features=ctx.features,  # tokenized once, for this stage and every later one
    )
    ctx.progress("finetune", 0.98, "saving the model")
    save_model_folder(loaded, MODEL.path(ctx.run.root))
    st.info.update(
        train=report["train"],
        accuracy=report["accuracy"],
        macro_f1=report["macro_f1"],
        n_eval=report["n"],
        params=report["params"],
    )
    return loaded


def load_finetuned(ctx: RunContext, folder: Path) -> LoadedModel:
    return load_model(folder, ctx.num_labels, device=ctx.config.device)


# ---------------------------------------------------------------- salience and signatures


def salience_stage(ctx: RunContext, st: StageRecorder, finetune: LoadedModel) -> Salience:
    """Stage 5 of the paper (computed early: cheap): |dLoss/dgate| on the first batches."""
    c = ctx.config
    return gradient_salience(
        finetune.model,
        finetune.tokenizer,
        ctx.train_features,
        fraction=c.salience_fraction,
        batch_size=c.batch_size,
        seed=c.seed,
        progress=ctx.stage_progress("salience"),
    )


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


def signatures_stage(ctx: RunContext, st: StageRecorder, finetune: LoadedModel) -> HeadSignatures:
    """Stage 2: padding-aware per-class signatures of every head (eager attention)."""
    c = ctx.config
    features = signature_features(ctx)
    st.info.update(examples=len(features), grid=c.grid)
    return compute_signatures(
        finetune.model,
        finetune.tokenizer,
        features,
        ctx.num_labels,
        grid=c.grid,
        batch_size=c.batch_size,
        progress=ctx.stage_progress("signatures"),
    )


# ---------------------------------------------------------------- distances and diagnostics


def distances_stage(
    ctx: RunContext, st: StageRecorder, signatures: HeadSignatures
) -> HeadDistances:
    """Stage 3: information-theoretic head features and the head x head distance matrix."""
    ctx.progress("distances", 0.0, f"{ctx.config.distance} distances")
    distances = head_distances(signatures, method=ctx.config.distance)
    st.info.update(method=ctx.config.distance, features=int(distances.features.shape[1]))
    return distances


def encode_distances(distances: HeadDistances) -> dict[str, np.ndarray]:
    return {"features": distances.features, "distance": distances.distance}


def decode_distances(ctx: RunContext, arrays: dict[str, np.ndarray]) -> HeadDistances:
    return HeadDistances(ctx.config.distance, arrays["features"], arrays["distance"])


DIAGNOSTIC_BUDGETS = (0.1, 0.2, 0.3)  # cluster counts compared: these shares of all heads
DIAGNOSTIC_SEEDS = 3  # the first clustering seeds used (t-SNE and k-medoids)


def diagnostics_stage(ctx: RunContext, st: StageRecorder, finetune: LoadedModel) -> dict:
    """Does CAHP's premise hold here? Split-half agreement of the clusterings and the JM
    distances' class signal (``diagnostics.py``), from one extra signature pass."""
    from cahp_core.method.diagnostics import diagnose, diagnostic_classes
    from cahp_core.method.signatures import compute_signature_sets

    c = ctx.config
    features = signature_features(ctx)
    labels = np.array([f["labels"] for f in features], dtype=np.int64)  # [examples]
    ctx.progress("diagnostics", 0.0, "signatures of two halves and of shuffled labels")
    classes = {"all": labels, **diagnostic_classes(labels, c.seed)}
    sets = compute_signature_sets(
        finetune.model,
        finetune.tokenizer,
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
    return diagnose(sets, ks, seeds, perplexity=c.perplexity).to_dict()


# ---------------------------------------------------------------- clustering


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


def clustering_stage(
    ctx: RunContext, st: StageRecorder, distances: HeadDistances
) -> list[ClusteringResult]:
    """Stage 4: cluster the heads for every k and every seed (t-SNE + k-medoids, or Louvain)."""
    c = ctx.config
    seeds = clustering_seeds(c.seed, c.n_seeds)
    ctx.progress("clustering", 0.0, f"{c.clustering} for every k, seed 1/{len(seeds)}")
    clusterings = cluster_heads_seeds(
        distances.distance,
        seeds,
        progress=lambda done, total: ctx.progress(
            "clustering", done / total, f"{done}/{total} seeds clustered"
        ),
        **clustering_options(c, distances),
    )
    ks = clusterings[0].ks
    st.info.update(
        method=c.clustering, quality=c.quality, seeds=seeds, ks=[int(ks[0]), int(ks[-1])]
    )
    return clusterings


def decode_clusterings(ctx: RunContext, arrays: dict) -> list[ClusteringResult]:
    """The run's clusterings, one per seed; a CAHPError that says how to re-cluster a run
    clustered by an earlier version."""
    return clusterings_from_arrays(arrays, where=str(ctx.run.root))


# ---------------------------------------------------------------- task curve


def curve_grid(ks: np.ndarray, points: int) -> list[int]:
    """``points`` cluster counts spread evenly over ``ks`` (always the two ends)."""
    idx = np.unique(np.round(np.linspace(0, len(ks) - 1, min(points, len(ks)))).astype(int))
    return [int(ks[i]) for i in idx]


def comparison_maps(
    clustering: ClusteringResult, salience: Salience, k: int, seed: int
) -> dict[str, np.ndarray]:
    """CAHP at k clusters and the gradient / random baselines at the same head budget."""
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


def _metrics(m: dict) -> dict:
    """accuracy, macro-F1, n and (masked maps) the KL divergence from the full model."""
    return {k: m[k] for k in ("accuracy", "macro_f1", "kl", "n") if k in m}


def task_curve_stage(
    ctx: RunContext,
    st: StageRecorder,
    finetune: LoadedModel,
    clustering: list[ClusteringResult],
    salience: Salience,
) -> list[dict]:
    """Masked validation accuracy (no fine-tuning) of CAHP, gradient and random for a k grid.

    CAHP's maps come from the first seed's clustering (one measured curve per run; its
    knee is applied to every seed's clustering)."""
    first = clustering[0]
    grid = curve_grid(first.ks, ctx.config.curve_points)
    batches = eval_batches(finetune.tokenizer, ctx.eval_features)  # collated once for every map
    full_logits = predict_logits(finetune.model, finetune.tokenizer, batches)  # [n, labels]
    full = logit_metrics(batches.labels, full_logits, full_logits)  # kl 0
    n_total = int(salience.raw.size)
    records = [
        {"k": None, "heads_kept": n_total, "method": m, **_metrics(full)}
        for m in ("cahp", "gradient", "random")
    ]
    for step, k in enumerate(grid):
        ctx.progress("task_curve", step / len(grid), f"masked accuracy at k={k}")
        for method, keep in comparison_maps(first, salience, k, ctx.config.seed).items():
            metrics = evaluate(
                finetune.model,
                finetune.tokenizer,
                batches,
                keep=keep,
                reference_logits=full_logits,
            )
            records.append(
                {"k": k, "heads_kept": int(keep.sum()), "method": method, **_metrics(metrics)}
            )
    return records


# ---------------------------------------------------------------- selection and graph


def _knee_summary(result) -> dict | None:
    if result is None:
        return None
    return {"knee": int(result.knee), "fallback": bool(result.fallback), "reason": result.reason}


def rule_summary(selector: CAHPSelector) -> dict:
    """The selection rule and the one parameter it uses (none for the paper's rule)."""
    name = RULE_PARAMETER.get(selector.rule)
    return {"name": selector.rule, **({name: float(getattr(selector, name))} if name else {})}


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
    st: StageRecorder,
    clustering: list[ClusteringResult],
    salience: Salience,
    task_curve: list[dict],
    distances: HeadDistances,
) -> dict:
    """Stage 6-7: knee of the fitted curve for this degree and the complementary selection
    (every seed, then their consensus)."""
    selector = fit_selector(
        ctx.config, clustering, salience, task_curve=task_curve, distance=distances.distance
    )
    record = selection_record(selector)
    st.info.update(degree=record["degree"], knee=record["knee"])
    return record


def graph_stage(
    ctx: RunContext,
    st: StageRecorder,
    distances: HeadDistances,
    salience: Salience,
    selection: dict,
) -> dict:
    """The global head graph (all heads of all layers) with cluster and kept marks."""
    keep = np.asarray(selection["kept"], dtype=bool)
    return graph_to_json(
        build_head_graph(
            distances.distance,
            keep.shape[0],
            keep.shape[1],
            n_neighbors=ctx.config.graph_neighbors,
            salience=salience.normalised,
            labels=np.asarray(selection["labels"]),
            keep=keep,
        )
    )


# ---------------------------------------------------------------- export


def export_stage(
    ctx: RunContext, st: StageRecorder, finetune: LoadedModel, selection: dict
) -> dict:
    """Stage 8: the pruned, once fine-tuned model of this degree in ``RUN/pruned``."""
    c = ctx.config
    out = PRUNED.path(ctx.run.root)
    command = export_command(ctx.run.root, selection, out, onnx=bool(c.onnx), quantize=c.quantize)
    info = export_selection(
        ctx,
        np.asarray(selection["kept"], dtype=bool),
        out,
        onnx=c.onnx,
        quantize=c.quantize,
        extra=selection_extra(selection, command),
    )
    st.info.update(
        degree=selection["degree"],
        knee_curve=selection["knee_curve"],
        kept=selection["kept"],
        onnx=c.onnx,
        quantize=c.quantize,
    )
    return info


def export_is_current(ctx: RunContext) -> bool:
    """The exported folder holds this run's selection, with the ONNX files asked for."""
    done = ctx.run.stage_info("export")
    same_files = (done.get("onnx"), done.get("quantize")) == (ctx.config.onnx, ctx.config.quantize)
    return same_files and done.get("kept") == ctx.result("selection")["kept"]


def load_export_info(ctx: RunContext, folder: Path) -> dict:
    return json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the registry

STAGES = {
    stage.name: stage
    for stage in (
        Stage("finetune", finetune_stage, MODEL, decode=load_finetuned),
        Stage(
            "salience",
            salience_stage,
            SALIENCE,
            needs=("finetune",),
            encode=Salience.to_dict,
            decode=lambda ctx, raw: Salience.from_dict(raw),
        ),
        Stage(
            "signatures",
            signatures_stage,
            SIGNATURES,
            needs=("finetune",),
            encode=HeadSignatures.to_arrays,
            decode=lambda ctx, raw: HeadSignatures.from_arrays(raw),
        ),
        Stage(
            "distances",
            distances_stage,
            DISTANCES,
            needs=("signatures",),
            encode=encode_distances,
            decode=decode_distances,
        ),
        Stage(
            "diagnostics",
            diagnostics_stage,
            DIAGNOSTICS,
            needs=("finetune",),
            encode=dict,
            describe=lambda d: " ".join(d["warnings"]) or "the premise holds",
        ),
        Stage(
            "clustering",
            clustering_stage,
            CLUSTERING,
            needs=("distances",),
            encode=clusterings_to_arrays,
            decode=decode_clusterings,
        ),
        Stage(
            "task_curve",
            task_curve_stage,
            TASK_CURVE,
            needs=("finetune", "clustering", "salience"),
            encode=list,
        ),
        Stage(
            "selection",
            selection_stage,
            SELECTION,
            needs=("clustering", "salience", "task_curve", "distances"),
            encode=dict,
            cached=False,  # cheap, and it depends on the degree
            describe=lambda r: f"knee k={r['knee']}, {r['heads_kept']} heads kept",
        ),
        Stage(
            "graph",
            graph_stage,
            GRAPH,
            needs=("distances", "salience", "selection"),
            encode=dict,
            cached=False,
        ),
        Stage(
            "export",
            export_stage,
            PRUNED,
            needs=("finetune", "selection"),
            decode=load_export_info,
            current=export_is_current,
            describe=lambda info: f"accuracy after fine-tuning {info['accuracy_pruned']:.3f}",
        ),
    )
}
STAGE_NAMES = tuple(STAGES)  # in the order a run runs them
EXPORT_STAGES = ("finetune", "export")  # `cahp export`: the full model first if missing


def downstream(name: str) -> tuple[str, ...]:
    """``name`` and every stage that depends on it, directly or not, in run order."""
    found = {name}
    for stage in STAGES.values():  # run order: a stage's needs come before it
        if found.intersection(stage.needs):
            found.add(stage.name)
    return tuple(n for n in STAGE_NAMES if n in found)


RECLUSTER_STAGES = downstream("clustering")  # `cahp recluster` redoes them
