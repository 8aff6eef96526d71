"""Engine overhead against the physical limit, as ratios measured in one run.

- signature pass / a bare eager forward pass over the same examples and batches;
- salience / a bare forward + backward pass over the same batches;
- distances + clustering (one t-SNE / k-medoids seed) + knee time for all the model's heads
  (seconds);
- time from a degree change to the new knee (seconds; cached clustering, degrees 2-10);
- fine-tuning (``training.finetune``, transformers' Trainer, one epoch) / a bare PyTorch
  loop (forward, backward, clip, fused AdamW) over the Trainer's own batches, with both
  throughputs (examples/s);
- evaluation with a head mask (``training.evaluate`` on batches collated once, as the task
  curve runs it) / a bare forward pass over the same batches, and ``evaluate`` collating
  per call (the one-off evaluations) / the same.

``--first-run`` measures only the first run a user starts instead, end to end:
``cahp run --model minilm-l6 --task sst5 --preset quick`` (wall clock, peak memory, seconds
per stage, full-model accuracy, heads kept) with the preset as it was before issue 17
(3000 training examples, lr 2e-5) and as it is, one after the other, and their ratio; it
is stored under ``first_run`` in the same result file (the other section is kept). The two
runs stay in ``benchmarks/runs/first-run/`` (``OUT/runs/...`` with ``--out``).

    python benchmarks/overhead.py [--examples 512] [--smoke]
    python benchmarks/overhead.py --first-run   # about 8 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, parse_args, read_results, work_dir, write_results

from cahp_core.data import load_task, tokenize_records
from cahp_core.method.clustering import cluster_heads
from cahp_core.method.distances import head_distances
from cahp_core.method.salience import gradient_salience, training_loader
from cahp_core.method.selection import CAHPSelector
from cahp_core.method.signatures import compute_signatures, ensure_eager
from cahp_core.model.loading import load_model, tiny_bert
from cahp_core.model.training import FinetuneConfig, eval_batches, evaluate, finetune, make_trainer
from cahp_core.runs.folder import RunFolder


def timed(fn, repeats: int = 1) -> float:
    """Best of ``repeats`` wall-clock seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bare_forward(model, loader) -> None:
    with torch.no_grad():
        for batch in loader:
            batch.pop("labels", None)
            model(**batch)


def bare_train(model, loader, learning_rate: float = 2e-5) -> int:
    """One epoch of the loop Trainer runs (forward, backward, clip to norm 1, fused AdamW
    step), without its bookkeeping; returns the number of examples seen."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, weight_decay=0.01, fused=True
    )  # as Trainer's default optimizer (adamw_torch_fused)
    model.train()
    seen = 0
    for batch in loader:
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.zero_grad(set_to_none=True)
        seen += int(batch["input_ids"].shape[0])
    model.eval()
    return seen


def training_throughput(model, tokenizer, features, repeats: int) -> dict:
    """Trainer against the bare loop on the same batches, each on a fresh copy of ``model``."""
    config = FinetuneConfig(epochs=1.0)
    with tempfile.TemporaryDirectory() as scratch:
        loader = make_trainer(copy.deepcopy(model), tokenizer, features, config, scratch)
        loader = loader.get_train_dataloader()  # the batches finetune trains on
        bare_s = timed(lambda: bare_train(copy.deepcopy(model), loader), repeats)
    trainer_s = timed(
        lambda: finetune(copy.deepcopy(model), tokenizer, features, config, device="cpu"),
        repeats,
    )
    return {
        "finetune_vs_bare_loop": trainer_s / bare_s,
        "finetune_examples_per_s": len(features) / trainer_s,
        "bare_loop_examples_per_s": len(features) / bare_s,
        "finetune_s": trainer_s,
        "bare_loop_s": bare_s,
    }


def eval_speed(model, tokenizer, features, keep: np.ndarray, repeats: int) -> dict:
    """Masked evaluation on batches collated once, and evaluation collating per call, each
    against a bare forward pass over the same batches."""
    batches = eval_batches(tokenizer, features)

    def forward() -> None:
        with torch.no_grad():
            for batch in batches.batches:
                model(**batch)

    forward_s = timed(forward, repeats)
    masked_s = timed(lambda: evaluate(model, tokenizer, batches, keep=keep), repeats)
    per_call_s = timed(lambda: evaluate(model, tokenizer, features), repeats)
    return {
        "masked_eval_vs_forward": masked_s / forward_s,
        "eval_collating_vs_forward": per_call_s / forward_s,
        "eval_examples_per_s": len(features) / masked_s,
        "eval_forward_s": forward_s,
        "masked_eval_s": masked_s,
    }


def bare_forward_backward(model, loader, n_batches: int) -> None:
    for step, batch in enumerate(loader):
        if step >= n_batches:
            break
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)


FIRST_RUN = ["run", "--model", "minilm-l6", "--task", "sst5", "--preset", "quick"]
# the quick preset before issue 17 (its other settings are unchanged)
QUICK_BEFORE = ["--max-train", "3000", "--lr", "2e-5"]
# a child's peak resident memory, read in a wrapper so each run is measured on its own
_PEAK = (
    "import json, resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(json.dumps([code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
)


def timed_run(out: Path, extra: list[str]) -> dict:
    """Wall clock, peak memory and the manifest's stage seconds of one ``cahp run``."""
    cahp = [sys.executable, "-m", "cahp_core", *FIRST_RUN, *extra, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, *cahp], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    code, peak_kib = json.loads(done.stdout.strip().splitlines()[-1])
    if code != 0:
        raise SystemExit(f"cahp run failed ({code}):\n{done.stderr[-2000:]}")
    run = RunFolder.open(out)
    summary = json.loads((out / "summary.json").read_text())
    return {
        "command": " ".join(["cahp", *FIRST_RUN, *extra]),
        "seconds": round(seconds, 1),
        "peak_memory_gib": round(peak_kib / 2**20, 2),
        "stage_seconds": {k: round(v, 1) for k, v in run.stage_seconds().items()},
        "full_accuracy": run.stage_info("finetune")["accuracy"],
        "heads_kept": summary["heads_kept"],
        "knee": summary["knee"],
        "accuracy_pruned": summary["accuracy_pruned"],
    }


