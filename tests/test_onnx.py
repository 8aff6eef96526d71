"""ONNX export: fused graphs (uneven and empty layers) and int8 graphs against PyTorch."""

import copy

import numpy as np
import pytest
import torch

from cahp_core.errors import CAHPError
from cahp_core.model import onnx_export
from cahp_core.model.onnx_export import (
    export_onnx,
    export_onnx_report,
    onnx_accuracy,
    onnx_logits,
)
from cahp_core.model.pruning import remove_heads
from cahp_core.model.training import evaluate

# a batch and sequence length different from the traced ones (2 sentences, 8 tokens)
TEXTS = ["one", "a much longer sentence than the examples used to trace", "three words here"]
UNEVEN = np.array([[True, True, True, False], [False, True, False, False]])  # 3 + 1 heads
EMPTY_LAYER = np.array([[True, False, True, False], [False, False, False, False]])


def torch_logits(model, encoded) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.as_tensor(v) for k, v in encoded.items()}).logits.numpy()


def test_pruned_onnx_matches_pytorch(tiny, tmp_path):
    model = remove_heads(copy.deepcopy(tiny.model), EMPTY_LAYER)
    path = export_onnx(model, tiny.tokenizer, tmp_path / "model.onnx")
    assert path.is_file() and not list(tmp_path.glob(".onnx-*"))
    enc = tiny.tokenizer(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_allclose(onnx_logits(path, enc), torch_logits(model, enc), atol=1e-5)


@pytest.mark.parametrize("keep", [None, UNEVEN, EMPTY_LAYER], ids=["full", "uneven", "empty"])
def test_fused_graph_matches_pytorch(tiny, tmp_path, keep):
    """Attention fuses in every layer with heads (per-layer head counts), also for pairs
    (token types) and a batch of 5 with its own padding."""
    model = tiny.model if keep is None else remove_heads(copy.deepcopy(tiny.model), keep)
    report = export_onnx_report(model, tiny.tokenizer, tmp_path / "model.onnx")
    layers = 2 if keep is None else int((keep.sum(axis=1) > 0).sum())
    assert report.exporter == "torchscript" and report.optimized and not report.warnings
    assert report.attention_layers == layers and report.attention_fused == layers > 0
    assert report.fused["SkipLayerNormalization"] > 0 and report.fused["BiasGelu"] == 2
    pairs = tiny.tokenizer(TEXTS + ["x", "y z"], ["b"] * 5, padding=True, return_tensors="np")
    assert pairs["token_type_ids"].any()
    for enc in (pairs, tiny.tokenizer(TEXTS[:1], return_tensors="np")):
        np.testing.assert_allclose(
            onnx_logits(report.path, enc), torch_logits(model, enc), atol=1e-5
        )


def test_int8_graph_is_close(tiny, tmp_path):
    model = remove_heads(copy.deepcopy(tiny.model), UNEVEN)
    with torch.no_grad():  # logits of a larger scale than the random head's, so errors show
        model.classifier.weight.mul_(20)
    report = export_onnx_report(model, tiny.tokenizer, tmp_path / "model.onnx", quantize="int8")
    assert report.int8_path == tmp_path / "model.int8.onnx"
    assert set(report.files) == {report.path, report.int8_path}
    enc = tiny.tokenizer(TEXTS * 4, [str(i) for i in range(12)], padding=True, return_tensors="np")
    ref, got = torch_logits(model, enc), onnx_logits(report.int8_path, enc)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() < 0.05 * scale
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1 * scale  # argmax agreement where it is not a tie
    assert clear.any() and (got.argmax(1) == ref.argmax(1))[clear].all()


def test_unfused_export_and_stale_int8(tiny, tmp_path):
    """optimize=False writes the plain graph; a stale int8 graph of an earlier export goes."""
    first = export_onnx_report(tiny.model, tiny.tokenizer, tmp_path / "m.onnx", quantize="int8")
    assert first.int8_path.is_file()
    plain = export_onnx_report(tiny.model, tiny.tokenizer, tmp_path / "m.onnx", optimize=False)
    assert not plain.optimized and plain.fused == {} and plain.int8_path is None
    assert plain.removed == (first.int8_path,) and not first.int8_path.exists()
    enc = tiny.tokenizer(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_allclose(
        onnx_logits(plain.path, enc), torch_logits(tiny.model, enc), atol=1e-5
    )


def test_fusion_failure_is_a_warning(tiny, tmp_path, monkeypatch):
    def broken(raw, out):
        raise RuntimeError("no pattern")

    monkeypatch.setattr(onnx_export, "_fuse", broken)
    report = export_onnx_report(tiny.model, tiny.tokenizer, tmp_path / "model.onnx")
    assert (
        not report.optimized and "optimizer failed (RuntimeError: no pattern)" in report.warnings[0]
    )
    enc = tiny.tokenizer(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_allclose(
        onnx_logits(report.path, enc), torch_logits(tiny.model, enc), atol=1e-5
    )


def test_onnx_accuracy_matches_evaluate(tiny, tmp_path):
    texts = TEXTS * 3 + ["good", "bad film", "not bad at all , really"]
    enc = tiny.tokenizer(texts)
    features = [
        {"input_ids": ids, "attention_mask": mask, "labels": i % 3}
        for i, (ids, mask) in enumerate(zip(enc["input_ids"], enc["attention_mask"], strict=True))
    ]
    path = export_onnx(tiny.model, tiny.tokenizer, tmp_path / "model.onnx")
    got = onnx_accuracy(path, features, batch_size=4)
    want = evaluate(tiny.model, tiny.tokenizer, features)
    assert got == pytest.approx(want) and got["n"] == 12


def test_unknown_quantization_is_refused(tiny, tmp_path):
    with pytest.raises(CAHPError, match="unknown quantization 'int4'"):
        export_onnx(tiny.model, tiny.tokenizer, tmp_path / "model.onnx", quantize="int4")
    assert not list(tmp_path.iterdir())
