"""Clusters per layer: the layer x head cluster map, cluster sizes and 2-D embeddings."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cahp_studio.dashboard import figures
from cahp_studio.dashboard.head_details import clicked_head, head_picker, render_head_details
from cahp_studio.dashboard.premise import premise_panel
from cahp_studio.dashboard.selection_view import CURVE_NAMES, cached_umap, rule_text
from cahp_studio.dashboard.state import Key, chart, current_selection, page

view = page("Clusters per layer")
degree, knee_curve, chosen = current_selection(view)
st.caption(
    f"Degree {degree}, {CURVE_NAMES[knee_curve]} (set on the Knee page): knee at "
    f"{chosen.knee.knee} clusters, {chosen.heads_kept} heads kept (stars; "
    f"{chosen.seed_range('heads')}), clusters of the consensus seed {chosen.consensus_seed}. "
    "Colours are clusters, the same on every page."
    + (
        ""
        if dict(chosen.rule)["rule"] == "complementary"
        else f" Selection rule: {rule_text(chosen.rule)} — stars need not be one per cluster."
    )
)
layer_map = figures.layer_map_figure(chosen.labels, chosen.keep, view.salience.normalised)
event = chart(
    layer_map,
    on_select="rerun",
    selection_mode="points",
    key=Key.of_run(Key.LAYER_MAP, view),
)
pick_key = Key.of_run(Key.HEAD_PICK_CLUSTERS, view)
clicked = clicked_head(event, view.shape[1])
if clicked is not None and st.session_state.get(f"{pick_key}::clicked") != clicked:
    st.session_state[f"{pick_key}::clicked"] = clicked  # a new click picks the head
    st.session_state[pick_key] = clicked
st.caption("Click a cell, or pick a head here, for its details.")
picked_head = head_picker(chosen.labels, chosen.keep, key=pick_key)
if picked_head is not None:
    render_head_details(view, chosen, *picked_head)
left, right = st.columns(2)
left.subheader("Cluster sizes")
chart(figures.cluster_sizes_figure(chosen.labels), left)
right.subheader("Embedding of the heads")
kinds = [
    k
    for k, ok in (
        ("t-SNE (used for clustering)", chosen.embedding is not None),
        ("UMAP", view.distance is not None),
    )
    if ok
]
if kinds:
    kind = right.radio("Embedding", kinds, horizontal=True, label_visibility="collapsed")
    if kind == "UMAP":
        points = cached_umap(np.asarray(view.distance, dtype=np.float64))
    else:
        points = chosen.embedding
    chart(figures.embedding_figure(points, chosen.labels, chosen.keep, kind), right)
premise_panel(view)