def first_run(out: Path) -> dict:
    """The quick preset before and after issue 17, measured one after the other."""
    before = timed_run(out / "before", QUICK_BEFORE)
    after = timed_run(out / "after", [])
    return {
        "before": before,
        "after": after,
        "after_vs_before": round(after["seconds"] / before["seconds"], 3),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--first-run", action="store_true", help="time `cahp run --preset quick`")
    args = parse_args(parser)
    if args.first_run:
        scratch = work_dir() / "first-run"  # kept: the runs can be opened and bundled
        shutil.rmtree(scratch, ignore_errors=True)  # a fresh start each time
        section = first_run(scratch)
        print(json.dumps(section, indent=1))
        published = read_results("overhead", args.smoke, default={})
        write_results("overhead", {**published, "first_run": section}, args.smoke)
        return
    n, repeats = (32, 1) if args.smoke else (args.examples, args.repeats)
    task = load_task("sst5", max_train=n, seed=0)
    loaded = tiny_bert(num_labels=5) if args.smoke else load_model("minilm-l6", 5, device="cpu")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    ensure_eager(model)
    features = tokenize_records(task.splits["train"], tokenizer, task.spec)
    from cahp_core.data import make_dataloader

    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    sorted_features = [features[i] for i in order]  # the signature pass batches by length too
    forward_s = timed(
        lambda: bare_forward(model, make_dataloader(sorted_features, tokenizer, 32)), repeats
    )
    signature_s = timed(
        lambda: compute_signatures(model, tokenizer, features, 5, show_progress=False), repeats
    )
    fraction = 0.25
    n_batches = max(1, int(np.ceil(fraction * len(training_loader(tokenizer, features, 32, 42)))))
    fwd_bwd_s = timed(
        lambda: bare_forward_backward(
            model, training_loader(tokenizer, features, 32, 42), n_batches
        ),
        repeats,
    )
    salience_s = timed(
        lambda: gradient_salience(
            model, tokenizer, features, fraction=fraction, show_progress=False
        ),
        repeats,
    )
    signatures = compute_signatures(model, tokenizer, features, 5, show_progress=False)
    salience = gradient_salience(model, tokenizer, features, show_progress=False).normalised
    selector = CAHPSelector(
        degree=3 if args.smoke else 6, perplexity=2 if args.smoke else 10, n_seeds=1
    )

    def analyse() -> None:  # one clustering seed, as the paper clusters (features, PCA start)
        distances = head_distances(signatures)
        clustering = cluster_heads(
            distances.distance, perplexity=selector.perplexity, features=distances.features
        )
        selector.fit_from_clustering([clustering], salience, *salience.shape)

    graph_s = timed(analyse, repeats)
    degrees = range(2, min(11, len(selector.clustering_.ks)))  # degree 1 has no knee

    def change_degrees() -> None:
        for degree in degrees:
            selector.set_params(degree=degree)
            selector.fit_from_clustering(selector.clustering_, salience, *salience.shape)

    degree_s = timed(change_degrees, repeats) / len(degrees)
    keep = salience >= np.median(salience)  # about half the heads, a task-curve point
    speed = eval_speed(model, tokenizer, features, keep, repeats)
    training = training_throughput(model, tokenizer, features, 1 if args.smoke else 2)
    result = {
        "signature_vs_forward": signature_s / forward_s,
        "salience_vs_fwd_bwd": salience_s / fwd_bwd_s,
        "graph_cluster_knee_s": graph_s,
        "degree_change_s": degree_s,
        "heads": int(salience.size),
        "examples": n,
        "forward_s": forward_s,
        "signature_s": signature_s,
        "fwd_bwd_s": fwd_bwd_s,
        "salience_s": salience_s,
        **training,
        **speed,
        "model": "tiny-bert" if args.smoke else "minilm-l6",
        "machine": machine(),
    }
    print(
        {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items() if k != "machine"}
    )
    previous = read_results("overhead", args.smoke, default={}).get("first_run")
    write_results(
        "overhead", {**result, **({"first_run": previous} if previous else {})}, args.smoke
    )


if __name__ == "__main__":
    main()
