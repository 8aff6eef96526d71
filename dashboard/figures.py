"""Plotly figure builders: pure functions of arrays (used by the pages and the HTML report)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from cahp_core.knee import KneeResult

from .theme import KEPT_COLOR, METHOD_COLORS, METHOD_LABELS, cluster_color


def knee_figure(knee: KneeResult, expected: float | None = None) -> go.Figure:
    """The marginal-performance curve, its polynomial fit and the knee."""
    fig = go.Figure()
    fig.add_scatter(
        x=knee.x, y=knee.y, mode="markers", name="cluster quality", marker={"color": "#94a3b8"}
    )
    fig.add_scatter(
        x=knee.x,
        y=knee.y_fit,
        mode="lines",
        name=f"polynomial, degree {knee.degree}",
        line={"color": METHOD_COLORS["cahp"], "width": 3},
    )
    label = f"knee k={knee.knee}" + (" (fallback)" if knee.fallback else "")
    fig.add_vline(x=knee.knee, line_dash="dash", line_color="#dc2626", annotation_text=label)
    fig.update_layout(
        xaxis_title="number of clusters k",
        yaxis_title="mean simplified silhouette",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 30},
    )
    return fig


def task_curve_figure(records: list[dict], heads_kept: int | None = None) -> go.Figure:
    """Masked validation accuracy versus heads kept, per method (before fine-tuning)."""
    fig = go.Figure()
    for method in ("cahp", "gradient", "random"):
        points = sorted((r["heads_kept"], r["accuracy"]) for r in records if r["method"] == method)
        if points:
            x, y = zip(*points, strict=True)
            fig.add_scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=METHOD_LABELS[method],
                line={"color": METHOD_COLORS[method]},
            )
    if heads_kept is not None:
        fig.add_vline(
            x=heads_kept,
            line_dash="dash",
            line_color="#dc2626",
            annotation_text=f"{heads_kept} heads",
        )
    fig.update_layout(
        xaxis_title="heads kept",
        yaxis_title="masked accuracy (no fine-tuning)",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 30},
    )
    return fig


def layer_map_figure(
    labels: np.ndarray, keep: np.ndarray, salience: np.ndarray | None = None
) -> go.Figure:
    """Layer x head grid coloured by cluster; kept heads drawn as stars."""
    n_layers, n_heads = keep.shape
    layers, heads = np.divmod(np.arange(n_layers * n_heads), n_heads)
    text = [
        f"layer {ly}, head {h}<br>cluster {labels[i]}"
        + (f"<br>salience {salience[ly, h]:.2f}" if salience is not None else "")
        + ("<br><b>kept</b>" if keep[ly, h] else "")
        for i, (ly, h) in enumerate(zip(layers, heads, strict=True))
    ]
    fig = go.Figure()
    fig.add_scatter(
        x=heads,
        y=layers,
        mode="markers",
        hovertext=text,
        hoverinfo="text",
        showlegend=False,
        marker={
            "symbol": "square",
            "size": 26,
            "color": [cluster_color(c) for c in labels],
            "opacity": 0.85,
        },
    )
    kept = keep.ravel()
    fig.add_scatter(
        x=heads[kept],
        y=layers[kept],
        mode="markers",
        name="kept head",
        hoverinfo="skip",
        marker={
            "symbol": "star",
            "size": 14,
            "color": "white",
            "line": {"color": KEPT_COLOR, "width": 1.5},
        },
    )
    fig.update_layout(
        xaxis={"title": "head", "dtick": 1},
        yaxis={"title": "layer", "dtick": 1, "autorange": "reversed"},
        height=120 + 42 * n_layers,
        margin={"t": 20},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def cluster_sizes_figure(labels: np.ndarray) -> go.Figure:
    clusters, sizes = np.unique(labels, return_counts=True)
    fig = go.Figure(
        go.Bar(
            x=[str(c) for c in clusters], y=sizes, marker_color=[cluster_color(c) for c in clusters]
        )
    )
    fig.update_layout(xaxis_title="cluster", yaxis_title="heads", margin={"t": 20})
    return fig


def embedding_figure(
    points: np.ndarray, labels: np.ndarray, keep: np.ndarray, title: str
) -> go.Figure:
    """2-D embedding of the heads, coloured by cluster, kept heads outlined."""
    n_heads = keep.shape[1]
    index = np.arange(len(points))
    text = [f"L{i // n_heads}H{i % n_heads}, cluster {labels[i]}" for i in index]
    kept = keep.ravel()
    fig = go.Figure(
        go.Scatter(
            x=points[:, 0],
            y=points[:, 1],
            mode="markers",
            hovertext=text,
            hoverinfo="text",
            marker={
                "size": np.where(kept, 15, 9),
                "color": [cluster_color(c) for c in labels],
                "line": {"width": np.where(kept, 2.5, 0), "color": KEPT_COLOR},
            },
        )
    )
    fig.update_layout(
        title=title,
        margin={"t": 40},
        xaxis={"showticklabels": False},
        yaxis={"showticklabels": False},
    )
    return fig


def per_layer_figure(maps: dict[str, np.ndarray]) -> go.Figure:
    """Kept heads per layer, methods side by side."""
    fig = go.Figure()
    for method, keep in maps.items():
        fig.add_bar(
            x=[f"layer {i}" for i in range(keep.shape[0])],
            y=keep.sum(axis=1),
            name=METHOD_LABELS.get(method, method),
            marker_color=METHOD_COLORS.get(method),
        )
    fig.update_layout(
        barmode="group",
        yaxis_title="heads kept",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 20},
    )
    return fig


def head_map_figure(head_map: np.ndarray, layer: int, head: int) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=head_map, colorscale="Blues", showscale=False))
    fig.update_layout(
        title=f"mean attention map of L{layer}H{head} (real tokens, resized)",
        yaxis={"autorange": "reversed", "title": "query position"},
        xaxis={"title": "key position"},
        margin={"t": 40},
        height=380,
    )
    return fig


def graph_figure(
    graph: dict,
    labels: np.ndarray,
    keep: np.ndarray,
    salience: np.ndarray,
    layers: list[int] | None = None,
    clusters: list[int] | None = None,
) -> go.Figure:
    """Plotly view of the head graph: heads at (layer, head), kNN edges as lines.

    Only heads of the chosen ``layers`` and ``clusters`` are drawn (all when None).
    """
    n_layers, n_heads = keep.shape
    index = np.arange(keep.size)
    layer_of, head_of = index // n_heads, index % n_heads
    shown = np.ones(keep.size, dtype=bool)
    if layers is not None:
        shown &= np.isin(layer_of, layers)
    if clusters is not None:
        shown &= np.isin(labels, clusters)
    position = {
        n["id"]: (int(n["layer"]), int(n["head"]))
        for n in graph["nodes"]
        if shown[int(n["layer"]) * n_heads + int(n["head"])]
    }
    edge_x, edge_y = [], []
    for edge in graph["edges"]:
        if edge["source"] in position and edge["target"] in position:
            (x0, y0), (x1, y1) = position[edge["source"]], position[edge["target"]]
            edge_x += [x0, x1, None]
            edge_y += [y0, y1, None]
    fig = go.Figure()
    fig.add_scatter(
        x=edge_x,
        y=edge_y,
        mode="lines",
        line={"color": "#cbd5e1", "width": 1},
        hoverinfo="skip",
        showlegend=False,
    )
    nodes = index[shown]
    fig.add_scatter(
        x=layer_of[nodes],
        y=head_of[nodes],
        mode="markers",
        showlegend=False,
        hoverinfo="text",
        hovertext=[
            f"layer {layer_of[i]}, head {head_of[i]}<br>cluster {labels[i]}"
            f"<br>salience {salience.flat[i]:.2f}" + ("<br><b>kept</b>" if keep.flat[i] else "")
            for i in nodes
        ],
        marker={
            "size": 8 + 22 * salience.ravel()[nodes],
            "color": [cluster_color(labels[i]) for i in nodes],
            "symbol": np.where(keep.ravel()[nodes], "star", "circle"),
            "line": {"width": np.where(keep.ravel()[nodes], 2, 0), "color": KEPT_COLOR},
        },
    )
    fig.update_layout(
        xaxis={"title": "layer", "dtick": 1, "range": [-0.5, n_layers - 0.5]},
        yaxis={"title": "head", "dtick": 1, "autorange": "reversed"},
        height=560,
        margin={"t": 20},
    )
    return fig
