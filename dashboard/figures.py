"""Plotly figure builders: pure functions of arrays (used by the pages and the HTML report)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cahp_core.method.knee import KneeResult
from cahp_core.palette import KEPT_COLOR, METHOD_COLORS

from .theme import METHOD_LABELS, cluster_color, text_color


def smooth_fit(knee: KneeResult, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The knee's fitted polynomial on a fine grid: the degree-d polynomial through kneed's
    fitted values ``y_fit`` (a degree-d fit of a degree-d polynomial is that polynomial), so a
    curve measured at a few k is drawn smooth and still passes through every fitted value."""
    x, y_fit = np.asarray(knee.x, dtype=float), np.asarray(knee.y_fit, dtype=float)
    if len(x) > 50 or len(x) <= knee.degree:  # dense enough already (or nothing to refit)
        return x, y_fit
    fine = np.linspace(x[0], x[-1], n)
    return fine, np.polynomial.Polynomial.fit(x, y_fit, knee.degree)(fine)


def knee_figure(
    knee: KneeResult,
    seed_knees: Mapping[int, int] | None = None,
    *,
    y_title: str = "mean simplified silhouette (MSS)",
    points_name: str = "cluster quality",
) -> go.Figure:
    """The curve's points, kneed's fitted polynomial and its knee; with ``seed_knees``
    ({seed: k}), every clustering seed's knee too (markers on the fit, band from min to max)."""
    fit_at = dict(zip(np.asarray(knee.x).tolist(), np.asarray(knee.y_fit).tolist(), strict=True))
    fig = go.Figure()
    if seed_knees:
        by_k: dict[int, list[int]] = {}
        for seed, k in sorted(seed_knees.items()):
            by_k.setdefault(int(k), []).append(int(seed))
        low, high = min(by_k), max(by_k)
        n = len(seed_knees)
        spread = f"all {n} agree, k={low}" if low == high else f"k {low}–{high}"
        if low < high:  # the seeds disagree: shade where their knees fall
            bottom = float(min(np.min(knee.y), np.min(knee.y_fit)))
            top = float(max(np.max(knee.y), np.max(knee.y_fit)))
            fig.add_scatter(
                x=[low, high, high, low, low],
                y=[bottom, bottom, top, top, bottom],
                fill="toself",
                mode="none",
                fillcolor="rgba(220, 38, 38, 0.12)",
                hoverinfo="skip",
                name=f"range of the seeds' knees ({spread})",
                legendgroup="seeds",
                showlegend=False,  # the markers' legend entry names the range
            )
        fig.add_scatter(
            x=list(by_k),
            y=[fit_at.get(k, knee.knee_y) for k in by_k],
            mode="markers",
            name=f"knee of each of {n} seeds ({spread})" if n > 1 else "knee of the seed",
            legendgroup="seeds",
            hovertext=[
                f"k={k}: seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"
                for k, s in by_k.items()
            ],
            hoverinfo="text",
            marker={
                "symbol": "diamond-open",
                "size": [10 + 3 * len(s) for s in by_k.values()],
                "color": "#dc2626",
                "line": {"width": 2},
            },
        )
    fig.add_scatter(
        x=knee.x, y=knee.y, mode="markers", name=points_name, marker={"color": "#94a3b8"}
    )
    fine_x, fine_y = smooth_fit(knee)
    fig.add_scatter(
        x=fine_x,
        y=fine_y,
        mode="lines",
        name=f"polynomial fit, degree {knee.degree}",
        line={"color": METHOD_COLORS["cahp"], "width": 3},
        hoverinfo="skip",
    )
    label = f"knee k={knee.knee}" + (" (fallback)" if knee.fallback else "")
    fig.add_scatter(
        x=[knee.knee],
        y=[knee.knee_y],
        mode="markers",
        name=label,
        marker={"symbol": "x", "size": 14, "color": "#dc2626"},
    )
    fig.add_vline(x=knee.knee, line_dash="dash", line_color="#dc2626")
    fig.update_layout(
        xaxis_title="number of clusters k",
        yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 30},
        height=480,
    )
    values = np.concatenate([np.asarray(knee.y, float), np.asarray(knee.y_fit, float)])
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-9 * max(1.0, abs(high)):  # a flat curve: do not zoom into rounding noise
        pad = max(0.1 * abs(high), 0.01)
        fig.update_yaxes(range=[low - pad, high + pad])
    return fig


