"""Proximity bias: where CAHP, gradient and random pruning keep heads, at the same budget, and
whether each keeps them closer to the output than random selections of as many heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cahp_core.benchmark_results import benchmark_frame
from cahp_core.errors import CAHPError
from cahp_core.method.proximity import (
    ALPHA,
    N_DRAWS,
    TEST_SEED,
    ProximityTest,
    common_curve_count,
    compare_depths,
    proximity_table,
    proximity_tests,
)
from cahp_core.runs.results import RunView
from cahp_studio.dashboard import figures
from cahp_studio.dashboard.benchmark_results import published_quality_results
from cahp_studio.dashboard.figures import (
    BENCHMARK_METHODS,
    BENCHMARK_METRICS,
    BENCHMARK_SPLITS,
    BENCHMARK_TASKS,
    CURVE_METRICS,
    budget_label,
)
from cahp_studio.dashboard.report import quality_summary
from cahp_studio.dashboard.selection_view import CURVE_NAMES, method_maps
from cahp_studio.dashboard.state import Key, chart, current_selection, page
from cahp_studio.dashboard.theme import DEPTH_LABELS, METHOD_LABELS

PROSE_NAMES = {  # each method as named in the verdict sentence
    "cahp": "CAHP",
    "gradient": "gradient",
    "gradient-raw": "un-normalised gradient",
    "random": "random",
}
PROTOCOLS = {"cpu": "CPU protocol", "paper": "Paper's protocol"}
VIEWS = {False: "Masked, no re-tune", True: "After one re-tune"}


@st.cache_data(show_spinner=f"Comparing with {N_DRAWS:,} random selections…", max_entries=64)
def cached_tests(maps: dict[str, np.ndarray]) -> dict[str, ProximityTest]:
    return proximity_tests(maps, PROSE_NAMES)


def curve_point(view: RunView, method: str, heads: int | None) -> dict | None:
    """The run's task-curve record of ``method`` at exactly ``heads`` heads (None if absent)."""
    return next(
        (r for r in view.task_curve if r["method"] == method and r["heads_kept"] == heads), None
    )


def count_statement(budget: int, measured_at: int | None) -> str:
    """Which head count the depth test and the accuracy columns use (one for every method)."""
    same = f"**Same head count for every method:** each keeps exactly {budget} heads"
    if measured_at is None:
        return same + "; the run measured no head count for every method, so no accuracy."
    if measured_at == budget:
        return same + f", and masked accuracy, macro-F1 and KL are measured at {budget} heads."
    return (
        same + " in the depth statistics and the test. The run measured masked accuracy at "
        f"{measured_at} heads, not {budget}, so masked accuracy, macro-F1 and KL of every "
        f"method are taken at {measured_at} heads (the closest count measured for all of them)."
    )


def show_verdicts(tests: dict[str, ProximityTest]) -> None:
    """Each method's verdict sentence (random's is only in the table: it calibrates)."""
    st.subheader("Verdict: closer to the output than random?")
    for method, test in tests.items():
        if method != "random":
            (st.success if test.closer_to_output else st.info)(test.sentence)
    st.caption(
        f"Each map is compared with {N_DRAWS:,} uniform random selections of as many heads "
        f"(test seed {TEST_SEED}): mean depth by a permutation test, the share in the last "
        "third exactly (hypergeometric). p: one-sided, the chance that a random selection is "
        f"at least as close to the output; the verdict needs p < {ALPHA} on mean depth. sd: "
        "the difference from random's mean in standard deviations of random (the effect size)."
    )


def depth_table(view: RunView, maps: dict[str, np.ndarray], measured_at: int | None):
    """Depth statistics per method with the run's masked measurements at ``measured_at``."""
    table = compare_depths(maps)
    table["method"] = table["method"].map(METHOD_LABELS)
    points = [curve_point(view, method, measured_at) for method in maps]
    for column, field in (
        ("masked accuracy", "accuracy"),
        ("masked macro-F1", "macro_f1"),
        ("KL from full", "kl"),
    ):
        table[column] = [
            None if p is None or p.get(field) is None else round(p[field], 3) for p in points
        ]
    table["measured at (heads)"] = [None if p is None else int(p["heads_kept"]) for p in points]
    return table.drop(columns=["kept_per_layer"]).rename(columns=DEPTH_LABELS).round(3)


def numbers_table(tests: dict[str, ProximityTest]) -> pd.DataFrame:
    table = proximity_table(tests)
    table["method"] = table["method"].map(METHOD_LABELS)
    return table.round(3)


