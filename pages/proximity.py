"""Proximity bias: where CAHP, gradient and random pruning keep heads, at the same budget."""

from __future__ import annotations

import streamlit as st

from cahp_core.proximity import compare_depths
from cahp_studio.dashboard import figures
from cahp_studio.dashboard.figures import CURVE_METRICS
from cahp_studio.dashboard.report import quality_summary
from cahp_studio.dashboard.selection_view import CURVE_NAMES, method_maps, nearest_curve_point
from cahp_studio.dashboard.state import ROOT, chart, current_selection, current_view
from cahp_studio.dashboard.theme import DEPTH_LABELS, METHOD_LABELS

st.title("Proximity bias")
view = current_view()
if view is not None:
    degree, knee_curve, chosen = current_selection(view)
    seed_column, raw_column = st.columns([1, 3])
    seed = seed_column.number_input("Random baseline seed", min_value=0, value=0, step=1)
    raw_gradient = raw_column.toggle(
        "Also gradient without per-layer normalisation",
        key="proximity_raw_gradient",
        help="Michel et al. divide each layer's importances by their L2 norm, which evens the "
        "layers out; the raw global ranking is the form whose proximity bias the paper describes.",
    )
    maps = method_maps(view, chosen.keep, int(seed), raw_gradient=raw_gradient)
    st.caption(
        f"Budget: {chosen.heads_kept} heads, CAHP's count at degree {degree} "
        f"({CURVE_NAMES[knee_curve]}). Gradient keeps the "
        "globally most important heads (Michel et al., 2019, per-layer normalised); random keeps "
        "as many at random. Gradient methods tend to keep heads near the output; CAHP keeps "
        "intermediate-layer heads (the paper's claim — check it here)."
    )
    chart(figures.per_layer_figure(maps))
    table = compare_depths(maps)
    table["method"] = table["method"].map(METHOD_LABELS)
    points = [nearest_curve_point(view, method, chosen.heads_kept) for method in maps]
    for column, field in (
        ("masked accuracy", "accuracy"),
        ("masked macro-F1", "macro_f1"),
        ("KL from full", "kl"),
    ):
        table[column] = [
            None if p is None or p.get(field) is None else round(p[field], 3) for p in points
        ]
    table["measured at (heads)"] = [None if p is None else int(p["heads_kept"]) for p in points]
    table = table.drop(columns=["kept_per_layer"]).rename(columns=DEPTH_LABELS).round(3)
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(
        "Mean depth: 0 = first layer, 1 = last. Distance from uniform: total-variation distance "
        "of the kept heads' layer distribution from an even spread (0 = even). Masked accuracy "
        "is measured by the run before any fine-tuning, at the task-curve point with the "
        "closest head count (its random baseline used the run's seed). KL: how far the "
        "masked model's predicted class distribution moved from the full model's (nats, mean "
        "over the validation examples; paired, so it separates methods that tie on accuracy)."
    )
    st.subheader("Retraining-free view: every budget, before any fine-tuning")
    if view.task_curve:
        measured = [m for m in CURVE_METRICS if any(r.get(m) is not None for r in view.task_curve)]
        metric = st.segmented_control(
            "Measure",
            measured,
            format_func=lambda m: {
                "accuracy": "Accuracy",
                "macro_f1": "Macro-F1",
                "kl": "KL from full model",
            }[m],
            default="accuracy",
            required=True,
            key="retraining_free_metric",
        )
        chart(figures.task_curve_figure(view.task_curve, chosen.heads_kept, metric))
        st.caption(
            "The run's task curve: CAHP's complementary selection at each measured k, and "
            "gradient and random with as many heads, each masked in the fine-tuned full model. "
            "A re-tune after pruning narrows these gaps (see the benchmarks below)."
        )
    else:
        st.info("This run has no task curve (task_curve.json); finish it with `cahp run`.")
    results = ROOT / "benchmarks" / "results" / "quality.json"
    if results.is_file():
        st.subheader("Benchmarks: masked and after one re-tune (benchmarks/quality.py)")
        try:
            st.dataframe(quality_summary(results), hide_index=True, width="stretch")
        except (OSError, ValueError, KeyError) as exc:
            st.warning(f"{results} could not be read ({exc}); re-run benchmarks/quality.py")