def knee_degree_figure(rows: Sequence[Mapping], degree: int | None = None) -> go.Figure:
    """Knee k and heads kept at every polynomial degree (consensus seed; error bars: the
    seeds' min to max), the chosen ``degree`` shaded; open markers: fallback knees."""
    fig = go.Figure()
    x = [int(r["degree"]) for r in rows]
    for what, name, color, dodge in (  # side by side: heads kept often equals k
        ("knee", "knee k (clusters)", "#dc2626", -0.1),
        ("heads", "heads kept", METHOD_COLORS["cahp"], 0.1),
    ):
        y = [int(r[what]) for r in rows]
        fig.add_scatter(
            x=[d + dodge for d in x],
            y=y,
            customdata=x,
            mode="lines+markers",
            name=name,
            line={"color": color},
            marker={
                "color": color,
                "size": 10,
                "symbol": ["circle-open" if r["fallback"] else "circle" for r in rows],
                "line": {"width": 2, "color": color},
            },
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [int(r[f"{what}_max"]) - v for r, v in zip(rows, y, strict=True)],
                "arrayminus": [v - int(r[f"{what}_min"]) for r, v in zip(rows, y, strict=True)],
                "color": color,
                "thickness": 1.5,
                "width": 6,
            },
            hovertemplate=f"degree %{{customdata}}: {name} %{{y}}<extra></extra>",
        )
    if any(r["fallback"] for r in rows):
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            name="open marker: no knee, fallback",
            marker={"symbol": "circle-open", "color": "#6b7280", "size": 10},
        )
    if degree is not None:
        fig.add_vrect(
            x0=degree - 0.4,
            x1=degree + 0.4,
            fillcolor="#fde68a",
            opacity=0.5,
            line_width=0,
            layer="below",
        )
    fig.update_layout(
        xaxis={
            "title": "polynomial degree",
            "dtick": 1,
            "range": [min(x, default=2) - 0.5, max(x, default=2) + 0.5],
        },
        yaxis={"title": "count (bars: min–max over seeds)", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 20},
        height=480,
    )
    return fig


CURVE_METRICS = {
    "accuracy": "masked accuracy (no fine-tuning)",
    "macro_f1": "masked macro-F1 (no fine-tuning)",
    "kl": "KL from the full model's predictions (nats; lower is closer)",
}


def task_curve_figure(
    records: list[dict], heads_kept: int | None = None, metric: str = "accuracy"
) -> go.Figure:
    """A masked (retraining-free) metric versus heads kept, per method: accuracy, macro-F1
    or the KL divergence of the predictions from the full model's."""
    fig = go.Figure()
    for method in ("cahp", "gradient", "random"):
        points = sorted(
            (r["heads_kept"], r[metric])
            for r in records
            if r["method"] == method and r.get(metric) is not None
        )
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
            annotation_position="top",  # above the plot, clear of the curves
        )
    fig.update_layout(
        xaxis_title="heads kept",
        yaxis_title=CURVE_METRICS[metric],
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 40},
    )
    return fig


