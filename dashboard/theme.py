"""Cluster colours for any number of clusters, method names, and the presentation-mode theme
(the plain colour constants live in ``cahp_core.palette``, shared with the benchmark reports)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cahp_core.palette import CLUSTER_PALETTE, KEPT_COLOR

METHOD_LABELS = {
    "cahp": "CAHP",
    "gradient": "Gradient (Michel et al.)",
    "gradient-raw": "Gradient, not layer-normalised",
    "random": "Random",
    "full": "Full model",
}
DEPTH_LABELS = {  # column names of cahp_core.method.proximity.compare_depths, for people
    "heads_kept": "heads kept",
    "mean_depth": "mean depth",
    "last_third_share": "share in last third",
    "uniform_distance": "distance from uniform",
}


def _hex_to_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours ``[..., 3]`` in 0-255: distances there follow the eye."""
    c = np.asarray(rgb, dtype=float) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    )
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


@lru_cache(maxsize=1)
def _candidates() -> tuple[np.ndarray, np.ndarray]:
    """Colours a generated cluster colour may take (RGB ``[M, 3]``, Lab ``[M, 3]``): neither
    near-black (the kept outline) nor near-white (the background), not grey."""
    steps = np.arange(0, 256, 15, dtype=float)
    rgb = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    lab = _lab(rgb)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    ok = (lab[:, 0] >= 30) & (lab[:, 0] <= 80) & (chroma >= 25)
    return rgb[ok], lab[ok]


@lru_cache(maxsize=8)
def cluster_palette(n: int) -> tuple[str, ...]:
    """``n`` distinct cluster colours: ``CLUSTER_PALETTE`` first, then each next colour the
    candidate farthest (in Lab) from every colour before it. Deterministic, and every
    palette is a prefix of any longer one, so a cluster's colour never depends on ``n``."""
    colours = list(CLUSTER_PALETTE[: max(n, 0)])
    if n <= len(colours):
        return tuple(colours)
    rgb, lab = _candidates()
    chosen = _lab(np.stack([_hex_to_rgb(c) for c in colours]))  # [K, 3]
    nearest = np.linalg.norm(lab[:, None, :] - chosen[None, :, :], axis=-1).min(axis=1)  # [M]
    while len(colours) < n:
        pick = int(np.argmax(nearest))  # first of ties
        if nearest[pick] <= 0:
            raise ValueError(f"cannot make {n} distinct cluster colours")
        colours.append("#{:02X}{:02X}{:02X}".format(*rgb[pick].astype(int)))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[pick], axis=1))
    return tuple(colours)


def cluster_color(cluster: int) -> str:
    """The colour of ``cluster`` on every page: distinct for every cluster number."""
    cluster = int(cluster)
    size = max(64, 1 << cluster.bit_length())  # a few palette sizes, each cached
    return cluster_palette(size)[cluster]


def text_color(background: str) -> str:
    """Dark or white text, whichever reads better on ``background`` (WCAG contrast)."""
    c = _hex_to_rgb(background) / 255.0
    linear = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    return KEPT_COLOR if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"


PRESENTATION_FONT = 20  # px: plotly text in presentation mode
PRESENTATION_INK = "#000000"  # text, axes and tick marks on a projector
PRESENTATION_GRID = "#a3a3a3"

# Presentation mode. 1rem = 20px instead of Streamlit's 16px, so every text sized in rem grows
# (tables, dropdowns, slider values, captions, buttons, inputs); then prose, headings and
# metrics a little more. The slider's value sits above its thumb; the toolbar goes (the header
# stays: it holds the button that reopens the sidebar, which app.py collapses).
PRESENTATION_CSS = """
<style>
html { font-size: 20px !important; }
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li,
[data-testid="stMain"] [data-testid="stWidgetLabel"] p { font-size: 1.1rem !important; }
[data-testid="stMain"] input, [data-testid="stMain"] textarea,
[role="listbox"] [role="option"] { font-size: 1.1rem !important; }
[data-testid="stMain"] [data-testid="stCaptionContainer"],
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1rem !important; }
[data-testid="stMain"] h1 { font-size: 2.6rem !important; }
[data-testid="stMain"] h2, [data-testid="stMain"] h3 { font-size: 1.8rem !important; }
[data-testid="stMain"] [data-testid="stMetricValue"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMetricValue"] { font-size: 2.8rem !important; }
[data-testid="stMain"] [data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMetricDelta"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMetricDelta"] { font-size: 1.1rem !important; }
[data-testid="stMain"] [data-testid="stSliderThumbValue"] p,
[data-testid="stMain"] [data-testid="stSliderTickBar"] p { font-size: 1rem !important; }
[data-testid="stMain"] [data-testid="stSliderThumbValue"]
{ top: auto !important; bottom: calc(100% + 0.35rem) !important; }
[data-testid="stMain"] [data-testid="stSlider"] { padding-top: 0.6rem; }
[data-testid="stToolbarActions"], [data-testid="stMainMenu"], [data-testid="stAppDeployButton"],
[data-testid="stDecoration"],
[data-testid="stSidebar"] [data-testid="stTooltipIcon"] { display: none !important; }
header[data-testid="stHeader"] { background: transparent !important; }
[data-testid="stMainBlockContainer"] { padding-top: 2rem !important; max-width: 96% !important; }
</style>
"""


def _thicker_lines(fig) -> None:
    """Drawn lines at least 3px wide (thin helper lines, e.g. graph edges, stay as they are)."""
    for trace in fig.data:
        mode = getattr(trace, "mode", None) or ""
        if trace.type == "scatter" and "lines" in mode and not trace.fill:
            width = trace.line.width
            if width is None or width >= 2:
                trace.line.width = max(width or 0, 3)


def _room_for_labels(fig, size: int) -> None:
    """Top margin for a title or for annotations placed above the plot; taller fixed heights."""
    above = any(
        a.yanchor == "bottom" and (a.y or 0) >= 1 and str(a.yref).endswith(("domain", "paper"))
        for a in fig.layout.annotations
    )
    needed = (2 * size + 20 if fig.layout.title.text else 0) + (size + 16 if above else 0)
    if needed:
        fig.update_layout(margin_t=max(fig.layout.margin.t or 0, needed))
    if fig.layout.height:
        fig.update_layout(height=int(fig.layout.height * 1.2))


def present(fig):
    """A copy of a plotly figure for a projector: large text, black ink on white, strong axes
    and lines, room for the title and labels."""
    import plotly.graph_objects as go

    size, ink = PRESENTATION_FONT, PRESENTATION_INK
    fig = go.Figure(fig)
    fig.update_layout(
        font={"size": size, "color": ink},
        paper_bgcolor="white",
        plot_bgcolor="white",
        hoverlabel={"font_size": size},
        legend={"font": {"size": size, "color": ink}},
        title={"font": {"size": size + 4, "color": ink}},
    )
    axis = {
        "tickfont": {"size": size, "color": ink},
        "title_font": {"size": size, "color": ink},
        "showline": True,
        "linecolor": ink,
        "linewidth": 2,
        "tickcolor": ink,
        "gridcolor": PRESENTATION_GRID,
        "zerolinecolor": PRESENTATION_GRID,
    }
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    fig.update_annotations(font={"size": size, "color": ink})
    _thicker_lines(fig)
    _room_for_labels(fig, size)
    if fig.layout.legend.orientation == "h":  # below the plot: make room for the bigger axis
        fig.update_layout(legend={"y": -0.3})
    return fig
