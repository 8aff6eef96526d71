"""Padding-aware behavioural signatures of attention heads (streaming, per class).

For every example, each head's attention map is cropped to the real tokens (padding rows
and columns never enter), resized to a fixed ``S x S`` grid and flattened. Per head and per
class a streaming mean and variance are kept, so memory does not grow with the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from cahp_core.errors import CAHPError
from cahp_core.model.heads import head_layout


@dataclass(frozen=True)
class HeadSignatures:
    """Per-head, per-class Gaussian summary of cropped + resized attention maps.

    mean, var: float64 ``[layers, heads, classes, S*S]``; count: float64 ``[classes]``.
    """

    mean: np.ndarray  # [L, H, C, D]
    var: np.ndarray  # [L, H, C, D]
    count: np.ndarray  # [C]

    @property
    def n_layers(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.mean.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.mean.shape[2])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> HeadSignatures:
        return cls(
            mean=np.asarray(arrays["mean"], dtype=np.float64),
            var=np.asarray(arrays["var"], dtype=np.float64),
            count=np.asarray(arrays["count"], dtype=np.float64),
        )


class StreamingMoments:
    """Per-class running mean and variance (Chan et al. parallel update), float64."""

    def __init__(self, n_classes: int, shape: tuple[int, ...]):
        self.count = np.zeros(n_classes, dtype=np.float64)
        self.mean = np.zeros((n_classes, *shape), dtype=np.float64)
        self.m2 = np.zeros((n_classes, *shape), dtype=np.float64)

    def update(self, values: np.ndarray, labels: np.ndarray) -> None:
        """Add ``values`` ``[n, *shape]`` whose classes are ``labels`` ``[n]``."""
        for label in np.unique(labels):
            x = values[labels == label].astype(np.float64, copy=False)
            n_old, n_new = self.count[label], float(len(x))
            batch_mean = x.mean(axis=0)
            batch_m2 = ((x - batch_mean) ** 2).sum(axis=0)
            delta = batch_mean - self.mean[label]
            total = n_old + n_new
            self.mean[label] += delta * (n_new / total)
            self.m2[label] += batch_m2 + delta**2 * (n_old * n_new / total)
            self.count[label] = total

    def variance(self) -> np.ndarray:
        """Population variance per class (0 for classes never seen)."""
        return self.m2 / np.maximum(self.count, 1.0).reshape(-1, *([1] * (self.m2.ndim - 1)))


def crop_and_resize(
    attentions: torch.Tensor, attention_mask: torch.Tensor, grid: int
) -> torch.Tensor:
    """Crop each example's maps to its real tokens and resize them to ``grid x grid``.

    attentions: ``[batch, maps, seq, seq]``; attention_mask: ``[batch, seq]`` (1 = real token).
    Returns ``[batch, maps, grid * grid]``. Works for left or right padding.
    """
    batch, maps = attentions.shape[:2]
    out = attentions.new_empty(batch, maps, grid * grid)
    lengths = attention_mask.sum(dim=1)  # [batch]
    for length in torch.unique(lengths).tolist():
        members = torch.nonzero(lengths == length).flatten()  # examples with this many tokens
        positions = torch.stack(
            [torch.nonzero(attention_mask[i]).flatten() for i in members]
        )  # [m, length]
        sub = attentions[members]  # [m, maps, seq, seq]
        rows = positions[:, None, :, None].expand(-1, maps, -1, sub.shape[-1])
        sub = torch.gather(sub, 2, rows)  # [m, maps, length, seq]
        cols = positions[:, None, None, :].expand(-1, maps, length, -1)
        sub = torch.gather(sub, 3, cols)  # [m, maps, length, length]
        resized = F.interpolate(sub, size=(grid, grid), mode="bilinear", align_corners=False)
        out[members] = resized.flatten(2)  # [m, maps, grid * grid]
    return out


def ensure_eager(model: PreTrainedModel) -> None:
    """Attention weights exist only in eager mode; switch the model to it."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")


def compute_signatures(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict],
    n_classes: int,
    *,
    grid: int = 32,
    batch_size: int = 32,
    progress: Callable[[float, str], None] | None = None,
    show_progress: bool = True,
) -> HeadSignatures:
    """Streaming per-class signatures of every head over tokenised ``features``."""
    labels = np.array([f["labels"] for f in features], dtype=np.int64)
    return compute_signature_sets(
        model,
        tokenizer,
        features,
        n_classes,
        {"all": labels},
        grid=grid,
        batch_size=batch_size,
        progress=progress,
        show_progress=show_progress,
    )["all"]


@torch.no_grad()
def compute_signature_sets(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict],
    n_classes: int,
    classes: dict[str, np.ndarray],
    *,
    grid: int = 32,
    batch_size: int = 32,
    progress: Callable[[float, str], None] | None = None,
    show_progress: bool = True,
) -> dict[str, HeadSignatures]:
    """Several signature sets from one forward pass: ``classes[name]`` ``[examples]`` gives
    every example's class in set ``name`` (-1 leaves it out of that set). The diagnostics use
    this for two halves of the data and for shuffled labels."""
    if grid < 2:
        raise CAHPError(f"signature grid size must be >= 2; got {grid}")
    if len(features) == 0:
        raise CAHPError("no examples to compute signatures on; pass a larger --max-train")
    for name, assigned in classes.items():
        if np.shape(assigned) != (len(features),):
            raise CAHPError(
                f"signature set {name!r} assigns {np.shape(assigned)} classes for "
                f"{len(features)} examples; give one class (or -1) per example"
            )
    layout = head_layout(model)
    if len(set(layout.heads_per_layer)) != 1:
        raise CAHPError("signatures need the unpruned model; pass the fine-tuned full model")
    ensure_eager(model)
    model.eval()
    device = next(model.parameters()).device
    n_layers, n_heads = layout.n_layers, layout.max_heads
    moments = {
        name: StreamingMoments(n_classes, (n_layers * n_heads, grid * grid)) for name in classes
    }
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    loader = DataLoader(
        [{k: v for k, v in features[i].items() if k != "labels"} for i in order],
        batch_size=batch_size,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
    for step, batch in enumerate(tqdm(loader, desc="signatures", disable=not show_progress)):
        members = order[step * batch_size : (step + 1) * batch_size]  # examples of this batch
        batch = {k: v.to(device) for k, v in batch.items()}
        attentions = model(**batch, output_attentions=True).attentions  # L x [B, H, T, T]
        stacked = torch.cat(attentions, dim=1).float()  # [B, L*H, T, T]
        summary = crop_and_resize(stacked, batch["attention_mask"], grid).cpu().numpy()
        for name, assigned in classes.items():  # summary: [B, L*H, S*S]
            labels = np.asarray(assigned)[members]  # [B]
            if (labels >= 0).any():
                moments[name].update(summary[labels >= 0], labels[labels >= 0])
        if progress:
            progress((step + 1) / len(loader), f"batch {step + 1}/{len(loader)}")
    shape = (n_classes, n_layers, n_heads, grid * grid)
    out = {}
    for name, m in moments.items():
        mean = m.mean.reshape(shape).transpose(1, 2, 0, 3)  # [L, H, C, D]
        var = m.variance().reshape(shape).transpose(1, 2, 0, 3)
        out[name] = HeadSignatures(np.ascontiguousarray(mean), np.ascontiguousarray(var), m.count)
    return out