def show_benchmarks(path: Path) -> None:
    """benchmarks/quality.py's results as a chart (protocol, view, measure and methods)."""
    st.subheader("Benchmarks: masked and after one re-tune (benchmarks/quality.py)")
    try:
        frame = benchmark_frame(pd.DataFrame(json.loads(path.read_text())))
        summary = quality_summary(path)
    except (OSError, ValueError, KeyError) as exc:
        st.warning(f"{path} could not be read ({exc}); re-run benchmarks/quality.py")
        return
    c1, c2, c3 = st.columns(3)
    protocols = [p for p in PROTOCOLS if p in set(frame["protocol"])]
    protocol = c1.segmented_control(
        "Protocol", protocols, format_func=PROTOCOLS.get, default=protocols[0], required=True
    )
    frame = frame[frame["protocol"] == protocol]
    views = [v for v in VIEWS if v in set(frame[frame["method"] != "full"]["retune"])]
    retune = c2.segmented_control(
        "View", views, format_func=VIEWS.get, default=views[0], required=True
    )
    part = frame[frame["retune"] == retune]
    measures = [m for m in BENCHMARK_METRICS if m in part and part[m].notna().any()]
    metric = c3.segmented_control(
        "Measure",
        measures,
        format_func=lambda m: BENCHMARK_METRICS[m].split(" (")[0].capitalize(),
        default=measures[0],
        required=True,
        key=Key.BENCHMARK_METRIC,
    )
    present = [m for m in BENCHMARK_METHODS if m in set(part["method"])]
    methods = st.multiselect(
        "Methods",
        present,
        default=[m for m in ("cahp", "gradient", "random") if m in present],
        format_func=BENCHMARK_METHODS.get,
    )
    chart(figures.benchmark_figure(frame, retune, metric, methods))
    st.caption(
        "Mean over seeds (error bars: one standard deviation across seeds; hover for the "
        "head count and the number of seeds). Budgets are shares of all heads; at CAHP's "
        "knee every method keeps CAHP's head count. Masked: the selection applied to the "
        "fine-tuned model; after one re-tune: fine-tuned again once pruned. Dashed: full model."
    )
    with st.expander("The numbers"):
        summary["budget_frac"] = summary["budget_frac"].map(budget_label)
        for column, labels in (
            ("protocol", PROTOCOLS),
            ("task", BENCHMARK_TASKS),
            ("split", BENCHMARK_SPLITS),
            ("method", BENCHMARK_METHODS),
        ):
            summary[column] = summary[column].map(lambda v, labels=labels: labels.get(v, v))
        st.dataframe(
            summary.rename(
                columns={
                    "budget_frac": "budget (share of heads)",
                    "retune": "view",
                    "std": "accuracy sd",
                    "macro_f1": "macro-F1",
                    "kl": "KL from full",
                }
            ),
            hide_index=True,
            width="stretch",
        )


view = page("Proximity bias")
degree, knee_curve, chosen = current_selection(view)
seed_column, raw_column = st.columns([1, 3])
seed = seed_column.number_input("Random baseline seed", min_value=0, value=0, step=1)
raw_gradient = raw_column.toggle(
    "Also gradient without per-layer normalisation",
    key=Key.PROXIMITY_RAW_GRADIENT,
    help="Michel et al. divide each layer's importances by their L2 norm, which evens the "
    "layers out; the raw global ranking is the form whose proximity bias the paper describes.",
)
maps = method_maps(view, chosen.keep, int(seed), raw_gradient=raw_gradient)
budget = chosen.heads_kept
st.caption(
    f"Budget: {budget} heads, CAHP's count at degree {degree} "
    f"({CURVE_NAMES[knee_curve]}). Gradient keeps the "
    "globally most important heads (Michel et al., 2019, per-layer normalised); random keeps "
    "as many at random. Gradient methods tend to keep heads near the output; CAHP keeps "
    "intermediate-layer heads (the paper's claim — check it here)."
)
try:
    tests = cached_tests(maps)
except CAHPError as exc:  # e.g. a selection that keeps every head
    st.info(f"No proximity test for this selection: {exc}")
    tests = {}
if tests:
    show_verdicts(tests)
chart(figures.per_layer_figure(maps))
measured_at = common_curve_count(view.task_curve, maps, budget)
st.dataframe(depth_table(view, maps, measured_at), hide_index=True, width="stretch")
st.markdown(count_statement(budget, measured_at))
st.caption(
    "Mean depth: 0 = first layer, 1 = last. Distance from uniform: total-variation distance "
    "of the kept heads' layer distribution from an even spread (0 = even). Masked accuracy "
    "is measured by the run before any fine-tuning (its random baseline used the run's "
    "seed). KL: how far the masked model's predicted class distribution moved from the "
    "full model's (nats, mean over the validation examples; paired, so it separates "
    "methods that tie on accuracy)."
)
if tests:
    st.markdown("**The test in numbers**")
    st.dataframe(numbers_table(tests), hide_index=True, width="stretch")
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
        key=Key.RETRAINING_FREE_METRIC,
    )
    chart(figures.task_curve_figure(view.task_curve, budget, metric))
    st.caption(
        "The run's task curve: CAHP's complementary selection at each measured k, and "
        "gradient and random with as many heads, each masked in the fine-tuned full model. "
        "A re-tune after pruning narrows these gaps (see the benchmarks below)."
    )
else:
    st.info("This run has no task curve (task_curve.json); finish it with `cahp run`.")
results = published_quality_results()
if results is not None:
    show_benchmarks(results)
