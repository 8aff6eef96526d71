"""Knee: the marginal-performance curve, its polynomial fit and the knee; a degree slider."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures
from dashboard.selection_view import degree_view
from dashboard.state import current_degree, current_view, max_degree, set_degree

st.title("Knee: how many heads to keep")
view = current_view()
if view is not None:
    st.caption(
        "Cluster quality for every number of clusters k, fitted with a polynomial of the chosen "
        "degree. Its knee sets k; the most salient head of each cluster is kept (at least one "
        "per layer). Moving the slider re-uses every cached stage: nothing is recomputed."
    )
    degree = st.slider(
        "Polynomial degree",
        min_value=1,
        max_value=max_degree(view),
        value=min(current_degree(view), max_degree(view)),
        key=f"degree_slider::{view.path}",
    )
    set_degree(view, degree)
    chosen = degree_view(view, degree)
    n_layers, n_heads = chosen.keep.shape
    cols = st.columns(4)
    cols[0].metric("Knee (clusters)", chosen.knee.knee)
    cols[1].metric("Heads kept", f"{chosen.heads_kept} / {chosen.keep.size}")
    cols[2].metric("Compression", f"{1 - chosen.heads_kept / chosen.keep.size:.0%}")
    expected = chosen.expected_accuracy
    full = (view.summary or {}).get("accuracy_full")
    cols[3].metric(
        "Expected accuracy (masked)",
        "n/a" if expected is None else f"{expected:.3f}",
        None if expected is None or full is None else f"{expected - full:+.3f} vs full",
    )
    if chosen.knee.fallback:
        st.warning(f"No knee for degree {degree}: {chosen.knee.reason}.")
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.knee_figure(chosen.knee), use_container_width=True)
    if view.task_curve:
        right.plotly_chart(
            figures.task_curve_figure(view.task_curve, chosen.heads_kept), use_container_width=True
        )
    st.subheader("Kept heads by layer")
    st.plotly_chart(
        figures.layer_map_figure(chosen.labels, chosen.keep, view.salience.normalised),
        use_container_width=True,
    )
    layers, heads = chosen.keep.nonzero()
    table = pd.DataFrame(
        {
            "layer": layers,
            "head": heads,
            "salience": view.salience.normalised[layers, heads].round(3),
            "cluster": chosen.labels[layers * n_heads + heads],
        }
    )
    st.dataframe(table, hide_index=True, use_container_width=True)
