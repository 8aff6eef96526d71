"""Knee: the quality (or performance) curve, its polynomial fit and the knee; the knee curve
switch and the degree slider every other page and the export follow."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cahp_core.choices import RULE_PARAMETER
from cahp_core.errors import CAHPError
from cahp_studio.dashboard import figures
from cahp_studio.dashboard.exports import start_export
from cahp_studio.dashboard.report import knee_figure
from cahp_studio.dashboard.selection_view import (
    CURVE_LABELS,
    MAX_DEGREE,
    MIN_DEGREE,
    QUALITY_LABELS,
    RULE_LABELS,
    curve_points,
    has_task_curve,
    knee_by_degree,
    rule_settings,
)
from cahp_studio.dashboard.state import (
    ROOT,
    Key,
    chart,
    current_knee_curve,
    current_rule,
    degree_slider_key,
    max_degree,
    page,
    runs_root,
    selection_or_stop,
    set_knee_curve,
    set_rule,
)


def caption(
    knee_curve: str, quality_name: str, n_seeds: int, points: int, rule: str = "complementary"
) -> str:
    """What the curve is and how the knee becomes a selection, in one paragraph."""
    if knee_curve == "performance":
        what = (
            f"The curve is the masked validation accuracy of CAHP's selection at k clusters, "
            f"before fine-tuning, measured by the run at {points} values of k."
        )
    else:
        what = (
            "The curve is the clustering quality of the heads — "
            f"{QUALITY_LABELS.get(quality_name, quality_name)} — against the number of "
            "clusters k: what the paper calls its "
            "marginal-performance curve. It rises with k because more medoids bring every head "
            "closer to its own medoid; the knee is where more clusters stop paying off."
        )
    keep = (
        "the most salient head of each cluster is kept (plus the most salient head of any layer "
        "left empty)"
        if rule == "complementary"
        else f"the selection rule below ({RULE_LABELS[rule]}) keeps as many heads as the paper's "
        "rule would, chosen its own way"
    )
    return (
        f"{what} kneed fits a polynomial of the chosen degree and finds the knee of the fit; "
        f"{keep}. Each of the run's {n_seeds} clustering seeds gives a knee and a selection; "
        "the one shown and exported is the consensus seed's (closest to all the others). Every "
        "other page and the Export follow the curve and degree chosen here."
    )


RULE_HELP = {
    "complementary": "The paper: the most salient head of each cluster at the knee, plus the "
    "most salient head of any layer left empty.",
    "salience-radius": "Heads from most to least salient (as gradient pruning ranks them), "
    "skipping a head that lies within the radius of one already kept. Same head count as "
    "the paper's rule at this knee.",
    "mmr": "Maximal marginal relevance: each next head maximises λ·salience − (1−λ)·similarity "
    "to the heads already kept. λ = 1 is gradient pruning. Same head count as the paper's rule.",
}


RULE_SLIDERS = {  # rule: (label, maximum, step, help) of its one parameter's slider
    "mmr": (
        "λ (salience weight)",
        1.0,
        0.05,
        "1 = gradient pruning; 0 = the most spread-out heads.",
    ),
    "salience-radius": (
        "Radius (distance quantile)",
        0.5,
        0.01,
        "Heads closer than this quantile of all pairwise head distances are redundant.",
    ),
}


def rule_control(view) -> tuple:
    """Which heads to keep once the knee says how many: the rule and its one parameter."""
    current = dict(current_rule(view))
    left, right = st.columns([2, 1])
    name = left.selectbox(
        "Selection rule",
        list(RULE_LABELS),
        index=list(RULE_LABELS).index(current["rule"]),
        format_func=RULE_LABELS.get,
        key=Key.of_run(Key.RULE_SELECT, view),
        help="The knee decides how many heads; the rule decides which. "
        + " ".join(f"{RULE_LABELS[r]}: {h}" for r, h in RULE_HELP.items()),
    )
    value = None
    if name in RULE_SLIDERS:
        parameter = RULE_PARAMETER[name]
        label, top, step, help_text = RULE_SLIDERS[name]
        value = right.slider(
            label,
            0.0,
            top,
            float(current.get(parameter, getattr(view.config, parameter))),
            step,
            key=Key.of_run(parameter, view),
            help=help_text,
        )
    rule = rule_settings(name, value)
    set_rule(view, rule)
    return rule


view = page("Knee: how many heads to keep")
measured = has_task_curve(view)
knee_curve = st.segmented_control(
    "Knee of",
    list(CURVE_LABELS),
    format_func=CURVE_LABELS.get,
    default=current_knee_curve(view),
    required=True,
    disabled=not measured,
    key=Key.of_run(Key.KNEE_CURVE_CONTROL, view),
    help="Quality: the clustering-quality curve (the paper). Performance: the run's "
    "measured masked accuracy at each k.",
)
set_knee_curve(view, knee_curve)
top = max_degree(view, knee_curve)
degree = st.slider(
    "Polynomial degree",
    min_value=MIN_DEGREE,
    max_value=top,
    key=degree_slider_key(view, knee_curve),
    help="Degree 1 is a straight line, which has no knee.",
)
if not measured:
    st.caption(
        "The performance knee needs the run's measured accuracy curve (task_curve.json, "
        "at least 3 values of k), which this run does not have; finish its task_curve "
        "stage with `cahp run`."
    )
rule = rule_control(view)
chosen = selection_or_stop(view, degree, knee_curve, rule)
points = curve_points(view, knee_curve)
st.caption(caption(knee_curve, chosen.quality_name, chosen.n_seeds, points, dict(rule)["rule"]))

cols = st.columns(4)
cols[0].metric(
    "Knee (clusters)",
    chosen.knee.knee,
    chosen.seed_range("knee"),
    delta_color="off",
    delta_arrow="off",
    help=f"Knee of the consensus seed ({chosen.consensus_seed}); below, the knees of "
    "all the seeds.",
)
cols[1].metric(
    "Heads kept",
    f"{chosen.heads_kept} / {chosen.keep.size}",
    chosen.seed_range("heads"),
    delta_color="off",
    delta_arrow="off",
    help="Heads the consensus seed keeps (exported); below, the range over all the seeds.",
)
cols[2].metric("Compression", f"{1 - chosen.heads_kept / chosen.keep.size:.0%}")
expected = chosen.expected_accuracy
full = (view.summary or {}).get("accuracy_full")
cols[3].metric(
    "Expected accuracy",
    "n/a" if expected is None else f"{expected:.3f}",
    None if expected is None or full is None else f"{expected - full:+.3f} vs full",
    help="Masked validation accuracy before fine-tuning, interpolated from the run's "
    "measured task curve (CAHP selections by the paper's rule"
    + (
        ")."
        if dict(rule)["rule"] == "complementary"
        else "; this rule keeps as many heads but other ones, so read it as a guide)."
    ),
)
left, right = st.columns([1, 3], vertical_alignment="center")
if left.button(f"Re-export at degree {degree}", key=Key.KNEE_EXPORT, type="primary"):
    try:
        out = start_export(runs_root(), view, chosen, onnx=True, int8=True)
        st.session_state[Key.EXPORT_MESSAGE] = (
            "success",
            f"Export started: it writes `{out}`.",
        )
        st.switch_page(ROOT / "pages" / "export.py")
    except (CAHPError, OSError) as exc:
        right.error(str(exc))
right.caption(
    "Prunes to this selection, fine-tunes once and saves the folder (with fused fp32 and "
    "int8 ONNX graphs) in the "
    "background; the Export page follows its progress and offers the downloads."
)
if chosen.knee.fallback:
    st.warning(
        f"Fallback knee: {chosen.knee.reason}. The knee-vs-degree chart shows the degrees "
        "where kneed finds one (filled markers)."
    )
rows, refused = knee_by_degree(view, knee_curve)
if refused and min(MAX_DEGREE, points - 1) > top:
    st.caption(
        f"Degrees {top + 1}–{min(MAX_DEGREE, points - 1)} are not offered: the engine "
        f"refuses them for this run ({refused})."
    )

left, right = st.columns([3, 2])
left.subheader("Curve, fit and knee")
chart(knee_figure(chosen), left)
right.subheader("Knee vs degree")
chart(figures.knee_degree_figure(rows, degree), right)
right.caption(
    "Consensus knee and heads kept at every degree; bars span the seeds' min to max. "
    "Short bars and a flat line: a choice that does not hinge on the degree or the seed."
)

left, right = st.columns([3, 2])
left.subheader("Task curve")
if view.task_curve:
    chart(figures.task_curve_figure(view.task_curve, chosen.heads_kept), left)
else:
    left.info("This run has no task curve (task_curve.json): no expected accuracy.")
right.subheader("Seeds")
seeds = pd.DataFrame(
    {
        "seed": list(chosen.knee_by_seed),
        "knee k": list(chosen.knee_by_seed.values()),
        "heads kept": [chosen.heads_by_seed[s] for s in chosen.knee_by_seed],
        "exported": [
            "consensus" if s == chosen.consensus_seed else "" for s in chosen.knee_by_seed
        ],
    }
)
right.dataframe(seeds, hide_index=True, width="stretch")

n_layers, n_heads = chosen.keep.shape
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
