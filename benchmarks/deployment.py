"""Deployment gain: CPU latency and SST-5 test accuracy of the full minilm-l6 vs CAHP's pruned
model at its knee, in PyTorch (eager) and ONNX Runtime (unfused fp32, fused fp32, fused int8).

The pruned model is CAHP's selection at its knee (``fit_selector`` with the run's config) on
the SST-5 run of ``benchmarks/quality.py`` (``--protocol paper``: full training split, 3 + 3
epochs; ``cpu``: the CPU protocol's run), pruned and fine-tuned once with the run's settings
(``export_selection``) and cached in benchmarks/runs/deployment-<run>/, so a re-run only
re-measures. Missing runs are prepared with quality.py's helpers.

Latency: every variant sees the same inputs (SST-5 validation sentences padded to 64 tokens),
batch 1 and 32, on ``--threads`` threads; all variants of a batch size are timed in shuffled
round-robin in one loop, so load on the machine hits them alike (medians; ratios are what
count on a shared machine). Ideal speed-up: the ratio of the encoders' multiply-adds.

Goal: at batch 1 the pruned, fused, int8 ONNX model runs >= 2x faster than the full PyTorch
model with <= 0.5 points of SST-5 test accuracy lost.

    python benchmarks/deployment.py [--protocol paper|cpu] [--prepare-only] [--smoke]
    OMP_NUM_THREADS=1 python benchmarks/deployment.py --prepare-only   # the re-tune alone
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from common import machine, parse_args, work_dir, write_results

from cahp_core.data import load_task, subset, tokenize_records
from cahp_core.model.folder_format import EXPORT_INFO
from cahp_core.model.heads import head_layout
from cahp_core.model.latency import batch_of, interleaved_latency_ms, onnx_runner, torch_runner
from cahp_core.model.loading import LoadedModel, count_parameters, tiny_bert
from cahp_core.model.onnx_export import (
    export_onnx_report,
    onnx_accuracy,
)
from cahp_core.model.pruning import load_pruned, read_keep, remove_heads, save_pruned
from cahp_core.model.training import evaluate, predict_logits

SEQ = 64
BATCHES = (1, 32)
# (runtime, graph): PyTorch eager and three ONNX Runtime graphs, for the full and pruned model
GRAPHS = (
    ("pytorch", "eager"),
    ("onnxruntime", "unfused-fp32"),
    ("onnxruntime", "fused-fp32"),
    ("onnxruntime", "fused-int8"),
)
BASELINE = ("full", "eager")  # the full PyTorch model: what the goal compares against
GOAL = {"batch": 1, "speedup": 2.0, "accuracy_loss": 0.005}  # >= 2x, <= 0.5 points
SELECTION = "cahp-knee"
TASK, TEST_SPLIT = "sst5", "test"


def encoder_flops(model, seq: int) -> float:
    """Multiply-adds per example of the encoder layers (attention + feed-forward)."""
    config = model.config
    hidden, inter = config.hidden_size, config.intermediate_size
    layout = head_layout(model)
    total = 0.0
    for heads in layout.heads_per_layer:
        width = heads * layout.head_dim
        total += seq * (3 * hidden * width + width * hidden)  # q, k, v and output projections
        total += 2 * seq * seq * width  # scores and weighted sum
        total += seq * 2 * hidden * inter  # feed-forward
    return total


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) so far; the
    machine's are NaN where /proc/stat is missing."""
    own = sum(os.times()[:2])
    try:
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan"), own
    idle = jiffies[3] + jiffies[4]  # idle + iowait; the rest is busy (user ... steal)
    return (sum(jiffies) - idle) / os.sysconf("SC_CLK_TCK"), own


def other_cores(since: tuple[float, tuple[float, float]]) -> float:
    """Cores used on average by other processes since ``(perf_counter, cpu_seconds())``."""
    start, (busy0, own0) = since
    busy1, own1 = cpu_seconds()
    used = ((busy1 - busy0) - (own1 - own0)) / max(time.perf_counter() - start, 1e-9)
    return 0.0 if used < 0 else used  # clock-tick rounding; NaN stays NaN