def layer_map_figure(
    labels: np.ndarray, keep: np.ndarray, salience: np.ndarray | None = None
) -> go.Figure:
    """Layer x head grid coloured by cluster, each cell printing its cluster number; kept
    heads outlined and marked with a star. ``customdata`` holds (layer, head) per cell."""
    n_layers, n_heads = keep.shape
    layers, heads = np.divmod(np.arange(n_layers * n_heads), n_heads)
    kept = keep.ravel()
    text = [
        f"layer {ly}, head {h}<br>cluster {labels[i]}"
        + (f"<br>salience {salience[ly, h]:.2f}" if salience is not None else "")
        + ("<br><b>kept</b>" if keep[ly, h] else "")
        for i, (ly, h) in enumerate(zip(layers, heads, strict=True))
    ]
    colors = [cluster_color(c) for c in labels]
    fig = go.Figure()
    fig.add_scatter(
        x=heads,
        y=layers,
        mode="markers+text",
        text=[f"★{c}" if k else str(c) for c, k in zip(labels, kept, strict=True)],
        textfont={"color": [text_color(c) for c in colors], "size": 13},
        customdata=np.column_stack([layers, heads]),
        hovertext=text,
        hoverinfo="text",
        showlegend=False,
        marker={"symbol": "square", "size": 34, "color": colors, "opacity": 0.9},
        # a clicked cell stands out; the others fade but keep legible (dark) numbers
        unselected={"marker": {"opacity": 0.55}, "textfont": {"color": KEPT_COLOR}},
    )
    fig.add_scatter(
        x=heads[kept],
        y=layers[kept],
        mode="markers",
        name="★ kept head (outlined)",
        hoverinfo="skip",
        unselected={"marker": {"opacity": 1}},
        marker={
            "symbol": "square-open",
            "size": 38,
            "color": KEPT_COLOR,
            "line": {"color": KEPT_COLOR, "width": 3},
        },
    )
    fig.update_layout(
        # fixed ranges: the big square markers must not widen the axes to a head "-1"
        xaxis={"title": "head", "dtick": 1, "range": [-0.6, n_heads - 0.4]},
        yaxis={"title": "layer", "dtick": 1, "range": [n_layers - 0.4, -0.6]},
        height=150 + 44 * n_layers,
        margin={"t": 40},
        legend={"orientation": "h", "y": -0.25},
        showlegend=True,
        annotations=[
            {
                "text": "cell number = cluster · ★ = kept",  # short: fits a half-width map
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": 1.0,
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "font": {"size": 13, "color": "#334155"},
            }
        ],
    )
    return fig


def cluster_sizes_figure(labels: np.ndarray) -> go.Figure:
    clusters, sizes = np.unique(labels, return_counts=True)
    fig = go.Figure(
        go.Bar(
            x=[str(c) for c in clusters], y=sizes, marker_color=[cluster_color(c) for c in clusters]
        )
    )
    fig.update_layout(
        xaxis={"title": "cluster", "type": "category"},  # every cluster number under its bar
        yaxis_title="heads",
        margin={"t": 20},
    )
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
    fig = go.Figure(
        go.Heatmap(
            z=head_map,
            colorscale="Blues",
            showscale=True,
            colorbar={"title": {"text": "attention"}},
        )
    )
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
    for name, symbol, line in (  # legend only: what the marks mean
        ("kept head (outlined star)", "star", 2),
        ("pruned head · size = salience · colour = cluster", "circle", 0),
    ):
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=name,
            marker={"symbol": symbol, "size": 14, "color": "#94a3b8"}
            | {"line": {"width": line, "color": KEPT_COLOR}},
        )
    fig.update_layout(
        xaxis={"title": "layer", "dtick": 1, "range": [-0.5, n_layers - 0.5]},
        yaxis={"title": "head", "dtick": 1, "autorange": "reversed"},
        height=600,
        margin={"t": 20},
        legend={"orientation": "h", "y": -0.12},
    )
    return fig


BENCHMARK_METRICS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "kl": "KL from the full model (nats; lower is closer)",
}
BENCHMARK_METHODS = {  # benchmarks/quality.py's methods, in legend order
    **{m: METHOD_LABELS[m] for m in ("cahp", "gradient", "random")},
    "cahp-js": "CAHP, JS clusters",
    "cahp-radius": "CAHP, salience-radius",
    "cahp-mmr": "CAHP, MMR",
    "cahp-radius-js": "CAHP, salience-radius, JS",
    "cahp-mmr-js": "CAHP, MMR, JS",
}
BENCHMARK_TASKS = {"sst5": "SST-5", "mnli": "MNLI"}
BENCHMARK_SPLITS = {
    "validation_matched": "matched validation",
    "validation_mismatched_hard": "mismatched validation, hard",
}


