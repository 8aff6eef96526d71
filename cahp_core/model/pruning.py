"""Physical head removal (uneven across layers, empty layers allowed), save and reload.

transformers 5 dropped ``prune_heads``; this module slices the projections itself. A layer
left with zero heads keeps its output projection's bias and the residual path, exactly as a
fully gated layer does, so a pruned model reproduces the masked original.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from cahp_core.atomic import replace_dir_atomic, write_json_atomic
from cahp_core.errors import CAHPError
from cahp_core.model.folder_format import EXPORT_INFO, KEPT_HEADS_KEY, LEGACY_KEPT_HEADS_FILE
from cahp_core.model.heads import AttentionBlock, attention_blocks, check_supported, head_layout
from cahp_core.model.loaded_model import LoadedModel, pick_device
from cahp_core.model.model_card import write_model_card
from cahp_core.model.remote_code import MODELING_FILE
from cahp_core.model.remote_code import auto_map as remote_auto_map


def _new_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """An nn.Linear whose (possibly zero-sized) weights are overwritten right after."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return nn.Linear(in_features, out_features, bias=bias)


class EmptySelfAttention(nn.Module):
    """Self-attention of a layer whose heads were all removed: contributes nothing.

    Keeps zero-width ``query``/``key``/``value`` so the head-access layer still reads it.
    """

    def __init__(self, hidden_size: int, head_dim: int):
        super().__init__()
        self.query = _new_linear(hidden_size, 0)
        self.key = _new_linear(hidden_size, 0)
        self.value = _new_linear(hidden_size, 0)
        self.num_attention_heads = 0
        self.attention_head_size = head_dim
        self.all_head_size = 0

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        # [batch, seq, hidden] -> [batch, seq, 0]: no head output to mix
        return hidden_states[..., :0], None


def _head_rows(kept: list[int], head_dim: int) -> torch.Tensor:
    """Row indices of the kept heads inside a [heads * head_dim] projection."""
    rows = [h * head_dim + i for h in kept for i in range(head_dim)]
    return torch.tensor(rows, dtype=torch.long)