def wait_for_quiet(max_wait: float, threshold: float = 0.3, window: float = 5.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` cores over a
    ``window``; returns the last measured use."""
    deadline = time.perf_counter() + max_wait
    while True:
        since = (time.perf_counter(), cpu_seconds())
        time.sleep(window)
        used = other_cores(since)
        if not used >= threshold or time.perf_counter() >= deadline:  # NaN: cannot tell
            return used
        print(f"other processes use {used:.2f} cores; waiting for a quieter machine", flush=True)


def file_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


# ---------------------------------------------------------------- the two models


class Setup(NamedTuple):
    """The two models and what they are measured on."""

    full: LoadedModel
    pruned: LoadedModel
    keep: np.ndarray  # bool [layers, heads]
    features: list[dict]  # tokenised test split
    texts: list[str]  # timing inputs
    folders: dict[str, Path]  # "full", "pruned" (weights), "onnx" (graphs)
    facts: dict  # what the records' meta says about the run


def knee_selection(protocol: str):
    """The prepared SST-5 run of ``protocol`` and CAHP's selector fitted at its knee, as the
    pipeline does (its clustering stage cached in the run folder)."""
    from quality import prepare

    from cahp_core.runs.run_selection import fit_selector

    ctx, salience, _, distances = prepare(TASK, protocol, False, "cpu")
    with ctx.run.lock(timeout=600):
        clusterings = ctx.result("clustering")
        curve = ctx.result("task_curve") if ctx.config.knee_curve == "performance" else None
    selector = fit_selector(
        ctx.config, clusterings, salience, task_curve=curve, distance=distances["jm"].distance
    )
    return ctx, selector


def cached_pruned(ctx, selector, folder: Path) -> LoadedModel:
    """The pruned, once fine-tuned model of the knee selection (fine-tuned only if the cache
    holds no model of these heads from this run's fine-tuned model)."""
    from cahp_core.runs.exporting import export_selection

    keep = selector.support_
    key = {"run": ctx.run.root.name, "full_model": ctx.run.stages["finetune"]["artefacts"]}
    info_path = folder / EXPORT_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    same = all(info.get(k) == v for k, v in key.items())
    if not (same and np.array_equal(read_keep(folder), keep)):
        print(f"pruning to {int(keep.sum())} heads and fine-tuning once -> {folder}", flush=True)
        extra = {**key, "selection": SELECTION, "knee": int(selector.knee_)}
        export_selection(ctx, keep, folder, extra=extra)
    return load_pruned(folder)


def real_models(protocol: str, prepare_only: bool) -> Setup:
    """The fine-tuned full model and CAHP's knee, pruned and fine-tuned once (cached)."""
    from quality import run_name

    ctx, selector = knee_selection(protocol)
    work = work_dir() / f"deployment-{run_name(TASK, protocol, False)}"
    pruned = cached_pruned(ctx, selector, work / "pruned")
    if prepare_only:
        raise SystemExit(f"pruned model ready in {work / 'pruned'}")
    facts = {
        "run": ctx.run.root.name,
        "protocol": protocol,
        "knee": int(selector.knee_),
        "degree": int(selector.degree),
        "kept_per_layer": [int(n) for n in selector.support_.sum(axis=1)],
        "pruned_validation": json.loads((work / "pruned" / "cahp_export.json").read_text()),
    }
    texts = [r["text"] for r in ctx.task.splits["validation"][: max(BATCHES)]]
    folders = {"full": ctx.run.path("model"), "pruned": work / "pruned", "onnx": work / "onnx"}
    features = ctx.features(TEST_SPLIT)
    return Setup(ctx.finetuned(), pruned, selector.support_, features, texts, folders, facts)


def smoke_models(scratch: Path) -> Setup:
    """A tiny random BERT and a random half of its heads (no training), 32 test sentences."""
    full = tiny_bert(num_labels=5)
    layout = head_layout(full.model)
    keep = np.random.default_rng(0).random((layout.n_layers, layout.max_heads)) < 0.5
    keep[:, 0] = True
    pruned = LoadedModel(remove_heads(copy.deepcopy(full.model), keep), full.tokenizer, "pruned")
    task = load_task(TASK, max_eval=32, seed=0)
    features = tokenize_records(subset(task.splits[TEST_SPLIT], 32, 0), full.tokenizer, task.spec)
    texts = [r["text"] for r in task.splits["validation"][: max(BATCHES)]]
    folders = {"full": scratch / "full", "pruned": scratch / "pruned", "onnx": scratch / "onnx"}
    full.model.save_pretrained(folders["full"])
    save_pruned(pruned, keep, folders["pruned"])
    return Setup(full, pruned, keep, features, texts, folders, {"run": None, "protocol": "smoke"})


# ---------------------------------------------------------------- measurements


def export_graphs(models: dict[str, LoadedModel], folder: Path) -> tuple[dict, dict]:
    """ONNX graphs per (model, graph) and each export's report."""
    paths, reports = {}, {}
    for name, loaded in models.items():
        fused = export_onnx_report(
            loaded.model, loaded.tokenizer, folder / f"{name}.onnx", quantize="int8"
        )
        plain = export_onnx_report(
            loaded.model, loaded.tokenizer, folder / f"{name}.unfused.onnx", optimize=False
        )
        paths[name, "fused-fp32"], paths[name, "fused-int8"] = fused.path, fused.int8_path
        paths[name, "unfused-fp32"] = plain.path
        reports[name] = {"fused": fused.to_dict(), "unfused": plain.to_dict()}
        if fused.warnings:
            print(f"{name}: " + "; ".join(fused.warnings), flush=True)
    return paths, reports


def accuracies(models, paths, features, threads: int) -> dict[tuple[str, str], dict]:
    """Accuracy, macro-F1 and KL from the full PyTorch model on the test features."""
    full = models["full"]
    reference = predict_logits(full.model, full.tokenizer, features)  # [examples, labels]
    out = {}
    for name, loaded in models.items():
        out[name, "eager"] = evaluate(
            loaded.model, loaded.tokenizer, features, reference_logits=reference
        )
        for (model, graph), path in paths.items():
            if model == name:
                out[model, graph] = onnx_accuracy(
                    path,
                    features,
                    pad_id=loaded.tokenizer.pad_token_id or 0,
                    threads=threads,
                    reference_logits=reference,
                )
    return out


def latencies(models, paths, tokenizer, texts, repeats: int, threads: int) -> dict:
    """{batch: {(model, graph): median ms}} and the load averages around the timing."""
    out = {}
    for batch_size in BATCHES:
        batch = batch_of(tokenizer, texts, batch_size, SEQ)
        runners = {(name, "eager"): torch_runner(m.model, batch) for name, m in models.items()}
        runners |= {key: onnx_runner(path, batch, threads) for key, path in paths.items()}
        out[batch_size] = interleaved_latency_ms(runners, repeats, seed=batch_size)
    return out


def records_for(models, keep, folders, paths, latency, accuracy, threads) -> list[dict]:
    full, pruned = models["full"].model, models["pruned"].model
    ideal = encoder_flops(full, SEQ) / encoder_flops(pruned, SEQ)
    base_acc = accuracy[BASELINE]
    out = []
    for batch_size, ms in latency.items():
        for runtime, graph in GRAPHS:
            full_ms, pruned_ms = ms["full", graph], ms["pruned", graph]
            acc_full, acc_pruned = accuracy["full", graph], accuracy["pruned", graph]
            onnx = runtime == "onnxruntime"
            out.append(
                {
                    "runtime": runtime,
                    "graph": graph,
                    "batch": batch_size,
                    "selection": SELECTION,
                    "heads_kept": int(keep.sum()),
                    "heads_total": int(keep.size),
                    "latency_full_ms": full_ms,
                    "latency_pruned_ms": pruned_ms,
                    "speedup": full_ms / pruned_ms,
                    "ideal_speedup": ideal,
                    "latency_full_pytorch_ms": ms[BASELINE],
                    "speedup_vs_full_pytorch": ms[BASELINE] / pruned_ms,
                    "throughput_full_per_s": 1000 * batch_size / full_ms,
                    "throughput_pruned_per_s": 1000 * batch_size / pruned_ms,
                    "accuracy_full": acc_full["accuracy"],
                    "accuracy_pruned": acc_pruned["accuracy"],
                    "macro_f1_full": acc_full["macro_f1"],
                    "macro_f1_pruned": acc_pruned["macro_f1"],
                    "kl_pruned": acc_pruned["kl"],
                    "accuracy_full_pytorch": base_acc["accuracy"],
                    "n_test": base_acc["n"],
                    "params_full": count_parameters(full),
                    "params_pruned": count_parameters(pruned),
                    "weights_bytes_full": file_size(folders["full"]),
                    "weights_bytes_pruned": file_size(folders["pruned"]),
                    "onnx_bytes_full": paths["full", graph].stat().st_size if onnx else None,
                    "onnx_bytes_pruned": paths["pruned", graph].stat().st_size if onnx else None,
                    "threads": threads,
                }
            )
    return out


def goal_verdict(latency: dict, accuracy: dict) -> dict:
    """The deployment goal at batch 1: pruned fused int8 ONNX vs the full PyTorch model."""
    ms = latency[GOAL["batch"]]
    target = ("pruned", "fused-int8")
    speedup = ms[BASELINE] / ms[target]
    loss = accuracy[BASELINE]["accuracy"] - accuracy[target]["accuracy"]
    int8_change = accuracy[target]["accuracy"] - accuracy["pruned", "fused-fp32"]["accuracy"]
    pruning_loss = accuracy[BASELINE]["accuracy"] - accuracy["pruned", "eager"]["accuracy"]
    return {
        **{f"goal_{k}": v for k, v in GOAL.items()},
        "speedup": speedup,
        "accuracy_full_pytorch": accuracy[BASELINE]["accuracy"],
        "accuracy_pruned_pytorch": accuracy["pruned", "eager"]["accuracy"],
        "accuracy_pruned_fp32": accuracy["pruned", "fused-fp32"]["accuracy"],
        "accuracy_pruned_int8": accuracy[target]["accuracy"],
        "accuracy_loss": loss,
        "accuracy_loss_pruning": pruning_loss,
        "accuracy_change_int8_vs_fp32": int8_change,
        "speed_met": speedup >= GOAL["speedup"],
        "accuracy_met": loss <= GOAL["accuracy_loss"],
        "met": speedup >= GOAL["speedup"] and loss <= GOAL["accuracy_loss"],
    }


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def goal_line(goal: dict, threads: int) -> str:
    return (
        f"Goal: on {threads} CPU threads at batch {goal['goal_batch']}, the pruned, fused, int8 "
        f"ONNX model at CAHP's knee runs >= {goal['goal_speedup']:g}x faster than the full "
        f"PyTorch model with <= {100 * goal['goal_accuracy_loss']:g} points of SST-5 test "
        f"accuracy lost. Measured: {goal['speedup']:.2f}x faster, "
        f"{100 * goal['accuracy_loss']:+.2f} points lost "
        f"({100 * goal['accuracy_loss_pruning']:+.2f} from pruning + re-tune, "
        f"{-100 * goal['accuracy_change_int8_vs_fp32']:+.2f} from int8 vs the pruned fp32 graph) "
        f"-> {verdict(goal['met']).upper()} (speed {verdict(goal['speed_met'])}, "
        f"accuracy {verdict(goal['accuracy_met'])})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocol", choices=["paper", "cpu"], default="paper")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="threads for the timing")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only fine-tune and cache the pruned model (run it with OMP_NUM_THREADS=1)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=300.0,
        help="wait up to this many seconds for other processes to leave the CPUs before timing",
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny random model (CI)")
    args = parse_args(parser)
    repeats = 2 if args.smoke else args.repeats
    with tempfile.TemporaryDirectory() as scratch:
        setup = (
            smoke_models(Path(scratch))
            if args.smoke
            else real_models(args.protocol, args.prepare_only)
        )
        full, keep, folders = setup.full, setup.keep, setup.folders
        torch.set_num_threads(args.threads)
        models = {"full": full, "pruned": setup.pruned}
        for loaded in models.values():
            loaded.model.to("cpu").eval()
        paths, reports = export_graphs(models, folders["onnx"])
        accuracy = accuracies(models, paths, setup.features, args.threads)
        for (name, graph), m in accuracy.items():
            print(f"{name:6s} {graph:12s} test accuracy {m['accuracy']:.4f}", flush=True)
        quiet = wait_for_quiet(0.0 if args.smoke else args.wait_quiet)
        load_before, since = os.getloadavg(), (time.perf_counter(), cpu_seconds())
        latency = latencies(models, paths, full.tokenizer, setup.texts, repeats, args.threads)
        others, load_after = other_cores(since), os.getloadavg()
        records = records_for(models, keep, folders, paths, latency, accuracy, args.threads)
    for r in records:
        print(
            f"{r['runtime']:11s} {r['graph']:12s} batch {r['batch']:2d}: full "
            f"{r['latency_full_ms']:7.2f} ms, pruned {r['latency_pruned_ms']:7.2f} ms, speed-up "
            f"{r['speedup']:.2f} (ideal {r['ideal_speedup']:.2f}; vs full PyTorch "
            f"{r['speedup_vs_full_pytorch']:.2f})",
            flush=True,
        )
    goal = goal_verdict(latency, accuracy)
    print(
        f"other processes used {others:.2f} cores on average during the timing "
        f"({quiet:.2f} just before); load average (1, 5, 15 min) before {load_before}, "
        f"after {load_after}"
    )
    print(goal_line(goal, args.threads), flush=True)
    write_results("deployment", records, args.smoke)
    meta = {
        "machine": machine(),
        "seq_len": SEQ,
        "repeats": repeats,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "other_cores_before": quiet,
        "other_cores_during_timing": others,
        "load_before": list(load_before),
        "load_after": list(load_after),
        **setup.facts,
        "test_split": TEST_SPLIT,
        "accuracy": {f"{m}/{g}": v for (m, g), v in accuracy.items()},
        "exports": reports,
        "goal": goal,
    }
    write_results("deployment_meta", meta, args.smoke)


if __name__ == "__main__":
    main()
