"""Compare: two selections side by side (two degrees, two knee curves, CAHP vs gradient at the
same head count, or two runs): both kept maps, their overlap, depth and expected accuracy."""

from __future__ import annotations

import streamlit as st

from cahp_core.runs.results import RunView
from cahp_studio.dashboard import figures
from cahp_studio.dashboard.compare import (
    MODES,
    Side,
    cahp_side,
    comparable,
    depth_table,
    gradient_side,
    overlap,
    overlap_figure,
    overlap_heads,
)
from cahp_studio.dashboard.selection_view import CURVE_NAMES, MIN_DEGREE, has_task_curve
from cahp_studio.dashboard.state import (
    Key,
    chart,
    current_knee_curve,
    current_rule,
    current_selection,
    finished_runs,
    load_view,
    max_degree,
    page,
    selection_or_stop,
)


def run_label(view: RunView) -> str:
    """The sidebar's label of ``view``'s run."""
    return next((k for k, p in finished_runs().items() if p == view.path), view.path.name)


def degree_pick(container, label: str, top: int, default: int, key: str) -> int:
    """A degree from 2 to ``top`` (``default`` clamped into that range)."""
    options = list(range(MIN_DEGREE, top + 1))
    index = options.index(min(max(default, MIN_DEGREE), top))
    return int(container.selectbox(label, options, index=index, key=key))


def two_degrees(view: RunView, label: str) -> tuple[Side, Side]:
    """The session's knee curve and rule at two degrees (A: the Knee page's degree)."""
    degree, knee_curve, _ = current_selection(view)
    top = max_degree(view, knee_curve)
    left, right = st.columns(2)
    key = f"{view.path}::{knee_curve}::{top}"
    a = degree_pick(left, "Degree A", top, degree, f"compare_a::{key}")
    b = degree_pick(
        right, "Degree B", top, degree + 1 if degree < top else degree - 1, f"compare_b::{key}"
    )
    rule = current_rule(view)
    return (
        cahp_side("A", label, view, selection_or_stop(view, a, knee_curve, rule)),
        cahp_side("B", label, view, selection_or_stop(view, b, knee_curve, rule)),
    )


def two_curves(view: RunView, label: str) -> tuple[Side, Side] | None:
    """The quality and the performance knee at one degree (None without a task curve)."""
    if not has_task_curve(view):
        st.info(
            "This run has no measured accuracy curve (task_curve.json), so no performance "
            "knee: finish its task_curve stage with `cahp run`."
        )
        return None
    degree, _, _ = current_selection(view)
    top = min(max_degree(view, "quality"), max_degree(view, "performance"))
    chosen = degree_pick(st, "Degree", top, degree, f"compare_curves::{view.path}::{top}")
    rule = current_rule(view)
    return (
        cahp_side("A", label, view, selection_or_stop(view, chosen, "quality", rule)),
        cahp_side("B", label, view, selection_or_stop(view, chosen, "performance", rule)),
    )


def two_runs(view: RunView, label: str) -> tuple[Side, Side] | None:
    """This run and another finished run, each at its own degree and knee curve."""
    runs = finished_runs()
    others = [name for name in runs if name != label]
    if not others:
        st.info("Only one finished run: start another on the Run page to compare two runs.")
        return None
    other = st.selectbox("Run B", others, key=Key.COMPARE_RUN_B, help="Any finished run.")
    view_b = load_view(runs[other])
    _, _, chosen_b = current_selection(view_b)
    return (
        cahp_side("A", label, view, current_selection(view)[2]),
        cahp_side("B", other, view_b, chosen_b),
    )


def show_side(container, side: Side, other: Side) -> None:
    """A selection's heading, metrics (B: change from A) and kept-head map."""
    container.subheader(side.title)
    container.caption(side.description)
    left, right = container.columns(2)
    delta = side is not other and side.name == "B"
    left.metric(
        "Heads kept",
        f"{side.heads_kept} / {side.keep.size}",
        f"{side.heads_kept - other.heads_kept:+d} vs A" if delta else None,
        delta_color="off",
    )
    accuracy = side.expected_accuracy
    change = (
        f"{accuracy - other.expected_accuracy:+.3f} vs A"
        if delta and accuracy is not None and other.expected_accuracy is not None
        else None
    )
    right.metric(
        "Expected accuracy",
        "n/a" if accuracy is None else f"{accuracy:.3f}",
        change,
        help="Masked validation accuracy before fine-tuning, interpolated from the run's "
        "measured task curve at this head count (this method's curve).",
    )
    labels, salience = side.chosen.labels, side.view.salience.normalised
    chart(figures.layer_map_figure(labels, side.keep, salience), container, key=f"map_{side.name}")


def show_overlap(a: Side, b: Side) -> None:
    """Jaccard index, counts, the overlap map and the heads of each group."""
    st.subheader("Overlap")
    if not comparable(a, b):
        st.info(
            f"A's model has {a.keep.shape[0]} layers x {a.keep.shape[1]} heads, B's "
            f"{b.keep.shape[0]} x {b.keep.shape[1]}: no head is in both. Compare their "
            "depth statistics below."
        )
        return
    stats = overlap(a.keep, b.keep)
    cols = st.columns(4)
    cols[0].metric("Jaccard index", f"{stats['jaccard']:.2f}", help="Heads in both / in either.")
    cols[1].metric("Heads in both", stats["both"])
    cols[2].metric("Only in A", stats["only A"])
    cols[3].metric("Only in B", stats["only B"])
    chart(overlap_figure(a.keep, b.keep))
    heads = overlap_heads(a.keep, b.keep)
    st.caption(
        " · ".join(f"**{group}**: {', '.join(names) or 'none'}" for group, names in heads.items())
    )


view = page("Compare two selections")
label = run_label(view)
mode = st.segmented_control(
    "Compare",
    list(MODES),
    format_func=MODES.get,
    default="degrees",
    required=True,
    key=Key.COMPARE_MODE,
    help="A is always the selection the Knee page shows unless you pick otherwise.",
)
if mode == "degrees":
    st.caption(
        f"Two degrees of the {CURVE_NAMES[current_knee_curve(view)]} (the knee curve and "
        "selection rule set on the Knee page)."
    )
    sides = two_degrees(view, label)
elif mode == "curves":
    sides = two_curves(view, label)
elif mode == "gradient":
    st.caption(
        "A: CAHP's selection as the Knee page sets it. B: gradient pruning (Michel et al., "
        "2019, per-layer normalised) keeping exactly as many heads."
    )
    _, _, chosen = current_selection(view)
    sides = (cahp_side("A", label, view, chosen), gradient_side("B", label, view, chosen))
else:
    sides = two_runs(view, label)
if sides is not None:
    a, b = sides
    left, right = st.columns(2)
    show_side(left, a, b)
    show_side(right, b, a)
    show_overlap(a, b)
    st.subheader("Depth and accuracy")
    st.dataframe(depth_table([a, b]), hide_index=True, width="stretch")
    st.caption(
        "Mean depth: 0 = first layer, 1 = last. Distance from uniform: total-variation "
        "distance of the kept heads' layer distribution from an even spread (0 = even). "
        "Expected accuracy: masked accuracy (before fine-tuning) interpolated from the run's "
        "task curve at the head count; n/a where the run has no task curve."
    )
