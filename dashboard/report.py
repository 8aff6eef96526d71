"""A run's figures for download: a one-file HTML report (offline, plotly.js inlined once) and
a zip of every figure (HTML sharing one ``plotly.min.js``, PNG where kaleido can render),
each figure titled with its run, degree and method."""

from __future__ import annotations

import html
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from cahp_core.benchmark_results import benchmark_frame
from cahp_core.method.proximity import compare_depths
from cahp_core.runs.results import RunView

from . import figures
from .selection_view import CURVE_NAMES, QUALITY_LABELS, DegreeView, method_maps, rule_text
from .theme import DEPTH_LABELS, METHOD_LABELS


def knee_figure(chosen: DegreeView) -> go.Figure:
    """The chosen curve, its fit, the knee and every seed's knee (axis names per curve)."""
    if chosen.knee_curve == "performance":
        names = {"y_title": "masked accuracy (no fine-tuning)", "points_name": "measured accuracy"}
    else:
        names = {
            "y_title": QUALITY_LABELS.get(chosen.quality_name, chosen.quality_name),
            "points_name": "cluster quality",
        }
    return figures.knee_figure(chosen.knee, chosen.knee_by_seed, **names)


FIGURE_NAMES = {
    "knee": "Knee of the curve",
    "layer_map": "Kept heads by layer",
    "cluster_sizes": "Cluster sizes",
    "per_layer": "Kept heads per layer, by method",
    "task_curve": "Masked accuracy vs heads kept",
    "tsne": "t-SNE of the heads",
    "head_graph": "Head graph",
}
FIGURE_METHODS = {  # the selection a figure shows, when it is not CAHP's alone
    "per_layer": "CAHP vs gradient vs random, same head count",
    "task_curve": "CAHP, gradient and random",
}


def figure_title(name: str, view: RunView, chosen: DegreeView, heading: str | None = None) -> str:
    """``heading`` (default: the figure's name) over ``run · model · task · degree 6, quality
    knee · CAHP (rule) · 14 of 72 heads``."""
    method = FIGURE_METHODS.get(name, f"CAHP ({rule_text(chosen.rule)})")
    facts = (
        f"run {view.path.name} · {view.config.model} · {view.config.task} · degree "
        f"{chosen.degree}, {CURVE_NAMES[chosen.knee_curve]} · {method} · "
        f"{chosen.heads_kept} of {chosen.keep.size} heads"
    )
    heading = heading or html.escape(FIGURE_NAMES.get(name, name.replace("_", " ")))
    return f"{heading}<br><sup>{html.escape(facts)}</sup>"


def titled(fig: go.Figure, title: str) -> go.Figure:
    """A copy of ``fig`` with ``title`` above the plot (room made for it)."""
    fig = go.Figure(fig)
    top = max(fig.layout.margin.t or 0, 40)
    fig.update_layout(title={"text": title, "x": 0.01, "xanchor": "left"}, margin_t=top + 60)
    if fig.layout.height:
        fig.update_layout(height=fig.layout.height + 60)
    return fig


def run_figures(view: RunView, chosen: DegreeView) -> dict[str, go.Figure]:
    """Every figure of a run at one degree, by file-friendly name, titled with the run, the
    degree and the method (what a PNG or an HTML file needs once it leaves the dashboard)."""
    return {
        name: titled(fig, figure_title(name, view, chosen, fig.layout.title.text))
        for name, fig in _run_figures(view, chosen).items()
    }


def _run_figures(view: RunView, chosen: DegreeView) -> dict[str, go.Figure]:
    maps = method_maps(view, chosen.keep)
    out = {
        "knee": knee_figure(chosen),
        "layer_map": figures.layer_map_figure(chosen.labels, chosen.keep, view.salience.normalised),
        "cluster_sizes": figures.cluster_sizes_figure(chosen.labels),
        "per_layer": figures.per_layer_figure(maps),
    }
    if view.task_curve:
        out["task_curve"] = figures.task_curve_figure(view.task_curve, chosen.heads_kept)
    if chosen.embedding is not None:
        out["tsne"] = figures.embedding_figure(
            chosen.embedding,
            chosen.labels,
            chosen.keep,
            f"t-SNE of the heads (consensus seed {chosen.consensus_seed})",
        )
    if view.graph is not None:
        out["head_graph"] = figures.graph_figure(
            view.graph, chosen.labels, chosen.keep, view.salience.normalised
        )
    return out


PLOTLY_JS = "plotly.min.js"  # the one copy of plotly.js in the figure zip


def figure_html(fig: go.Figure, shared_plotlyjs: bool = False) -> str:
    """An HTML file for one figure: standalone (plotly.js inlined: no network needed), or,
    with ``shared_plotlyjs``, loading ``plotly.min.js`` from its own folder."""
    include = "directory" if shared_plotlyjs else True
    return fig.to_html(include_plotlyjs=include, full_html=True)


