"""CPU latency of PyTorch models and ONNX graphs, timed interleaved so that load on the
machine hits every candidate alike (the model card's numbers and benchmarks/deployment.py)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from cahp_core.model.onnx_export import onnx_feeds, onnx_session

Runner = Callable[[], object]


def interleaved_latency_ms(runners: dict, repeats: int, seed: int = 0) -> dict:
    """Median latency (ms) of each runner; every round runs all of them once in a shuffled
    order, so load on the machine (and whatever ran just before) hits them alike."""
    for run in runners.values():  # warm-up: first-run allocations and graph preparation
        run(), run()
    times: dict = {name: [] for name in runners}
    order, rng = list(runners), random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def torch_runner(model: torch.nn.Module, batch: dict[str, np.ndarray]) -> Runner:
    """One forward pass of ``model`` on ``batch`` (ids + mask), without gradients."""
    device = next(model.parameters()).device
    inputs = {k: torch.as_tensor(batch[k]).to(device) for k in ("input_ids", "attention_mask")}

    def run():
        with torch.no_grad():
            return model(**inputs)

    return run


def onnx_runner(path: str | Path, batch: dict[str, np.ndarray], threads: int) -> Runner:
    """One ONNX Runtime run of the graph at ``path`` on ``batch``."""
    session = onnx_session(path, threads=threads)
    feeds = onnx_feeds(session, batch)
    return lambda: session.run(["logits"], feeds)


def batch_of(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], size: int, seq: int
) -> dict[str, np.ndarray]:
    """The first ``size`` texts, padded or truncated to ``seq`` tokens."""
    return tokenizer(
        texts[:size], padding="max_length", truncation=True, max_length=seq, return_tensors="np"
    )


def export_latency_ms(
    models: dict[str, torch.nn.Module],
    graphs: dict[str, Path],
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    repeats: int = 20,
    seq: int = 64,
) -> dict:
    """Batch-1 latency of PyTorch ``models`` and ONNX ``graphs`` on this machine: a quick
    indication for a model card (``benchmarks/deployment.py`` measures properly)."""
    batch = batch_of(tokenizer, texts, 1, seq)
    threads = torch.get_num_threads()
    runners = {f"{name}_pytorch": torch_runner(m, batch) for name, m in models.items()}
    runners |= {f"{name}_onnx": onnx_runner(path, batch, threads) for name, path in graphs.items()}
    medians = interleaved_latency_ms(runners, repeats)
    return {
        **{name: round(ms, 3) for name, ms in medians.items()},
        "batch": 1,
        "tokens": seq,
        "threads": threads,
        "repeats": repeats,
    }
