"""Knee: the marginal-performance curve, its polynomial fit and the knee; a degree slider."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures
from dashboard.selection_view import degree_view
from dashboard.state import chart, current_degree, current_view, max_degree, set_degree

st.title("Knee: how many heads to keep")
view = current_view()
if view is not None:
    st.caption(
        "Cluster quality (mean simplified silhouette) for every number of clusters k, fitted "
        "with a polynomial of the chosen degree. Its knee sets k; the most salient head of each "
        "cluster is kept, plus the most salient head of any layer left empty. Moving the slider "
        "re-uses every cached stage: nothing is recomputed, and every other page follows the "
        "degree chosen here."
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
        "Expected accuracy",
        "n/a" if expected is None else f"{expected:.3f}",
        None if expected is None or full is None else f"{expected - full:+.3f} vs full",
        help="Masked validation accuracy before fine-tuning, interpolated from the run's "
        "measured task curve (CAHP selections).",
    )
    if chosen.knee.fallback:
        st.warning(
            f"Fallback knee for degree {degree}: {chosen.knee.reason}. The point of the fitted "
            "curve farthest from its chord is used instead."
        )
    else:
        st.caption(
            f"Degree {degree}: kneed found the knee of the fitted curve at k={chosen.knee.knee}."
        )
    left, right = st.columns([3, 2])
    chart(figures.knee_figure(chosen.knee), left)
    if view.task_curve:
        chart(figures.task_curve_figure(view.task_curve, chosen.heads_kept), right)
    else:
        right.info("This run has no task curve (task_curve.json): no expected accuracy.")
    st.subheader(f"Kept heads by layer: {list(map(int, chosen.keep.sum(axis=1)))}")
    chart(figures.layer_map_figure(chosen.labels, chosen.keep, view.salience.normalised))
    layers, heads = chosen.keep.nonzero()
    table = pd.DataFrame(
        {
            "layer": layers,
            "head": heads,
            "salience": view.salience.normalised[layers, heads].round(3),
            "cluster": chosen.labels[layers * n_heads + heads],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch")
