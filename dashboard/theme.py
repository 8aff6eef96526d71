"""Colours shared by every page and the HTML report (clusters and methods look the same everywhere)."""

from __future__ import annotations

# 24 distinguishable colours (Plotly's Dark24 + Light24 picks); clusters cycle through them.
CLUSTER_PALETTE = (
    "#2E91E5",
    "#E15F99",
    "#1CA71C",
    "#FB0D0D",
    "#DA16FF",
    "#B68100",
    "#750D86",
    "#EB663B",
    "#511CFB",
    "#00A08B",
    "#FB00D1",
    "#FC0080",
    "#B2828D",
    "#6C7C32",
    "#778AAE",
    "#862A16",
    "#A777F1",
    "#620042",
    "#1616A7",
    "#DA60CA",
    "#6C4516",
    "#0D2A63",
    "#AF0038",
    "#22FFA7",
)
METHOD_COLORS = {
    "cahp": "#2563eb",
    "gradient": "#f97316",
    "gradient-raw": "#b45309",
    "random": "#6b7280",
    "full": "#111827",
}
METHOD_LABELS = {
    "cahp": "CAHP",
    "gradient": "Gradient (Michel et al.)",
    "gradient-raw": "Gradient, not layer-normalised",
    "random": "Random",
    "full": "Full model",
}
KEPT_COLOR, PRUNED_COLOR = "#111827", "#e5e7eb"
DEPTH_LABELS = {  # column names of cahp_core.proximity.compare_depths, for people
    "heads_kept": "heads kept",
    "mean_depth": "mean depth",
    "last_third_share": "share in last third",
    "uniform_distance": "distance from uniform",
}


def cluster_color(cluster: int) -> str:
    return CLUSTER_PALETTE[int(cluster) % len(CLUSTER_PALETTE)]


PRESENTATION_FONT = 20

# Presentation mode: larger text, no Streamlit chrome (toolbar, header, deploy/menu buttons).
PRESENTATION_CSS = """
<style>
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li,
[data-testid="stMain"] [data-testid="stCaptionContainer"],
[data-testid="stMain"] [data-testid="stWidgetLabel"] p { font-size: 1.3rem !important; }
[data-testid="stMain"] [data-testid="stSliderThumbValue"] p,
[data-testid="stMain"] [data-testid="stSliderTickBar"] p { font-size: 1rem !important; }
[data-testid="stMain"] h1 { font-size: 3rem !important; }
[data-testid="stMain"] h2, [data-testid="stMain"] h3 { font-size: 2.1rem !important; }
[data-testid="stMain"] [data-testid="stMetricValue"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMetricValue"] { font-size: 3.4rem !important; }
[data-testid="stMain"] [data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"] p
{ font-size: 1.3rem !important; }
[data-testid="stMain"] [data-testid="stMetricDelta"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMetricDelta"] { font-size: 1.2rem !important; }
header[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stDecoration"],
[data-testid="stSidebar"] [data-testid="stTooltipIcon"] { display: none !important; }
[data-testid="stMainBlockContainer"] { padding-top: 2rem !important; max-width: 96% !important; }
</style>
"""


def present(fig):
    """A copy of a plotly figure with fonts large enough for a projector."""
    import plotly.graph_objects as go

    size = PRESENTATION_FONT
    fig = go.Figure(fig)
    fig.update_layout(
        font={"size": size},
        hoverlabel={"font_size": size},
        legend={"font": {"size": size}},
        title={"font": {"size": size + 4}},
    )
    fig.update_xaxes(tickfont={"size": size}, title_font={"size": size})
    fig.update_yaxes(tickfont={"size": size}, title_font={"size": size})
    fig.update_annotations(font_size=size)
    if fig.layout.legend.orientation == "h":  # below the plot: make room for the bigger axis
        fig.update_layout(legend={"y": -0.3})
    return fig
