"""A loaded model with its tokenizer, and the device it runs on: what ``models`` (loading)
and ``pruning`` (surgery) share, so that neither imports the other's internals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cahp_core.errors import CAHPError


@dataclass
class LoadedModel:
    """A sequence-classification model with its tokenizer and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str


def pick_device(device: str = "auto") -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available) as a torch device."""
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise CAHPError(f"unknown device {device!r}; use cpu, cuda or auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CAHPError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)
