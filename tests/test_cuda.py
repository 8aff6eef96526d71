"""GPU tier: a run, an export with fused and int8 ONNX graphs, and the plain-transformers
load, all with ``--device cuda``. Skipped where no CUDA device is present (CI has none); on a
GPU machine: ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from cahp_core.cli import main
from cahp_core.model.pruning import load_pruned
from cahp_core.runs.pipeline import run_pipeline
from cahp_core.testing import save_tiny_model, tiny_run_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_run_export_and_plain_load_on_cuda(tmp_path):
    model = save_tiny_model(tmp_path / "tiny")
    run = tmp_path / "run"
    summary = run_pipeline(tiny_run_config(model, device="cuda", onnx=True), run)
    assert summary["heads_kept"] >= 1 and (run / "pruned" / "model.onnx").is_file()
    out = tmp_path / "export"
    args = ["export", str(run), "--degree", "3", "--out", str(out), "--quantize", "int8"]
    assert main(args) == 0
    info = json.loads((out / "cahp_export.json").read_text())
    assert info["accuracy_int8"] is not None and (out / "model.int8.onnx").is_file()
    assert "latency_ms" not in info  # a GPU model is not timed against CPU graphs
    ours = load_pruned(out, device="cuda")
    plain = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    plain = plain.to("cuda").eval()
    batch = ours.tokenizer(["a fine film", "dull and long"], padding=True, return_tensors="pt")
    batch = {k: v.to("cuda") for k, v in batch.items()}
    with torch.no_grad():
        expected, got = ours.model(**batch).logits, plain(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
