import copy

import numpy as np
import torch

from cahp_core.onnx_export import export_onnx, onnx_logits
from cahp_core.pruning import remove_heads


def test_pruned_onnx_matches_pytorch(tiny, tmp_path):
    keep = np.array([[True, False, True, False], [False, False, False, False]])  # empty layer
    model = remove_heads(copy.deepcopy(tiny.model), keep)
    path = export_onnx(model, tiny.tokenizer, tmp_path / "model.onnx")
    assert path.is_file() and not list(tmp_path.glob(".onnx-*"))
    # a batch and sequence length different from the traced ones
    texts = ["one", "a much longer sentence than the examples used to trace", "three words here"]
    enc = tiny.tokenizer(texts, padding=True, return_tensors="np")
    got = onnx_logits(path, enc)
    with torch.no_grad():
        ref = model(
            input_ids=torch.as_tensor(enc["input_ids"]),
            attention_mask=torch.as_tensor(enc["attention_mask"]),
        ).logits.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
