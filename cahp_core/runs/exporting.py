"""Prune a run's fine-tuned model to a head map, fine-tune it once, evaluate it and save a
deployment-ready folder (weights, kept-head map, model card, optional ONNX graphs): what the
export stage, ``cahp export`` and ``cahp baseline`` all do."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import numpy as np
import torch

from cahp_core.data import subset
from cahp_core.model.latency import export_latency_ms
from cahp_core.model.loaded_model import LoadedModel
from cahp_core.model.loading import count_parameters
from cahp_core.model.onnx_export import ONNX_FILE, export_onnx_report, int8_path_for, onnx_accuracy
from cahp_core.model.pruning import remove_heads, save_pruned
from cahp_core.model.training import FINETUNE_SHARE, FinetuneConfig, evaluate, finetune
from cahp_core.runs.run_context import RunContext
from cahp_core.runs.run_format import MODEL


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

    def complete(folder: Path, head_map: dict) -> None:  # head_map["cahp"] is info
        if onnx or quantize:
            info.update(_onnx_files(ctx, pruned, folder, quantize, stage))
        if next(pruned.model.parameters()).device.type == "cpu":  # beside ONNX on the CPU
            ctx.progress(stage, 0.96, "timing the full and the pruned model")
            info["latency_ms"] = _card_latency(ctx, pruned, folder)
        ctx.progress(stage, 0.98, "writing the model card")
        info["size_pruned_bytes"] = _weights_bytes(folder)

    save_pruned(pruned, keep, out_dir, extra=info, complete=complete)
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


def export_command(
    run_dir: str | Path,
    record: dict,
    out_dir: str | Path,
    *,
    onnx: bool = False,
    quantize: str | None = None,
) -> str:
    """The ``cahp export`` command that writes this selection again (for model cards)."""
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