def _sliced_linear(layer: nn.Linear, rows: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of ``layer`` keeping ``rows`` of its output (dim=0) or input (dim=1)."""
    weight = layer.weight.detach().index_select(dim, rows.to(layer.weight.device))
    out_features, in_features = weight.shape
    new = _new_linear(in_features, out_features, bias=layer.bias is not None)
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None:
            bias = layer.bias.detach()
            new.bias.copy_(bias.index_select(0, rows.to(bias.device)) if dim == 0 else bias)
    return new


def _prune_block(block: AttentionBlock, kept: list[int]) -> None:
    rows = _head_rows(kept, block.head_dim)
    attention = block.attention
    attention.output.dense = _sliced_linear(block.output, rows, dim=1)
    if not kept:
        hidden = block.query.in_features
        empty = EmptySelfAttention(hidden, block.head_dim)
        attention.self = empty.to(block.query.weight.device)
        return
    attention.self.query = _sliced_linear(block.query, rows, dim=0)
    attention.self.key = _sliced_linear(block.key, rows, dim=0)
    attention.self.value = _sliced_linear(block.value, rows, dim=0)
    attention.self.num_attention_heads = len(kept)
    attention.self.all_head_size = len(rows)


def validate_keep(keep: np.ndarray, model: nn.Module) -> np.ndarray:
    """Check a bool ``[layers, heads]`` map against a (so far unpruned) model."""
    keep = np.asarray(keep)
    layout = head_layout(model)
    expected = (layout.n_layers, layout.max_heads)
    if keep.shape != expected or keep.dtype != bool:
        raise CAHPError(
            f"kept-head map must be a bool array of shape {expected}; got {keep.dtype} {keep.shape}"
        )
    if len(set(layout.heads_per_layer)) != 1:
        raise CAHPError("this model is already pruned; prune the original model instead")
    return keep


def remove_heads(model: nn.Module, keep: np.ndarray) -> nn.Module:
    """Physically remove every head where ``keep`` is False (in place) and return the model.

    ``keep`` is bool ``[layers, heads]``. Copy a shared model first (``copy.deepcopy``).
    """
    keep = validate_keep(keep, model)
    for block in attention_blocks(model):
        kept = [int(h) for h in np.flatnonzero(keep[block.layer])]
        if len(kept) < block.n_heads:
            _prune_block(block, kept)
    setattr(model.config, KEPT_HEADS_KEY, keep_as_lists(keep))
    return model


def keep_as_lists(keep: np.ndarray) -> list[list[int]]:
    """Kept head indices per layer, JSON-friendly."""
    return [[int(h) for h in np.flatnonzero(row)] for row in np.asarray(keep)]


def keep_from_lists(kept: list[list[int]], n_heads: int) -> np.ndarray:
    """Inverse of :func:`keep_as_lists`."""
    keep = np.zeros((len(kept), n_heads), dtype=bool)
    for layer, heads in enumerate(kept):
        keep[layer, heads] = True
    return keep


def _check_saved_layout(model: nn.Module, keep: np.ndarray) -> None:
    """Refuse to save a model whose heads per layer differ from ``keep``'s."""
    if keep.ndim != 2:
        raise CAHPError(f"kept-head map must be a [layers, heads] array; got shape {keep.shape}")
    have = head_layout(model).heads_per_layer
    want = tuple(int(n) for n in keep.sum(axis=1))
    if have != want:
        raise CAHPError(
            f"the model keeps {list(have)} heads per layer but the kept-head map says "
            f"{list(want)}; prune with remove_heads(model, keep) before save_pruned"
        )


def _add_remote_code(folder: Path, keep: np.ndarray) -> None:
    """Make ``folder`` load with plain transformers: ``from_pretrained(folder,
    trust_remote_code=True)`` (modeling file copied in, named in config.json's auto_map)."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = remote_auto_map(str(config.get("model_type")))
    config[KEPT_HEADS_KEY] = keep_as_lists(keep)  # the one record of the map
    write_json_atomic(config_path, config)
    shutil.copyfile(MODELING_FILE, folder / MODELING_FILE.name)


def save_pruned(
    loaded: LoadedModel,
    keep: np.ndarray,
    out_dir: str | os.PathLike,
    extra: dict | None = None,
    *,
    complete: Callable[[Path, dict], None] | None = None,
) -> Path:
    """Save a pruned model folder atomically: safetensors, tokenizer, config.json (with the
    kept-head map, its one record), the modeling file that loads it with plain transformers,
    ``cahp_export.json`` (``extra``: what the export kept and measured) and a README.md model
    card.

    ``complete(staging_folder, head_map)`` adds more files (ONNX graphs, ...) and what it
    measured to ``head_map["cahp"]``; the export record and the card are written after it,
    once, and the folder appears under its name only then: an interrupted save leaves no
    half-written folder."""
    keep = np.asarray(keep, dtype=bool)
    _check_saved_layout(loaded.model, keep)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        _add_remote_code(tmp, keep)
        head_map = card_head_map(keep, extra)
        if complete is not None:
            complete(tmp, head_map)
        write_json_atomic(tmp / EXPORT_INFO, head_map["cahp"])
        write_model_card(tmp, head_map)  # last: it lists the files on disk
        replace_dir_atomic(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def card_head_map(keep: np.ndarray, info: dict | None = None) -> dict:
    """What a model card is written from: the kept-head map and the export's ``info``."""
    return {
        "n_layers": int(keep.shape[0]),
        "n_heads": int(keep.shape[1]),
        "kept": keep_as_lists(keep),
        "heads_kept": int(keep.sum()),
        "cahp": info if info is not None else {},
    }


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_pruned_folder(model_dir: str | os.PathLike) -> bool:
    """Does ``model_dir`` hold a pruned model (a kept-head map in its config.json, or a
    folder exported before the map moved there)?"""
    folder = Path(model_dir)
    config = _read_json(folder / "config.json") or {}
    return KEPT_HEADS_KEY in config or (folder / LEGACY_KEPT_HEADS_FILE).is_file()


def read_keep(model_dir: str | os.PathLike) -> np.ndarray:
    """The kept-head map ``[layers, heads]`` of a pruned folder (config.json's
    ``cahp_kept_heads``; a separate file in folders exported before it moved there)."""
    folder = Path(model_dir)
    config = _read_json(folder / "config.json") or {}
    try:
        if KEPT_HEADS_KEY in config:
            return keep_from_lists(config[KEPT_HEADS_KEY], int(config["num_attention_heads"]))
        legacy = _read_json(folder / LEGACY_KEPT_HEADS_FILE)
        if legacy is None:
            raise ValueError(f"config.json has no {KEPT_HEADS_KEY!r}")
        return keep_from_lists(legacy["kept"], int(legacy["n_heads"]))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CAHPError(
            f"the kept-head map of {folder} is missing or corrupt ({exc}); re-export the "
            "pruned model"
        ) from exc


def _load_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise CAHPError(f"{model_dir} holds no .safetensors weights; re-export the pruned model")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(str(shard)))
    return state


def load_pruned(
    model_dir: str | os.PathLike, *, device: str = "cpu", attn_implementation: str = "eager"
) -> LoadedModel:
    """Reload a folder written by :func:`save_pruned` (architecture rebuilt from the head map)."""
    folder = Path(model_dir)
    keep = read_keep(folder)
    config = AutoConfig.from_pretrained(folder)
    check_supported(config)
    model = AutoModelForSequenceClassification.from_config(
        config, attn_implementation=attn_implementation
    )
    remove_heads(model, keep)
    missing, unexpected = model.load_state_dict(_load_state_dict(folder), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise CAHPError(
            f"weights in {folder} do not match its kept-head map "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); re-export the pruned model"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.eval()
    return LoadedModel(model.to(pick_device(device)), tokenizer, str(folder))
