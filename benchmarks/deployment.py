"""Deployment gain: CPU latency of pruned versus full minilm-l6, PyTorch and ONNX Runtime.

Both models see the same inputs (SST-5 validation sentences, padded to 64 tokens), batch 1
and 32; the ideal speed-up comes from counting the encoder's multiply-adds. Pruned models use
CAHP's selection of the embedded example run (assets/default_run) and a 50 % CAHP budget.

    python benchmarks/deployment.py [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, machine, write_results

from cahp_core.data import load_task
from cahp_core.heads import head_layout
from cahp_core.models import count_parameters, load_model, tiny_bert
from cahp_core.onnx_export import export_onnx
from cahp_core.pruning import remove_heads, save_pruned
from cahp_core.results import RunView

SEQ = 64


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


def paired_latency_ms(run_full, run_pruned, repeats: int) -> tuple[float, float]:
    """Median latencies of two runners timed alternately, so load on the machine hits both."""
    run_full(), run_pruned()  # warm-up
    full, pruned = [], []
    for _ in range(repeats):
        for run, times in ((run_full, full), (run_pruned, pruned)):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(full), 1000 * statistics.median(pruned)


def torch_runner(model, batch):
    def run():
        with torch.no_grad():
            model(**batch)

    return run


def onnx_runner(path: Path, batch):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {k: batch[k].numpy().astype(np.int64) for k in ("input_ids", "attention_mask")}
    return lambda: session.run(["logits"], feeds)


def file_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.smoke else args.repeats
    full = tiny_bert(num_labels=5) if args.smoke else load_model("minilm-l6", 5, device="cpu")
    full.model.eval()
    n_layers, n_heads = head_layout(full.model).n_layers, head_layout(full.model).max_heads
    if args.smoke:
        rng = np.random.default_rng(0)
        selections = {"random-half": rng.random((n_layers, n_heads)) < 0.5}
        selections["random-half"][:, 0] = True
    else:
        view = RunView(ROOT / "assets" / "default_run")
        selections = {
            "cahp-knee": np.asarray(view.selection["kept"], dtype=bool),
            "cahp-50%": view.selector(view.config.degree).select_budget(n_layers * n_heads // 2),
        }
    texts = [r["text"] for r in load_task("sst5", max_eval=32, seed=0).splits["validation"]]
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        full_dir = scratch / "full"
        full.model.save_pretrained(full_dir)
        full_onnx = export_onnx(copy.deepcopy(full.model), full.tokenizer, scratch / "full.onnx")
        for name, keep in selections.items():
            pruned = copy.deepcopy(full)
            pruned.model = remove_heads(copy.deepcopy(full.model), keep).eval()
            pruned_dir = save_pruned(pruned, keep, scratch / name)
            pruned_onnx = export_onnx(
                copy.deepcopy(pruned.model), pruned.tokenizer, scratch / f"{name}.onnx"
            )
            ideal = encoder_flops(full.model, SEQ) / encoder_flops(pruned.model, SEQ)
            for batch_size in (1, 32):
                batch = full.tokenizer(
                    texts[:batch_size],
                    padding="max_length",
                    truncation=True,
                    max_length=SEQ,
                    return_tensors="pt",
                )
                batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
                for runtime, make in (
                    ("pytorch", lambda m, p, b=batch: torch_runner(m, b)),
                    ("onnxruntime", lambda m, p, b=batch: onnx_runner(p, b)),
                ):
                    full_ms, pruned_ms = paired_latency_ms(
                        make(full.model, full_onnx), make(pruned.model, pruned_onnx), repeats
                    )
                    records.append(
                        {
                            "runtime": runtime,
                            "batch": batch_size,
                            "selection": name,
                            "heads_kept": int(keep.sum()),
                            "heads_total": int(keep.size),
                            "latency_full_ms": full_ms,
                            "latency_pruned_ms": pruned_ms,
                            "speedup": full_ms / pruned_ms,
                            "ideal_speedup": ideal,
                            "throughput_full_per_s": 1000 * batch_size / full_ms,
                            "throughput_pruned_per_s": 1000 * batch_size / pruned_ms,
                            "params_full": count_parameters(full.model),
                            "params_pruned": count_parameters(pruned.model),
                            "weights_bytes_full": file_size(full_dir),
                            "weights_bytes_pruned": file_size(pruned_dir),
                            "onnx_bytes_full": full_onnx.stat().st_size,
                            "onnx_bytes_pruned": pruned_onnx.stat().st_size,
                            "threads": torch.get_num_threads(),
                        }
                    )
                    r = records[-1]
                    print(
                        f"{name:10s} {runtime:11s} batch {batch_size:2d}: full {full_ms:7.2f} ms, "
                        f"pruned {pruned_ms:7.2f} ms, speed-up {r['speedup']:.2f} (ideal {ideal:.2f})",
                        flush=True,
                    )
    write_results("deployment", records, args.smoke)
    write_results(
        "deployment_meta", {"machine": machine(), "seq_len": SEQ, "repeats": repeats}, args.smoke
    )


if __name__ == "__main__":
    main()
