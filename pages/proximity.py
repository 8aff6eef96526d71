"""Proximity bias: where CAHP, gradient and random pruning keep heads, at the same budget."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from cahp_core.proximity import compare_depths
from dashboard import figures
from dashboard.selection_view import degree_view, method_maps, nearest_curve_point
from dashboard.state import ROOT, current_degree, current_view
from dashboard.theme import METHOD_LABELS

st.title("Proximity bias")
view = current_view()
if view is not None:
    degree = current_degree(view)
    chosen = degree_view(view, degree)
    seed = st.number_input("Random baseline seed", min_value=0, value=0, step=1)
    maps = method_maps(view, chosen.keep, int(seed))
    st.caption(
        f"Budget: {chosen.heads_kept} heads, CAHP's count at degree {degree}. Gradient keeps the "
        "globally most important heads (Michel et al., 2019, per-layer normalised); random keeps "
        "as many at random. Gradient methods tend to keep heads near the output; CAHP keeps "
        "intermediate-layer heads (the paper's claim — check it here)."
    )
    st.plotly_chart(figures.per_layer_figure(maps), use_container_width=True)
    table = compare_depths(maps)
    table["method"] = table["method"].map(METHOD_LABELS)
    measured = []
    for method in maps:
        point = nearest_curve_point(view, method, chosen.heads_kept)
        measured.append(None if point is None else round(point["accuracy"], 3))
    table["masked accuracy (nearest measured budget)"] = measured
    st.dataframe(
        table.drop(columns=["kept_per_layer"]).round(3), hide_index=True, use_container_width=True
    )
    st.caption(
        "Mean depth: 0 = first layer, 1 = last. Masked accuracy is measured before any "
        "fine-tuning, at the task-curve point with the closest head count."
    )
    results = ROOT / "benchmarks" / "results" / "quality.json"
    if results.is_file():
        st.subheader("Benchmarks after pruning and one fine-tune (benchmarks/quality.py)")
        frame = pd.DataFrame(json.loads(results.read_text()))
        frame = frame[frame["method"] != "full"].astype({"budget_frac": str})
        summary = (
            frame.groupby(["task", "split", "budget_frac", "method"])["accuracy"]
            .agg(["mean", "std", "count"])
            .round(3)
            .reset_index()
        )
        st.dataframe(summary, hide_index=True, use_container_width=True)
