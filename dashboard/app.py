"""CAHP Studio dashboard entry point: ``cahp dashboard`` (or, in a checkout installed with
``pip install -e .``, ``streamlit run dashboard/app.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from cahp_studio.dashboard.state import Key, finished_runs
from cahp_studio.dashboard.theme import PRESENTATION_CSS

# the repository, or site-packages/cahp_studio: pages/ and assets/ sit beside dashboard/ in both
ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"

# presentation mode (sidebar toggle, kept in the session) collapses the sidebar: more room
st.set_page_config(
    page_title="CAHP Studio",
    page_icon="✂️",
    layout="wide",
    initial_sidebar_state="collapsed" if st.session_state.get(Key.PRESENTATION) else "auto",
)

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
        st.Page(
            PAGES / "compare.py",
            title="Compare",
            icon=":material/compare_arrows:",
            url_path="compare",
        ),
        st.Page(PAGES / "export.py", title="Export", icon=":material/download:", url_path="export"),
        st.Page(PAGES / "run.py", title="Run", icon=":material/play_arrow:", url_path="run"),
    ]
)

with st.sidebar:
    st.markdown("### CAHP Studio")
    options = list(finished_runs())
    if options:
        if st.session_state.get(Key.RUN_LABEL) not in options:  # new session or deleted run
            st.session_state[Key.RUN_LABEL] = options[0]
        st.selectbox(
            "Run",
            options,
            key=Key.RUN_LABEL,
            help="The embedded example, or any finished run in the runs folder.",
        )
    else:
        st.caption("No finished run yet: start one on the Run page.")
    presentation = st.toggle(
        "Presentation mode", key=Key.PRESENTATION, help="Larger text and charts, less chrome."
    )

if presentation:
    st.markdown(PRESENTATION_CSS, unsafe_allow_html=True)
    if not st.session_state.get(Key.PRESENTED):  # just switched on: let the browser apply the
        # larger sizes before the page's tables, whose canvas reads its font size once, are
        # drawn (without the pause they stay at 14 px: tests/test_browser_presentation.py)
        time.sleep(0.3)
    st.session_state[Key.PRESENTED] = True
    with st.container():  # a fresh subtree: every table is drawn again, at the larger size
        navigation.run()
else:
    st.session_state[Key.PRESENTED] = False
    navigation.run()
