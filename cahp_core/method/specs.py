"""Head maps: spec strings like ``0:0,1,2;3:5`` <-> dicts <-> bool ``[layers, heads]``.

The canonical form is a bool array ``keep`` of shape ``[layers, heads]`` (True = kept).
Dicts map a layer to a sorted list of heads; keys may be ints or digit strings (JSON).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from cahp_core.errors import CAHPError

_NUMBER = re.compile(r"-?\d+")
_EXAMPLE = "write layer:heads groups separated by ';', e.g. 0:0,1,2;3:5 or 3:* for a whole layer"


def _number(text: str, spec: str, group: str) -> int:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise CAHPError(f"head spec {spec!r} is malformed at {group.strip()!r}; {_EXAMPLE}")
    return int(text)


def _check_range(layer: int, heads: Sequence[int], n_layers: int, n_heads: int, what: str) -> None:
    if not 0 <= layer < n_layers:
        raise CAHPError(
            f"layer {layer} in {what} is out of range 0..{n_layers - 1}; the model has {n_layers} layers"
        )
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise CAHPError(
            f"head(s) {bad} of layer {layer} in {what} out of range 0..{n_heads - 1}; "
            f"the model has {n_heads} heads per layer"
        )


def parse_head_spec(spec: str, n_layers: int, n_heads: int) -> dict[int, list[int]]:
    """Parse ``layer:heads`` groups separated by ';' (``3:*`` = every head of layer 3).

    Whitespace and empty groups are ignored, so ``""`` is an empty map.
    """
    if not isinstance(spec, str):
        raise CAHPError(f"head spec must be text like '0:0,1;3:5'; got {type(spec).__name__}")
    result: dict[int, list[int]] = {}
    for group in spec.split(";"):
        if not group.strip():
            continue
        layer_text, sep, heads_text = group.partition(":")
        if not sep or not heads_text.strip():
            raise CAHPError(
                f"head spec group {group.strip()!r} needs heads after ':', e.g. 3:5 or 3:*"
            )
        layer = _number(layer_text, spec, group)
        if heads_text.strip() == "*":
            heads = list(range(n_heads))
        else:
            heads = [_number(h, spec, group) for h in heads_text.split(",")]
        _check_range(layer, heads, n_layers, n_heads, "head spec")
        if layer in result:
            raise CAHPError(f"head spec {spec!r} names layer {layer} twice; merge its groups")
        if len(set(heads)) != len(heads):
            raise CAHPError(f"head spec {spec!r} names a head of layer {layer} twice")
        result[layer] = sorted(heads)
    return result


def format_head_spec(heads: Mapping[int, Sequence[int]]) -> str:
    """Inverse of :func:`parse_head_spec`: layers and heads sorted, empty layers left out."""
    return ";".join(
        f"{layer}:{','.join(str(h) for h in sorted(int(h) for h in hs))}"
        for layer, hs in sorted((int(layer), hs) for layer, hs in heads.items())
        if len(hs)
    )


def _head_map(
    heads: Mapping[int, Sequence[int]], n_layers: int, n_heads: int, fill: bool
) -> np.ndarray:
    """``[n_layers, n_heads]`` array of ``fill`` with the listed heads set to ``not fill``."""
    out = np.full((n_layers, n_heads), fill, dtype=bool)
    for layer_key, layer_heads in heads.items():
        layer = int(layer_key)
        listed = [int(h) for h in layer_heads]
        _check_range(layer, listed, n_layers, n_heads, "head map")
        out[layer, listed] = not fill
    return out


def _as_keep(keep: np.ndarray) -> np.ndarray:
    keep = np.asarray(keep, dtype=bool)
    if keep.ndim != 2:
        raise CAHPError(f"a head map must be 2-D [layers, heads]; got shape {keep.shape}")
    return keep


def removed_to_keep(
    removed: Mapping[int, Sequence[int]], n_layers: int, n_heads: int
) -> np.ndarray:
    """Bool ``[n_layers, n_heads]`` keep map with the ``removed`` heads set to False."""
    return _head_map(removed, n_layers, n_heads, fill=True)


def keep_from_dict(kept: Mapping[int, Sequence[int]], n_layers: int, n_heads: int) -> np.ndarray:
    """Bool ``[n_layers, n_heads]`` keep map with only the ``kept`` heads set to True."""
    return _head_map(kept, n_layers, n_heads, fill=False)


def keep_to_removed(keep: np.ndarray) -> dict[int, list[int]]:
    """Removed heads per layer; layers that keep every head are left out."""
    keep = _as_keep(keep)
    return {
        layer: [int(h) for h in np.flatnonzero(~row)]
        for layer, row in enumerate(keep)
        if (~row).any()
    }
