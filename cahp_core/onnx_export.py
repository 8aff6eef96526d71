"""ONNX export of (pruned) encoders and a parity check against onnxruntime."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .errors import CAHPError

ONNX_FILE = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask")


class _LogitsOnly(nn.Module):
    """Wraps a classifier so the exported graph takes ids + mask and returns logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    out_path: str | os.PathLike,
    *,
    opset: int = 17,
) -> Path:
    """Export ``model`` (on CPU, eval mode) to ONNX with dynamic batch and sequence axes."""
    out = Path(out_path)
    model = model.to("cpu").eval()
    sample = tokenizer(
        ["an example sentence for tracing", "short"], padding=True, return_tensors="pt"
    )
    args = (sample["input_ids"], sample["attention_mask"])
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=2)
    dynamic_shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=out.parent)) / out.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _LogitsOnly(model),
                args,
                input_names=list(INPUT_NAMES),
                output_names=["logits"],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
                external_data=False,
            )
        program.save(str(tmp))
        os.replace(tmp, out)
    except Exception as exc:  # the exporter raises many types; say what failed and why
        raise CAHPError(
            f"ONNX export failed ({type(exc).__name__}: {exc}); the folder is kept"
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
        tmp.parent.rmdir()
    return out


def onnx_logits(onnx_path: str | os.PathLike, encoded: dict) -> np.ndarray:
    """Run an exported model with onnxruntime on tokenised inputs (numpy or torch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in INPUT_NAMES}
    return session.run(["logits"], feeds)[0]
