"""One head, explained: its cluster and cluster-mates, why it is kept or dropped, its
gradient rank and its attention maps (pure logic first, then the Streamlit panel)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from cahp_core.method.selection import complementary_selection, layer_normalised

PICKER_LABEL = "Head details: layer/head"
RULE_WHAT = {
    "salience-radius": "takes heads from most to least salient (layer-normalised), skipping a "
    "head that lies within the radius of one already kept",
    "mmr": "greedily trades salience against similarity to the heads already kept",
}


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


@dataclass(frozen=True)
class Verdict:
    """Kept or not, and why: ``reason`` is one of ``cluster-best``, ``layer-rescue``,
    ``cluster-beaten``, ``rule`` (a non-paper rule decided) or ``unexplained``; ``text`` is
    ``headline: why``."""

    kept: bool
    reason: str
    headline: str  # "Kept", "Kept to rescue layer 3", "Dropped"
    why: str

    @property
    def text(self) -> str:
        return f"{self.headline}: {self.why}"


def cluster_mates(labels: np.ndarray, n_heads: int, layer: int, head: int) -> list[tuple[int, int]]:
    """The other heads of this head's cluster, as (layer, head), in flat order."""
    labels = np.asarray(labels)
    index = layer * n_heads + head
    members = np.flatnonzero(labels == labels[index])
    return [(int(i) // n_heads, int(i) % n_heads) for i in members if i != index]


def gradient_rank(salience: np.ndarray, layer: int, head: int) -> int:
    """1-based rank of the head by layer-normalised salience, as the gradient baseline
    (Michel et al.) ranks heads; ties go to the lowest flat index."""
    flat = layer_normalised(salience).ravel()
    order = np.lexsort((np.arange(flat.size), -flat))
    return int(np.flatnonzero(order == layer * salience.shape[1] + head)[0]) + 1


def cluster_winner(labels: np.ndarray, salience: np.ndarray, cluster: int) -> int:
    """Flat index of the cluster's most salient head (first of ties, as the paper's rule)."""
    members = np.flatnonzero(np.asarray(labels) == cluster)
    return int(members[np.argmax(np.asarray(salience, dtype=float).ravel()[members])])


def _name(flat: int, n_heads: int) -> str:
    return head_name(flat // n_heads, flat % n_heads)


def complementary_verdict(
    labels: np.ndarray,
    salience: np.ndarray,
    keep: np.ndarray,
    layer: int,
    head: int,
    shown: np.ndarray | None = None,
) -> Verdict:
    """Why the paper's complementary rule keeps or drops the head: most salient of its
    cluster, rescued because its layer would otherwise be empty, or beaten by a more salient
    head of its cluster. ``salience`` ``[L, H]`` is what the selector compared; the text
    quotes ``shown`` (an increasing rescaling of it, e.g. the 0-1 salience; default: it)."""
    n_heads = keep.shape[1]
    flat_salience = np.asarray(salience if shown is None else shown, dtype=float).ravel()
    index = layer * n_heads + head
    cluster = int(labels[index])
    winner = cluster_winner(labels, salience, cluster)
    mates = np.flatnonzero(np.asarray(labels) == cluster)
    winners = {cluster_winner(labels, salience, int(c)) for c in np.unique(labels)}
    layer_had_winner = any(w // n_heads == layer for w in winners)
    kept = bool(keep[layer, head])
    me, best = flat_salience[index], flat_salience[winner]
    if kept and winner == index:
        if len(mates) == 1:
            return Verdict(True, "cluster-best", "Kept", f"the only head of cluster {cluster}.")
        runner = max((m for m in mates if m != index), key=lambda m: flat_salience[m])
        return Verdict(
            True,
            "cluster-best",
            "Kept",
            f"the most salient head of cluster {cluster} (salience {me:.3f}; the next best of "
            f"its {len(mates)} heads, {_name(runner, n_heads)}, has {flat_salience[runner]:.3f}).",
        )
    if kept and not layer_had_winner and index == layer * n_heads + int(np.argmax(salience[layer])):
        return Verdict(
            True,
            "layer-rescue",
            f"Kept to rescue layer {layer}",
            f"no head of layer {layer} is the most salient of its cluster, so the rule gives "
            f"the layer back its most salient head (this one) rather than leave it empty. "
            f"Cluster {cluster} itself is represented by {_name(winner, n_heads)} (salience "
            f"{best:.3f}).",
        )
    if not kept and winner != index:
        tie = (
            "as salient and comes first (ties go to the lower layer/head)"
            if best == me
            else f"more salient ({best:.3f} against {me:.3f})"
        )
        return Verdict(
            False,
            "cluster-beaten",
            "Dropped",
            f"another head of cluster {cluster}, {_name(winner, n_heads)}, is {tie}; the rule "
            "keeps one head per cluster.",
        )
    return Verdict(
        kept,
        "unexplained",
        "Kept" if kept else "Dropped",
        "by the complementary rule (the salience shown here does not reproduce the run's choice).",
    )


def verdict(
    labels: np.ndarray,
    salience: np.ndarray,
    keep: np.ndarray,
    layer: int,
    head: int,
    rule: dict | None = None,
    shown: np.ndarray | None = None,
) -> Verdict:
    """Why the head is kept or dropped under ``rule`` (``{"rule": name, parameter: value}``;
    None: the paper's complementary rule). Other rules: which rule decided, and what the
    paper's rule would have done. ``shown``: as in ``complementary_verdict``."""
    rule = dict(rule or {})
    name = rule.pop("rule", "complementary")
    if name == "complementary":
        return complementary_verdict(labels, salience, keep, layer, head, shown)
    kept = bool(keep[layer, head])
    n_layers, n_heads = keep.shape
    paper_keep = complementary_selection(labels, salience, n_layers, n_heads)
    paper = complementary_verdict(labels, salience, paper_keep, layer, head, shown)
    knobs = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in rule.items())
    knobs = f" ({knobs})" if knobs else ""
    return Verdict(
        kept,
        "rule",
        f"{'Kept' if kept else 'Dropped'} by the {name} rule",
        f"the knee fixes how many heads ({int(keep.sum())}) and this rule{knobs} "
        f"{RULE_WHAT.get(name, 'picks which')}; clusters do not decide. The paper's "
        f"complementary rule would have {'kept' if paper.kept else 'dropped'} it: {paper.why}",
    )


@dataclass(frozen=True)
class HeadDetails:
    """Everything the panel says about one head."""

    layer: int
    head: int
    salience: float  # normalised to [0, 1]
    cluster: int
    mates: list[tuple[int, int]]
    verdict: Verdict
    rank: int  # gradient rank, 1 = most important
    n_total: int
    gradient_keeps: bool  # would the gradient baseline keep it at the same budget?

    @property
    def name(self) -> str:
        return head_name(self.layer, self.head)


def head_details(
    labels: np.ndarray,
    keep: np.ndarray,
    raw_salience: np.ndarray,
    normalised_salience: np.ndarray,
    layer: int,
    head: int,
    rule: dict | None = None,
) -> HeadDetails:
    """The panel's facts for head (``layer``, ``head``) of a selection (``keep`` ``[L, H]``,
    ``labels`` ``[N]``); ``raw_salience`` is what the selector compared."""
    n_heads = keep.shape[1]
    rank = gradient_rank(raw_salience, layer, head)
    return HeadDetails(
        layer=int(layer),
        head=int(head),
        salience=float(normalised_salience[layer, head]),
        cluster=int(labels[layer * n_heads + head]),
        mates=cluster_mates(labels, n_heads, layer, head),
        verdict=verdict(labels, raw_salience, keep, layer, head, rule, normalised_salience),
        rank=rank,
        n_total=int(keep.size),
        gradient_keeps=rank <= int(keep.sum()),
    )


def class_names(task: str, n_classes: int) -> list[str]:
    """The task's label names (built-in tasks), else ``class 0``, ``class 1``, ..."""
    from cahp_core.data import TASKS

    names = TASKS[task].label_names if task in TASKS else None
    if names and len(names) == n_classes:
        return [f"{i}: {n}" for i, n in enumerate(names)]
    return [f"class {i}" for i in range(n_classes)]


def class_maps(signatures: dict[str, np.ndarray], layer: int, head: int) -> np.ndarray:
    """The head's mean attention map per class ``[C, S, S]`` from signature arrays
    (``mean`` ``[L, H, C, S*S]``)."""
    per_class = np.asarray(signatures["mean"][layer, head], dtype=np.float32)  # [C, D]
    side = int(round(np.sqrt(per_class.shape[-1])))
    return per_class.reshape(len(per_class), side, side)


def class_maps_figure(maps: np.ndarray, names: list[str], layer: int, head: int):
    """One heatmap per class on one shared colour scale (with its colorbar)."""
    from plotly.subplots import make_subplots

    n = len(maps)
    columns = min(n, 5)
    rows = -(-n // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=names, horizontal_spacing=0.03)
    top = float(np.max(maps)) if maps.size else 1.0
    for i, grid in enumerate(maps):
        fig.add_heatmap(
            z=grid,
            zmin=0.0,
            zmax=top,
            colorscale="Blues",
            showscale=i == 0,
            colorbar={"title": {"text": "attention"}},
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(
        title=f"mean attention map of {head_name(layer, head)} per class (query rows, key columns)",
        height=80 + 230 * rows,
        margin={"t": 80},
    )
    return fig


# ---------------------------------------------------------------- the Streamlit panel


def head_label(index: int, labels: np.ndarray, keep: np.ndarray) -> str:
    """``L2H5 · layer 2 / head 5 · cluster 3 · kept``: how the picker lists a head."""
    n_heads = keep.shape[1]
    layer, head = divmod(int(index), n_heads)
    state = "kept" if keep[layer, head] else "dropped"
    return f"{head_name(layer, head)} · layer {layer} / head {head} · cluster {labels[index]} · {state}"


def clicked_head(event, n_heads: int) -> int | None:
    """Flat index of the layer-map cell clicked (a plotly ``on_select`` event: x = head,
    y = layer), or None."""
    points = event.get("selection", {}).get("points", []) if event else []
    for point in points:
        if point.get("x") is not None and point.get("y") is not None:
            return int(point["y"]) * n_heads + int(point["x"])
    return None


def head_picker(labels: np.ndarray, keep: np.ndarray, key: str, container=None):
    """The "Head details: layer/head" selectbox; (layer, head) picked, or None."""
    index = (container or st).selectbox(
        PICKER_LABEL,
        list(range(keep.size)),
        index=None,
        key=key,
        format_func=lambda i: head_label(i, labels, keep),
        placeholder="pick a head to see why it is kept or dropped",
        help="Clicks inside the graph cannot reach this page: pick the head here.",
    )
    return None if index is None else divmod(int(index), keep.shape[1])


@st.cache_data(show_spinner=False, max_entries=4)
def run_signatures(path: str, stamp: float) -> dict[str, np.ndarray] | None:
    """The run's per-class signature arrays (``signatures.safetensors``), if it has them."""
    from cahp_core.runs import run_format

    return run_format.read(path, run_format.SIGNATURES, missing_ok=True)


def render_head_details(view, chosen, layer: int, head: int) -> HeadDetails:
    """The panel: layer, head, salience, cluster and mates, kept or not and why, gradient
    rank and the head's attention map per class (the mean map where the run has no
    per-class signatures). ``view`` a RunView, ``chosen`` a DegreeView."""
    from . import figures
    from .selection_view import run_stamp
    from .state import chart

    details = head_details(
        chosen.labels,
        chosen.keep,
        view.salience.raw,
        view.salience.normalised,
        layer,
        head,
        dict(chosen.rule),
    )
    st.subheader(f"Head {details.name}: layer {layer}, head {head}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", "kept" if details.verdict.kept else "dropped")
    c2.metric("Salience", f"{details.salience:.2f}", help="gradient importance, scaled to 0-1")
    c3.metric("Cluster", str(details.cluster))
    c4.metric(
        "Gradient rank",
        f"{details.rank} of {details.n_total}",
        help="by layer-normalised |dL/dgate| (Michel et al.); 1 = most important",
    )
    (st.success if details.verdict.kept else st.warning)(
        f"**{details.verdict.headline}**: {details.verdict.why}"
    )
    mates = ", ".join(
        head_name(ly, h) + (" ★" if chosen.keep[ly, h] else "") for ly, h in details.mates
    )
    st.markdown(
        f"**Cluster {details.cluster}** has {len(details.mates) + 1} heads; cluster-mates: "
        + (mates or "none (a cluster of its own)")
        + ". ★ = kept."
    )
    budget = chosen.heads_kept
    st.markdown(
        f"**Gradient rank {details.rank} of {details.n_total}**: the gradient baseline, keeping "
        f"the top {budget} heads, would {'keep' if details.gradient_keeps else 'drop'} it."
    )
    signatures = run_signatures(str(view.path), run_stamp(view.path))
    if signatures is not None and "mean" in signatures:
        maps = class_maps(signatures, layer, head)
        names = class_names(view.config.task, len(maps))
        chart(class_maps_figure(maps, names, layer, head))
    elif view.head_maps is not None:
        st.caption(
            "This run ships only the mean over classes (no per-class signatures, "
            "signatures.safetensors)."
        )
        chart(figures.head_map_figure(view.head_maps[layer, head], layer, head))
    else:
        st.caption("This run stores no attention maps.")
    return details
