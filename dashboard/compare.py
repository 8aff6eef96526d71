"""Two selections side by side: which heads each keeps, their overlap, where in depth they sit
and their expected accuracy (no Streamlit here: the Compare page draws what this returns)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cahp_core.method.proximity import depth_stats
from cahp_core.palette import PRUNED_COLOR
from cahp_core.runs.results import RunView

from .selection_view import CURVE_NAMES, DegreeView, expected_accuracy, method_maps, rule_text
from .theme import DEPTH_LABELS, METHOD_LABELS

MODES = {
    "degrees": "Two degrees",
    "curves": "Two knee curves",
    "gradient": "CAHP vs gradient",
    "runs": "Two runs",
}
OVERLAP_COLORS = {"both": "#7c3aed", "only A": "#2563eb", "only B": "#f97316"}
OVERLAP_TEXT = {"both": "AB", "only A": "A", "only B": "B"}


@dataclass(frozen=True, eq=False)
class Side:
    """One of the two selections: where it comes from and the heads it keeps."""

    name: str  # "A" or "B"
    run: str  # the run's label
    view: RunView
    method: str  # "cahp" or "gradient"
    chosen: DegreeView  # the CAHP selection (for gradient: the one whose head count it matches)
    keep: np.ndarray  # bool [L, H]
    expected_accuracy: float | None  # masked accuracy interpolated from the run's task curve

    @property
    def heads_kept(self) -> int:
        return int(self.keep.sum())

    @property
    def title(self) -> str:
        """``A: CAHP, degree 6``."""
        method = METHOD_LABELS.get(self.method, self.method).split(" (")[0]
        return f"{self.name}: {method}, degree {self.chosen.degree}"

    @property
    def description(self) -> str:
        """Run, knee curve and rule (for gradient: whose head count it keeps)."""
        curve = f"{CURVE_NAMES[self.chosen.knee_curve]}, degree {self.chosen.degree}"
        if self.method == "cahp":
            return f"{self.run} · {curve} · rule {rule_text(self.chosen.rule)}"
        return f"{self.run} · as many heads as CAHP on the {curve}"


def cahp_side(name: str, run: str, view: RunView, chosen: DegreeView) -> Side:
    """CAHP's selection (the consensus seed's, as every page shows and Export writes)."""
    return Side(name, run, view, "cahp", chosen, chosen.keep, chosen.expected_accuracy)


def gradient_side(name: str, run: str, view: RunView, chosen: DegreeView) -> Side:
    """Gradient pruning (Michel et al., per-layer normalised) keeping CAHP's head count."""
    keep = method_maps(view, chosen.keep)["gradient"]
    accuracy = expected_accuracy(view, int(keep.sum()), "gradient")
    return Side(name, run, view, "gradient", chosen, keep, accuracy)


def comparable(a: Side, b: Side) -> bool:
    """Do the two maps cover the same heads (same layers x heads)?"""
    return a.keep.shape == b.keep.shape


def overlap(a: np.ndarray, b: np.ndarray) -> dict:
    """Jaccard index and counts of the heads kept by both, only ``a`` and only ``b``."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    both, union = int((a & b).sum()), int((a | b).sum())
    return {
        "jaccard": both / union if union else 1.0,
        "both": both,
        "only A": int((a & ~b).sum()),
        "only B": int((~a & b).sum()),
    }


def head_names(keep: np.ndarray) -> list[str]:
    """``["L0H2", ...]`` of a kept map, layer by layer."""
    return [f"L{ly}H{h}" for ly, h in zip(*np.nonzero(keep), strict=True)]


def overlap_heads(a: np.ndarray, b: np.ndarray) -> dict[str, list[str]]:
    """The heads kept by both, only ``a`` and only ``b``, by name."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return {"both": head_names(a & b), "only A": head_names(a & ~b), "only B": head_names(~a & b)}


def depth_table(sides: list[Side]) -> pd.DataFrame:
    """One row per side: its depth statistics (``depth_stats``) and expected accuracy."""
    rows = []
    for side in sides:
        stats = depth_stats(side.keep)
        rows.append(
            {
                "selection": side.name,
                "method": METHOD_LABELS.get(side.method, side.method),
                "run": side.run,
                "degree": side.chosen.degree,
                "knee curve": CURVE_NAMES[side.chosen.knee_curve],
                "rule": rule_text(side.chosen.rule) if side.method == "cahp" else "",
                "kept per layer": str(stats.pop("kept_per_layer")),
                **{DEPTH_LABELS[k]: round(v, 3) for k, v in stats.items()},
                "expected accuracy": None
                if side.expected_accuracy is None
                else round(side.expected_accuracy, 3),
            }
        )
    return pd.DataFrame(rows)


def overlap_figure(a: np.ndarray, b: np.ndarray) -> go.Figure:
    """Layer x head grid: heads kept by both (AB), only A (A), only B (B), or neither."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n_layers, n_heads = a.shape
    layers, heads = np.divmod(np.arange(a.size), n_heads)
    fig = go.Figure()
    fig.add_scatter(
        x=heads,
        y=layers,
        mode="markers",
        marker={"symbol": "square", "size": 26, "color": PRUNED_COLOR},
        hoverinfo="skip",
        name="neither",
    )
    for group, mask in (("both", a & b), ("only A", a & ~b), ("only B", ~a & b)):
        flat = mask.ravel()
        fig.add_scatter(
            x=heads[flat],
            y=layers[flat],
            mode="markers+text",
            text=[OVERLAP_TEXT[group]] * int(flat.sum()),
            textfont={"color": "white"},
            hovertext=[f"{name}: {group}" for name in head_names(mask)],
            hoverinfo="text",
            marker={"symbol": "square", "size": 26, "color": OVERLAP_COLORS[group]},
            name=f"{group} ({int(flat.sum())})",
        )
    fig.update_layout(
        xaxis={"title": "head", "dtick": 1},
        yaxis={"title": "layer", "dtick": 1, "autorange": "reversed"},
        height=140 + 42 * n_layers,
        margin={"t": 20},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