def report_html(view: RunView, chosen: DegreeView) -> str:
    """Summary, figures and the kept-head table in one self-contained HTML page."""
    summary = view.summary or {}
    config = view.config
    maps = method_maps(view, chosen.keep)
    depth = compare_depths(maps).drop(columns=["kept_per_layer"]).round(3)
    depth = depth.rename(columns=DEPTH_LABELS).replace({"method": METHOD_LABELS})
    rows = "".join(
        f"<tr><td>{ly}</td><td>{h}</td><td>{view.salience.normalised[ly, h]:.3f}</td>"
        f"<td>{chosen.labels[ly * chosen.keep.shape[1] + h]}</td></tr>"
        for ly, h in zip(*chosen.keep.nonzero(), strict=True)
    )
    facts = {
        "model": config.model,
        "task": config.task,
        "knee curve": CURVE_NAMES[chosen.knee_curve],
        "polynomial degree": chosen.degree,
        "selection rule": rule_text(chosen.rule),
        "knee (clusters)": chosen.knee.knee,
        "knee fallback": chosen.knee.reason if chosen.knee.fallback else "no",
        "heads kept": f"{chosen.heads_kept} of {chosen.keep.size}",
        "consensus seed (exported selection)": chosen.consensus_seed,
        "knee across seeds": chosen.seed_range("knee"),
        "heads kept across seeds": chosen.seed_range("heads"),
        "kept per layer": list(map(int, chosen.keep.sum(axis=1))),
        "accuracy, full model": summary.get("accuracy_full"),
        "accuracy, pruned + fine-tuned (run's own degree)": summary.get("accuracy_pruned"),
        "expected masked accuracy at this degree": chosen.expected_accuracy,
    }
    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(f'{v:.3f}' if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in facts.items()
        if v is not None
    )
    parts = []
    for index, (name, fig) in enumerate(_run_figures(view, chosen).items()):  # the facts
        body = fig.to_html(include_plotlyjs=index == 0, full_html=False)  # say run and degree
        parts.append(f"<h2>{html.escape(FIGURE_NAMES.get(name, name))}</h2>{body}")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>CAHP report: {html.escape(view.path.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:4px 10px;text-align:left}}</style></head>
<body><h1>CAHP Studio report: {html.escape(view.path.name)}</h1>
<table>{fact_rows}</table>
<h2>depth statistics (proximity bias)</h2>{depth.to_html(index=False)}
{"".join(parts)}
<h2>kept heads</h2><table><tr><th>layer</th><th>head</th><th>salience</th><th>cluster</th></tr>{rows}</table>
</body></html>"""


def figure_png(fig: go.Figure) -> bytes | None:
    """PNG bytes of a figure if kaleido (with a Chrome/Chromium) can render it, else None."""
    try:
        return fig.to_image(format="png", width=1200, height=700, scale=2)
    except Exception:  # noqa: BLE001 - any kaleido/Chrome failure means "HTML only"
        return None


def figures_zip(figs: dict[str, go.Figure], png: bool = True) -> bytes:
    """Every figure as HTML, all loading the zip's one ``plotly.min.js`` (offline once
    unzipped), plus PNG where kaleido can render it, in one zip."""
    import tempfile

    from plotly.offline import get_plotlyjs

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"figures/{PLOTLY_JS}", get_plotlyjs())
        for name, fig in figs.items():
            archive.writestr(f"figures/{name}.html", figure_html(fig, shared_plotlyjs=True))
        rendered = False
        if png:
            with tempfile.TemporaryDirectory() as tmp:
                paths = [Path(tmp) / f"{name}.png" for name in figs]
                try:  # one browser session for all figures
                    pio.write_images(list(figs.values()), paths, width=1200, height=700, scale=2)
                    rendered = True
                except Exception:  # noqa: BLE001 - no kaleido/Chrome: HTML only
                    rendered = False
                if rendered:
                    for path in paths:
                        archive.write(path, f"figures/{path.name}")
        if not rendered:
            archive.writestr(
                "figures/README.txt",
                "PNG files need kaleido with a Chrome/Chromium it can start; the HTML files "
                "work offline in any browser.\n",
            )
    return buffer.getvalue()


def quality_summary(path: Path) -> pd.DataFrame:
    """benchmarks/quality.py results: mean accuracy, macro-F1 and KL (with the accuracy's
    std and the number of seeds) per protocol, re-tune or not, task, split, budget and
    method (the full model left out). Records from before protocols count as CPU, re-tuned."""
    frame = benchmark_frame(pd.DataFrame(json.loads(Path(path).read_text())))
    frame = frame[frame["method"] != "full"]
    frame["method"] = frame["method"].map(lambda m: METHOD_LABELS.get(m, m))
    frame["retune"] = frame["retune"].map({True: "re-tuned", False: "masked"})
    keys = ["protocol", "retune", "task", "split", "budget_frac", "method"]
    table = frame.groupby(keys).agg(
        accuracy=("accuracy", "mean"),
        std=("accuracy", "std"),
        seeds=("accuracy", "count"),
        macro_f1=("macro_f1", "mean"),
        kl=("kl", "mean"),
    )
    return table.round(3).reset_index()


def zip_folder(folder: Path) -> bytes:
    """A folder as zip bytes (for download buttons)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()
