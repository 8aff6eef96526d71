"""Differentiable head gates applied through forward hooks.

transformers 5 silently ignores ``head_mask``, so CAHP owns masking: each head's output
(its slice of the context vector, before the output projection) is multiplied by a gate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from cahp_core.errors import CAHPError
from cahp_core.model.heads import attention_blocks, head_layout


def _gate_hook(gate: torch.Tensor, head_dim: int):
    """A forward pre-hook for the output projection that scales each head's slice."""

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]):
        context = args[0]  # [batch, seq, heads * head_dim]
        shape = context.shape
        per_head = context.view(*shape[:-1], -1, head_dim)  # [batch, seq, heads, head_dim]
        gated = per_head * gate.to(context.dtype).view(-1, 1)
        return (gated.view(shape), *args[1:])

    return hook


def as_gate_tensor(gates: torch.Tensor | np.ndarray, model: nn.Module) -> torch.Tensor:
    """Validate a gate array against the model's layout and return a float tensor."""
    layout = head_layout(model)
    tensor = gates if isinstance(gates, torch.Tensor) else torch.as_tensor(np.asarray(gates))
    expected = (layout.n_layers, layout.max_heads)
    if tuple(tensor.shape) != expected:
        raise CAHPError(
            f"head gates have shape {tuple(tensor.shape)} but the model has "
            f"{expected[0]} layers x {expected[1]} heads; pass a [layers, heads] array"
        )
    if not tensor.is_floating_point():
        tensor = tensor.float()
    return tensor


@contextmanager
def head_gates(model: nn.Module, gates: torch.Tensor | np.ndarray) -> Iterator[torch.Tensor]:
    """Multiply every head's output by ``gates[layer, head]`` inside the block.

    Gates of ones give bit-identical logits; zeros silence a head; gradients reach a
    ``gates`` tensor that requires grad. Hooks are always removed on exit.
    """
    gate_tensor = as_gate_tensor(gates, model)  # [layers, heads]
    handles = []
    try:
        for block in attention_blocks(model):
            if block.n_heads == 0:
                continue
            gate = gate_tensor[block.layer, : block.n_heads].to(block.output.weight.device)
            handles.append(block.output.register_forward_pre_hook(_gate_hook(gate, block.head_dim)))
        yield gate_tensor
    finally:
        for handle in handles:
            handle.remove()


def keep_to_gates(keep: np.ndarray) -> torch.Tensor:
    """A bool ``[layers, heads]`` kept-head map as a float gate tensor of 0/1."""
    return torch.as_tensor(np.asarray(keep, dtype=np.float32))
