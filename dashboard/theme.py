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
METHOD_COLORS = {"cahp": "#2563eb", "gradient": "#f97316", "random": "#6b7280", "full": "#111827"}
METHOD_LABELS = {
    "cahp": "CAHP",
    "gradient": "Gradient (Michel et al.)",
    "random": "Random",
    "full": "Full model",
}
KEPT_COLOR, PRUNED_COLOR = "#111827", "#e5e7eb"


def cluster_color(cluster: int) -> str:
    return CLUSTER_PALETTE[int(cluster) % len(CLUSTER_PALETTE)]


PRESENTATION_CSS = """
<style>
html, body, [class*="css"] { font-size: 1.2rem; }
h1 { font-size: 2.6rem !important; } h2 { font-size: 2.0rem !important; }
[data-testid="stMetricValue"] { font-size: 2.6rem; }
[data-testid="stSidebarNav"] + div { display: none; }
</style>
"""
