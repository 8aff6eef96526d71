"""A CAHP run end to end: create or resume the run folder, run every stage of the registry
(``stages.STAGES``) in order, reusing what is done, and write ``RUN/summary.json``; re-select
and export another degree from the cached stages; re-cluster an existing run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from cahp_core.errors import CAHPError
from cahp_core.method.clustering import ClusteringResult
from cahp_core.method.salience import Salience
from cahp_core.model.loaded_model import LoadedModel
from cahp_core.runs import run_format
from cahp_core.runs.config import EXPORT_ONLY_FIELDS, RunConfig, check_seed_sweep
from cahp_core.runs.exporting import export_command, export_selection, selection_extra
from cahp_core.runs.folder import RunFolder, locked_folder
from cahp_core.runs.run_context import Progress, RunContext, no_progress
from cahp_core.runs.run_format import DISTANCES, MANIFEST, SUMMARY
from cahp_core.runs.run_selection import fit_selector
from cahp_core.runs.stages import RECLUSTER_STAGES, STAGE_NAMES, STAGES, selection_record


def run_stages(ctx: RunContext) -> None:
    """Every stage in run order: reused when done, computed otherwise (or not needed)."""
    for name in STAGE_NAMES:
        ctx.ensure(name)


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
        yield RunContext(run, config, STAGES, progress or no_progress)


def load_context(run_dir: str | Path, progress: Progress | None = None, **overrides) -> RunContext:
    """Re-open an existing run with its own configuration (plus export-only overrides)."""
    run = RunFolder.open(Path(run_dir))
    config = replace(RunConfig.from_dict(run.config), **overrides).validate()
    return RunContext(run, config, STAGES, progress or no_progress)


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
        run_stages(ctx)
        summary = write_summary(ctx, time.perf_counter() - start)
    return summary


def write_summary(ctx: RunContext, seconds: float) -> dict:
    """Write ``RUN/summary.json`` from the stages' results and return it."""
    record = ctx.result("selection")
    exported = ctx.result("export")
    warnings = ctx.result("diagnostics")["warnings"]
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
    salience = ctx.load("salience")
    clusterings = ctx.load("clustering")
    task_curve = ctx.load("task_curve") if ctx.run.is_done("task_curve") else []
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
    ctx.use_model(model)
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


def diagnose_run(run_dir: str | Path, progress: Progress | None = None) -> dict:
    """The diagnostics of an existing run (computed once, then read from the run folder)."""
    ctx = load_context(run_dir, progress)
    with ctx.run.lock():
        return ctx.result("diagnostics")
