"""Attention-head-pruned BERT-family classifiers saved by CAHP Studio.

This file is copied verbatim into every pruned model folder and named in its
``config.json`` ``auto_map``, so the folder loads with plain transformers::

    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

It imports only torch, transformers and the standard library. Each class is the stock
transformers classifier whose attention projections are shrunk, in ``__init__``, to the heads
listed in ``config.cahp_kept_heads`` (kept head indices per layer; a layer may keep none).
It repeats the projection slicing of ``cahp_core.model.pruning`` on purpose: a pruned folder must
load where this project is not installed (tests/test_remote_load.py checks both agree).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import (
    BertForSequenceClassification,
    CamembertForSequenceClassification,
    ElectraForSequenceClassification,
    RobertaForSequenceClassification,
    XLMRobertaForSequenceClassification,
)


def _linear(in_features: int, out_features: int, like: nn.Linear) -> nn.Linear:
    """An nn.Linear on ``like``'s device and dtype (zero-sized allowed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return nn.Linear(
            in_features,
            out_features,
            bias=like.bias is not None,
            device=like.weight.device,
            dtype=like.weight.dtype,
        )


def _sliced(layer: nn.Linear, rows: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of ``layer`` keeping ``rows`` of its output (dim=0) or input (dim=1)."""
    weight = layer.weight.detach().index_select(dim, rows.to(layer.weight.device))
    new = _linear(weight.shape[1], weight.shape[0], layer)
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None:
            bias = layer.bias.detach()
            new.bias.copy_(bias.index_select(0, rows.to(bias.device)) if dim == 0 else bias)
    return new


class CAHPEmptySelfAttention(nn.Module):
    """Self-attention of a layer whose heads were all removed: contributes nothing.

    Keeps zero-width ``query``/``key``/``value`` so the saved weights load unchanged.
    """

    def __init__(self, like: nn.Linear, head_dim: int):
        super().__init__()
        self.query = _linear(like.in_features, 0, like)
        self.key = _linear(like.in_features, 0, like)
        self.value = _linear(like.in_features, 0, like)
        self.num_attention_heads = 0
        self.attention_head_size = head_dim
        self.all_head_size = 0

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        # [batch, seq, hidden] -> [batch, seq, 0]: no head output to mix
        return hidden_states[..., :0], None


def _checked_kept(config, n_layers: int) -> list[list[int]] | None:
    """``config.cahp_kept_heads`` validated against the architecture (None: keep all)."""
    kept = getattr(config, "cahp_kept_heads", None)
    if kept is None:
        return None
    n_heads = config.num_attention_heads
    if not isinstance(kept, (list, tuple)) or len(kept) != n_layers:
        raise ValueError(
            f"config.cahp_kept_heads must list the kept heads of each of the {n_layers} layers; "
            f"got {kept!r}. Re-export the pruned model."
        )
    layers = []
    for index, heads in enumerate(kept):
        heads = sorted({int(h) for h in heads})
        if any(not 0 <= h < n_heads for h in heads):
            raise ValueError(
                f"config.cahp_kept_heads[{index}] = {heads} names a head outside 0..{n_heads - 1}; "
                "re-export the pruned model"
            )
        layers.append(heads)
    return layers


def shrink_to_kept_heads(model: nn.Module) -> None:
    """Shrink every layer's attention to ``config.cahp_kept_heads`` (in place)."""
    config = model.config
    encoder_layers = model.base_model.encoder.layer
    kept_heads = _checked_kept(config, len(encoder_layers))
    if kept_heads is None:
        return
    head_dim = config.hidden_size // config.num_attention_heads
    for layer, kept in zip(encoder_layers, kept_heads, strict=True):
        if len(kept) == config.num_attention_heads:
            continue
        attention = layer.attention
        rows = torch.tensor(
            [h * head_dim + i for h in kept for i in range(head_dim)], dtype=torch.long
        )
        attention.output.dense = _sliced(attention.output.dense, rows, dim=1)
        self_attention = attention.self
        if not kept:
            attention.self = CAHPEmptySelfAttention(self_attention.query, head_dim)
            continue
        self_attention.query = _sliced(self_attention.query, rows, dim=0)
        self_attention.key = _sliced(self_attention.key, rows, dim=0)
        self_attention.value = _sliced(self_attention.value, rows, dim=0)
        self_attention.num_attention_heads = len(kept)
        self_attention.all_head_size = len(rows)


class CAHPBertForSequenceClassification(BertForSequenceClassification):
    """BERT classifier with the attention heads of ``config.cahp_kept_heads`` only."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shrink_to_kept_heads(self)


class CAHPRobertaForSequenceClassification(RobertaForSequenceClassification):
    """RoBERTa classifier with the attention heads of ``config.cahp_kept_heads`` only."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shrink_to_kept_heads(self)


class CAHPXLMRobertaForSequenceClassification(XLMRobertaForSequenceClassification):
    """XLM-RoBERTa classifier with the attention heads of ``config.cahp_kept_heads`` only."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shrink_to_kept_heads(self)


class CAHPCamembertForSequenceClassification(CamembertForSequenceClassification):
    """CamemBERT classifier with the attention heads of ``config.cahp_kept_heads`` only."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shrink_to_kept_heads(self)


class CAHPElectraForSequenceClassification(ElectraForSequenceClassification):
    """ELECTRA classifier with the attention heads of ``config.cahp_kept_heads`` only."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shrink_to_kept_heads(self)
