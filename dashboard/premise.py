"""The premise check of a run (diagnostics.json) as a small panel: can its clusters be trusted?"""

from __future__ import annotations

import streamlit as st

from cahp_core.method.diagnostics import Diagnostics
from cahp_core.runs.results import RunView

DISTANCE_NAMES = {"jm": "JM (paper)", "js": "JS"}


def premise_panel(view: RunView) -> None:
    """Split-half agreement per distance, the JM class signal, and the warnings in words."""
    found = view.diagnostics
    st.subheader("Does CAHP's premise hold here?")
    if found is None:
        st.caption(
            "This run has no diagnostics yet; `cahp diagnose RUN` computes them (one extra "
            "signature pass) and this panel shows them."
        )
        return
    cols = st.columns(len(found["mean_agreement"]) + 1)
    for col, (distance, value) in zip(cols, found["mean_agreement"].items(), strict=False):
        col.metric(
            f"Split-half agreement, {DISTANCE_NAMES.get(distance, distance)}",
            f"{value:.2f}",
            help="Adjusted Rand index between the clusterings of two halves of the training "
            f"data (k = {', '.join(map(str, found['ks']))}; seeds {found['seeds']}): "
            "1 = the same clusters, 0 = chance.",
        )
    cols[-1].metric(
        "JM vs shuffled labels",
        f"{found['shuffled_correlation']:.2f}",
        help="Spearman correlation between the JM distances with the true labels and with "
        "shuffled labels: near 1, the distances do not depend on the classes.",
    )
    warnings = Diagnostics.from_dict(found).warnings()  # today's thresholds on the numbers
    if warnings:
        for warning in warnings:
            st.warning(warning)
    else:
        st.success(
            "Both checks pass: the clusters are stable across halves of the data and "
            "the JM distances depend on the classes."
        )
