"""Gradient salience of every head: mean |dLoss/d gate| over the first training batches."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from cahp_core.errors import CAHPError
from cahp_core.model.heads import head_layout
from cahp_core.model.masking import head_gates


@dataclass(frozen=True)
class Salience:
    """raw: mean |dL/dgate| per head ``[L, H]``; normalised: min-max scaled to [0, 1]."""

    raw: np.ndarray  # [L, H]
    normalised: np.ndarray  # [L, H]
    batches: int
    examples: int

    def to_dict(self) -> dict:
        return {
            "raw": self.raw.tolist(),
            "normalised": self.normalised.tolist(),
            "batches": self.batches,
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Salience:
        return cls(
            np.asarray(d["raw"], dtype=np.float64),
            np.asarray(d["normalised"], dtype=np.float64),
            int(d["batches"]),
            int(d["examples"]),
        )


def min_max(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant array becomes all ones (every head equally salient)."""
    low, high = float(values.min()), float(values.max())
    if high - low <= 0:
        return np.ones_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def training_loader(
    tokenizer: PreTrainedTokenizerBase, features: Sequence[dict], batch_size: int, seed: int
) -> DataLoader:
    """The shuffled, seeded order in which training sees its batches."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        list(features),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )


def gradient_salience(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict],
    *,
    fraction: float = 0.25,
    batch_size: int = 32,
    seed: int = 42,
    progress: Callable[[float, str], None] | None = None,
    show_progress: bool = True,
) -> Salience:
    """|dLoss/d gate| per head averaged over the first ``fraction`` of training batches."""
    if not 0 < fraction <= 1:
        raise CAHPError(f"salience fraction must be in (0, 1]; got {fraction}")
    if len(features) == 0:
        raise CAHPError("no training examples for salience; pass a larger --max-train")
    layout = head_layout(model)
    model.eval()  # no dropout: salience of the trained model, deterministic
    device = next(model.parameters()).device
    loader = training_loader(tokenizer, features, batch_size, seed)
    n_batches = max(1, math.ceil(fraction * len(loader)))
    gates = torch.ones(layout.n_layers, layout.max_heads, device=device, requires_grad=True)
    total = torch.zeros(layout.n_layers, layout.max_heads, dtype=torch.float64)
    examples = 0
    with head_gates(model, gates):
        for step, batch in enumerate(
            tqdm(loader, desc="salience", total=n_batches, disable=not show_progress)
        ):
            if step >= n_batches:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            (grad,) = torch.autograd.grad(loss, gates)  # [L, H]
            total += grad.detach().abs().double().cpu()
            examples += int(batch["input_ids"].shape[0])
            if progress:
                progress((step + 1) / n_batches, f"batch {step + 1}/{n_batches}")
    raw = (total / n_batches).numpy()
    return Salience(raw=raw, normalised=min_max(raw), batches=n_batches, examples=examples)