def budget_label(budget: str, heads: int | None = None) -> str:
    """``"0.1"`` -> ``"10 %"``; ``"knee"`` -> ``"CAHP's knee"`` (``"CAHP's knee (14 heads)"``
    with ``heads``)."""
    if budget == "knee":
        return "CAHP's knee" + (f" ({heads} heads)" if heads is not None else "")
    return f"{float(budget):.0%}".replace("%", " %")


def benchmark_figure(
    frame: pd.DataFrame,
    retune: bool,
    metric: str = "accuracy",
    methods: Sequence[str] = ("cahp", "gradient", "random"),
) -> go.Figure:
    """benchmarks/quality.py records of one protocol (``benchmark_frame`` rows): the mean
    ``metric`` per budget and method (error bars: sd over seeds), masked or after one
    re-tune, one panel per task and split; the full model as a dashed line."""
    part = frame[(frame["retune"] == retune) & frame["method"].isin(methods)]
    full = frame[frame["method"] == "full"]
    panels = sorted(part.groupby(["task", "split"]).groups)
    fig = make_subplots(
        rows=1,
        cols=max(len(panels), 1),
        shared_yaxes=True,
        subplot_titles=[
            f"{BENCHMARK_TASKS.get(t, t)}, {BENCHMARK_SPLITS.get(s, s.replace('_', ' '))}"
            for t, s in panels
        ],
    )
    shown = [m for m in methods if m in set(part["method"])]
    in_legend: set[str] = set()
    for col, (task, split) in enumerate(panels, start=1):
        group = part[(part["task"] == task) & (part["split"] == split)]
        budgets = sorted(set(group["budget_frac"]), key=lambda b: (b == "knee", b))
        stats = group.groupby(["method", "budget_frac"]).agg(
            mean=(metric, "mean"),
            sd=(metric, "std"),
            seeds=(metric, "count"),
            heads=("heads", "max"),
        )
        for i, method in enumerate(shown):
            rows = [(j, b) for j, b in enumerate(budgets) if (method, b) in stats.index]
            if not rows:
                continue
            values = stats.loc[[(method, b) for _, b in rows]]
            label = BENCHMARK_METHODS.get(method, method)
            x, y, sd, text = [], [], [], []
            for (j, b), (_, row) in zip(rows, values.iterrows(), strict=True):
                if b == "knee" and x:  # the knee is no point on the budget scale: no line to it
                    x, y, sd, text = [*x, None], [*y, None], [*sd, None], [*text, ""]
                x.append(j + 0.08 * (i - (len(shown) - 1) / 2))  # methods side by side
                y.append(row["mean"])
                sd.append(0.0 if pd.isna(row["sd"]) else row["sd"])
                text.append(
                    f"{label}, {budget_label(b, int(row['heads']))}: {row['mean']:.3f} "
                    f"± {sd[-1]:.3f} over {int(row['seeds'])} seeds ({int(row['heads'])} heads)"
                )
            fig.add_scatter(
                x=x,
                y=y,
                error_y={"type": "data", "array": sd, "thickness": 1},
                mode="lines+markers",
                name=label,
                legendgroup=method,
                showlegend=method not in in_legend,
                line={"color": METHOD_COLORS.get(method, cluster_color(i))},
                hovertext=text,
                hoverinfo="text",
                row=1,
                col=col,
            )
            in_legend.add(method)
        knee_heads = set(group.loc[group["budget_frac"] == "knee", "heads"])
        fig.update_xaxes(
            tickvals=list(range(len(budgets))),
            ticktext=[
                budget_label(b, int(min(knee_heads)) if len(knee_heads) == 1 else None).replace(
                    " (", "<br>("
                )
                for b in budgets
            ],
            title_text="heads kept (share of all heads)",
            tickangle=0,
            row=1,
            col=col,
        )
        reference = full[(full["task"] == task) & (full["split"] == split)][metric].dropna()
        if len(reference) and metric != "kl":
            fig.add_hline(
                y=float(reference.mean()),
                line_dash="dash",
                line_color=METHOD_COLORS["full"],
                annotation_text=f"full model {reference.mean():.3f}",
                row=1,
                col=col,
            )
    fig.update_yaxes(title_text=BENCHMARK_METRICS[metric], row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.35}, margin={"t": 40}, height=480)
    return fig
