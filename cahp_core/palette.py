"""Colours that mean the same everywhere: the dashboard, its HTML report and the benchmark
reports (plain constants, no dependency)."""

from __future__ import annotations

# 24 distinguishable colours (Plotly's Dark24 + Light24 picks): clusters 0-23. Further
# clusters get generated colours (``dashboard/theme.py: cluster_palette``), so no two
# clusters share a colour.
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
METHOD_COLORS = {  # one colour per pruning method (and the full model)
    "cahp": "#2563eb",
    "gradient": "#f97316",
    "gradient-raw": "#b45309",
    "random": "#6b7280",
    "full": "#111827",
}
KEPT_COLOR, PRUNED_COLOR = "#111827", "#e5e7eb"  # a kept head's outline, a pruned head's fill
