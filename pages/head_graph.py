"""Head graph: all heads of all layers, kNN edges by information-theoretic distance."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cahp_core.method.graph import build_head_graph, graph_to_json
from cahp_studio.dashboard import figures
from cahp_studio.dashboard.graph_view import (
    EMPTY_MESSAGE,
    graph_counts,
    graph_height,
    head_graph_html,
)
from cahp_studio.dashboard.head_details import head_picker, render_head_details
from cahp_studio.dashboard.selection_view import CURVE_NAMES
from cahp_studio.dashboard.state import Key, chart, current_selection, page


@st.cache_data(show_spinner="Building the head graph…")
def rebuilt_graph(distance: np.ndarray, n_layers: int, n_heads: int, neighbors: int) -> dict:
    """The head graph of a run that has no graph.json (from its distance matrix)."""
    return graph_to_json(build_head_graph(distance, n_layers, n_heads, neighbors))


view = page("Head graph")
degree, knee_curve, chosen = current_selection(view)
graph = view.graph
if graph is None and view.distance is not None:
    n_layers, n_heads = view.shape
    graph = rebuilt_graph(view.distance, n_layers, n_heads, view.config.graph_neighbors)
if graph is None:
    st.error(
        "This run has no head graph (graph.json) and no distance matrix; re-run it with `cahp run`."
    )
    st.stop()
st.caption(
    f"Degree {degree}, {CURVE_NAMES[knee_curve]} (change them on the Knee page): "
    f"{chosen.heads_kept} heads kept ({chosen.seed_range('heads')}). Heads are "
    "placed by layer (left to right) and head (top to bottom); the legend with the graph "
    "explains stars, sizes and colours. Edges join each head to its nearest heads by "
    "attention-signature distance. Hover or click a head; drag to pan, scroll to zoom."
)
n_layers, _ = view.shape
clusters = sorted({int(c) for c in chosen.labels})
c1, c2, c3 = st.columns([2, 2, 1])
layers = c1.multiselect("Layers", list(range(n_layers)), default=list(range(n_layers)))
picked = c2.multiselect("Clusters", clusters, default=[], placeholder="all clusters")
style = c3.radio("View", ["Interactive", "Plotly"], horizontal=True)
counts = graph_counts(graph, chosen.labels, chosen.keep, layers, picked or None)
if counts.heads == 0:
    st.info(EMPTY_MESSAGE)
elif style == "Interactive":
    html = head_graph_html(
        graph,
        chosen.labels,
        chosen.keep,
        view.salience.normalised,
        layers=layers,
        clusters=picked or None,
    )
    st.iframe(html, height=graph_height(view.shape[1]) + 10)  # inlined: nothing fetched
else:
    chart(
        figures.graph_figure(
            graph,
            chosen.labels,
            chosen.keep,
            view.salience.normalised,
            layers=layers,
            clusters=picked or None,
        )
    )
st.caption(counts.caption())
picked_head = head_picker(chosen.labels, chosen.keep, key=Key.of_run(Key.HEAD_PICK_GRAPH, view))
if picked_head is not None:
    render_head_details(view, chosen, *picked_head)
