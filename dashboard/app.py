"""CAHP Studio dashboard entry point: ``streamlit run dashboard/app.py`` (or ``cahp dashboard``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` from a source checkout
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.state import finished_runs  # noqa: E402
from dashboard.theme import PRESENTATION_CSS  # noqa: E402

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
        current = st.session_state.get("run_label")
        st.selectbox(
            "Run",
            options,
            index=options.index(current) if current in options else 0,
            key="run_label",
            help="The embedded example, or any finished run in the runs folder.",
        )
    presentation = st.toggle("Presentation mode", key="presentation")

if presentation:
    st.markdown(PRESENTATION_CSS, unsafe_allow_html=True)

navigation.run()
