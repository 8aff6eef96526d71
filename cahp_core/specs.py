"""Head maps: spec strings like ``0:0,1,2;3:5`` <-> dicts <-> bool ``[layers, heads]``."""

from __future__ import annotations

import numpy as np

from .errors import CAHPError


def parse_head_spec(spec: str, n_layers: int, n_heads: int) -> dict[int, list[int]]:
    """Parse ``layer:heads`` groups separated by ';' (``3:*`` = every head of layer 3)."""
    result: dict[int, list[int]] = {}
    for group in (g.strip() for g in spec.split(";")):
        if not group:
            continue
        layer_text, sep, heads_text = group.partition(":")
        try:
            layer = int(layer_text)
            heads = (
                list(range(n_heads))
                if heads_text.strip() == "*"
                else [int(h) for h in heads_text.split(",") if h.strip()]
            )
        except ValueError:
            raise CAHPError(
                f"head spec {spec!r} is malformed at {group!r}; write layer:heads groups "
                "separated by ';', e.g. 0:0,1,2;3:5"
            ) from None
        if not sep or not heads:
            raise CAHPError(f"head spec group {group!r} needs heads after ':', e.g. 3:5 or 3:*")
        if not 0 <= layer < n_layers:
            raise CAHPError(f"layer {layer} in head spec is out of range 0..{n_layers - 1}")
        bad = [h for h in heads if not 0 <= h < n_heads]
        if bad:
            raise CAHPError(f"head(s) {bad} of layer {layer} out of range 0..{n_heads - 1}")
        if layer in result or len(set(heads)) != len(heads):
            raise CAHPError(f"head spec {spec!r} names layer {layer} or a head twice")
        result[layer] = sorted(heads)
    return result


def format_head_spec(heads: dict[int, list[int]]) -> str:
    """Inverse of :func:`parse_head_spec` (sorted, empty layers left out)."""
    return ";".join(
        f"{layer}:{','.join(str(h) for h in sorted(hs))}"
        for layer, hs in sorted(heads.items())
        if hs
    )


def removed_to_keep(removed: dict[int, list[int]], n_layers: int, n_heads: int) -> np.ndarray:
    keep = np.ones((n_layers, n_heads), dtype=bool)
    for layer, heads in removed.items():
        keep[layer, heads] = False
    return keep


def keep_to_removed(keep: np.ndarray) -> dict[int, list[int]]:
    return {
        layer: [int(h) for h in np.flatnonzero(~row)]
        for layer, row in enumerate(keep)
        if (~row).any()
    }


def keep_to_dict(keep: np.ndarray) -> dict[int, list[int]]:
    return {layer: [int(h) for h in np.flatnonzero(row)] for layer, row in enumerate(keep)}


def keep_from_dict(kept: dict[int, list[int]], n_layers: int, n_heads: int) -> np.ndarray:
    keep = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, heads in kept.items():
        keep[int(layer), heads] = True
    return keep
