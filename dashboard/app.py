"""CAHP Studio dashboard entry point: ``cahp dashboard`` (or, in a checkout installed with
``pip install -e .``, ``streamlit run dashboard/app.py``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cahp_studio.dashboard.state import finished_runs
from cahp_studio.dashboard.theme import PRESENTATION_CSS

# the repository, or site-packages/cahp_studio: pages/ and assets/ sit beside dashboard/ in both
ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"

st.set_page_config(page_title="CAHP Studio", page_icon="✂️", layout="wide")

navigation = st.navigation(
    [
        st.Page(PAGES / "knee.py", title="Knee", icon=":material/show_chart:", default=True),
        st.Page(
            PAGES / "head_graph.py",
            title="Head graph",
            icon=":material/hub:",
            url_path="head_graph",
        ),
        st.Page(
            PAGES / "clusters.py",
            title="Clusters per layer",
            icon=":material/grid_view:",
            url_path="clusters",
        ),
        st.Page(
            PAGES / "proximity.py",
            title="Proximity bias",
            icon=":material/bar_chart:",
            url_path="proximity",
        ),
        st.Page(PAGES / "export.py", title="Export", icon=":material/download:", url_path="export"),
        st.Page(PAGES / "run.py", title="Run", icon=":material/play_arrow:", url_path="run"),
    ]
)

with st.sidebar:
    st.markdown("### CAHP Studio")
    options = list(finished_runs())
    if options:
        if st.session_state.get("run_label") not in options:  # new session or deleted run
            st.session_state["run_label"] = options[0]
        st.selectbox(
            "Run",
            options,
            key="run_label",
            help="The embedded example, or any finished run in the runs folder.",
        )
    else:
        st.caption("No finished run yet: start one on the Run page.")
    presentation = st.toggle(
        "Presentation mode", key="presentation", help="Larger text and charts, less chrome."
    )

if presentation:
    st.markdown(PRESENTATION_CSS, unsafe_allow_html=True)

navigation.run()
