"""Legends, cluster colours, graph filters and the head-details panel (issue #15, 1 and 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest
from streamlit.testing.v1 import AppTest

from cahp_core.method.selection import complementary_selection, layer_normalised

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
EXAMPLE = ROOT / "assets" / "default_run"
TIMEOUT = 120
PICKER = "Head details: layer/head"


@pytest.fixture
def env(tiny_runs, monkeypatch):
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tiny_runs))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tiny_runs / "tiny-run"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tiny_runs


@pytest.fixture(scope="module")
def tiny_view(tiny_runs):
    from cahp_core.runs.results import RunView

    return RunView(tiny_runs / "tiny-run")


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT).run()


def _picker(at: AppTest):
    return next(s for s in at.selectbox if s.label == PICKER)


def _pick(at: AppTest, state: str) -> tuple[AppTest, str]:
    """Pick the first head the picker lists as ``state`` ("kept" or "dropped")."""
    picker = _picker(at)
    index = next(i for i, label in enumerate(picker.options) if label.endswith(f"· {state}"))
    return picker.set_value(index).run(), picker.options[index].split(" ")[0]


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _frames(at: AppTest) -> list:
    return [e for e in at.main if getattr(e, "type", "") == "iframe"]


# ---------------------------------------------------------------- colours


def test_cluster_colours_never_repeat():
    from cahp_core.palette import CLUSTER_PALETTE
    from cahp_studio.dashboard.theme import cluster_color, cluster_palette

    colours = [cluster_color(c) for c in range(400)]
    assert len(set(colours)) == 400
    assert colours[: len(CLUSTER_PALETTE)] == list(CLUSTER_PALETTE)  # small runs look the same
    assert cluster_palette(30) == cluster_palette(64)[:30]  # a colour never depends on the count
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c, re.IGNORECASE) for c in colours)


def test_the_embedded_example_has_a_colour_per_cluster():
    from cahp_core.runs.results import RunView
    from cahp_studio.dashboard.theme import cluster_color

    view = RunView(EXAMPLE)
    most = max(
        (view.clustering.labels_for(int(k)) for k in view.clustering.ks),
        key=lambda labels: len(np.unique(labels)),
    )
    clusters = np.unique(most)
    assert len(clusters) >= 30
    assert len({cluster_color(c) for c in clusters}) == len(clusters)
    at_knee = np.asarray(json.loads((EXAMPLE / "selection.json").read_text())["labels"])
    assert len({cluster_color(c) for c in np.unique(at_knee)}) == len(np.unique(at_knee))


def test_text_colour_reads_on_its_swatch():
    from cahp_core.palette import KEPT_COLOR
    from cahp_studio.dashboard.theme import text_color

    assert text_color("#ffffff") == KEPT_COLOR and text_color("#0D2A63") == "#ffffff"


def test_layer_map_prints_cluster_numbers_and_heatmaps_have_a_colour_scale():
    from cahp_studio.dashboard import figures
    from cahp_studio.dashboard.theme import cluster_color

    labels = np.array([0, 1, 1, 2, 0, 2])
    keep = np.array([[True, False, False], [False, False, True]])
    fig = figures.layer_map_figure(labels, keep, np.linspace(0, 1, 6).reshape(2, 3))
    assert list(fig.data[0].text) == ["★0", "1", "1", "2", "0", "★2"]
    assert list(fig.data[0].marker.color) == [cluster_color(c) for c in labels]
    assert [list(p) for p in fig.data[0].customdata][5] == [1, 2]  # (layer, head) per cell
    assert "cluster" in fig.layout.annotations[0].text and fig.data[1].name.startswith("★")
    sizes = figures.cluster_sizes_figure(labels)
    assert sizes.layout.xaxis.type == "category"  # every cluster number under its bar
    heat = figures.head_map_figure(np.eye(4), 0, 1)
    assert heat.data[0].showscale and heat.data[0].colorbar.title.text == "attention"


# ---------------------------------------------------------------- the graph


def _graph() -> dict:
    return {
        "nodes": [{"id": f"L{i // 3}H{i % 3}", "layer": i // 3, "head": i % 3} for i in range(6)],
        "edges": [
            {"source": "L0H0", "target": "L1H2", "weight": 0.5},
            {"source": "L0H0", "target": "L0H1", "weight": 0.5},
        ],
    }


def test_graph_html_has_an_on_canvas_legend_and_an_empty_state():
    from cahp_studio.dashboard.graph_view import EMPTY_MESSAGE, LABEL_FONT, head_graph_html

    labels = np.array([0, 1, 1, 2, 0, 2])
    keep = np.array([[True, False, False], [False, False, True]])
    salience = np.linspace(0, 1, 6).reshape(2, 3)
    html = head_graph_html(_graph(), labels, keep, salience)
    assert html.count('class="cahp-legend"') == 1
    legend = html[html.index('class="cahp-legend"') :]
    assert all(word in legend for word in ("kept head", "salience", "cluster"))
    assert legend.count('class="cahp-swatch"') == 3 and 'id="cahp-info"' in legend
    assert html.count('"shape": "star"') == 2 and f'"size": {LABEL_FONT}' in html
    assert 'network.on("click"' in html
    only_0 = head_graph_html(_graph(), labels, keep, salience, layers=[0])
    only_0_legend = only_0[only_0.index('class="cahp-legend"') :]
    assert only_0_legend.count('class="cahp-swatch"') == 2  # clusters drawn: 0 and 1
    empty = head_graph_html(_graph(), labels, keep, salience, layers=[])
    assert EMPTY_MESSAGE in empty and "vis.Network" not in empty and "cahp-empty" in empty


def test_graph_counts_follow_the_filters():
    from cahp_studio.dashboard.graph_view import graph_counts

    labels = np.array([0, 1, 1, 2, 0, 2])
    keep = np.array([[True, False, False], [False, False, True]])
    every = graph_counts(_graph(), labels, keep)
    assert (every.heads, every.kept, every.edges, every.clusters) == (6, 2, 2, 3)
    layer_0 = graph_counts(_graph(), labels, keep, layers=[0])
    assert (layer_0.heads, layer_0.kept, layer_0.edges, layer_0.clusters) == (3, 1, 1, 2)
    assert layer_0.caption().startswith("Showing 3 of 6 heads (1 of 2 kept), 1 of 2 edges")
    cluster_2 = graph_counts(_graph(), labels, keep, clusters=[2])
    assert (cluster_2.heads, cluster_2.kept, cluster_2.edges) == (2, 1, 0)
    nothing = graph_counts(_graph(), labels, keep, layers=[])
    assert (nothing.heads, nothing.edges, nothing.clusters) == (0, 0, 0)


# ---------------------------------------------------------------- head details, pure


RESCUE_LABELS = np.array([0, 1, 0, 1])  # L0H0, L0H1, L1H0, L1H1
RESCUE_SALIENCE = np.array([[0.9, 0.8], [0.1, 0.2]])  # layer 0 wins both clusters


def test_verdict_of_the_complementary_rule():
    from cahp_studio.dashboard.head_details import verdict

    keep = complementary_selection(RESCUE_LABELS, RESCUE_SALIENCE, 2, 2)
    assert keep.tolist() == [[True, True], [False, True]]
    best = verdict(RESCUE_LABELS, RESCUE_SALIENCE, keep, 0, 0)
    assert (best.kept, best.reason) == (True, "cluster-best")
    assert "most salient head of cluster 0" in best.why and "L1H0" in best.why
    rescued = verdict(RESCUE_LABELS, RESCUE_SALIENCE, keep, 1, 1)
    assert (rescued.kept, rescued.reason) == (True, "layer-rescue")
    assert rescued.headline == "Kept to rescue layer 1" and "L0H1" in rescued.why
    beaten = verdict(RESCUE_LABELS, RESCUE_SALIENCE, keep, 1, 0)
    assert (beaten.kept, beaten.reason) == (False, "cluster-beaten")
    assert beaten.text.startswith("Dropped: another head of cluster 0, L0H0, is more salient")
    tied = np.array([[0.5, 0.9], [0.5, 0.6]])  # L0H0 and L1H0 tie: the lower index wins
    keep_tied = complementary_selection(RESCUE_LABELS, tied, 2, 2)
    assert "as salient and comes first" in verdict(RESCUE_LABELS, tied, keep_tied, 1, 0).why


def test_verdict_of_another_rule_names_it_and_the_paper_rule():
    from cahp_studio.dashboard.head_details import verdict

    keep = np.array([[True, False], [True, False]])
    said = verdict(RESCUE_LABELS, RESCUE_SALIENCE, keep, 0, 1, {"rule": "mmr", "mmr_lambda": 0.3})
    assert (said.kept, said.reason) == (False, "rule")
    assert said.headline == "Dropped by the mmr rule" and "mmr lambda 0.3" in said.why
    assert "complementary rule would have kept it: the most salient head of cluster 1" in said.why


def test_rank_mates_and_details_of_the_example():
    from cahp_core.runs.results import RunView
    from cahp_studio.dashboard.head_details import cluster_mates, gradient_rank, head_details

    assert cluster_mates(RESCUE_LABELS, 2, 0, 0) == [(1, 0)]
    view = RunView(EXAMPLE)
    selection = json.loads((EXAMPLE / "selection.json").read_text())
    labels = np.asarray(selection["labels"])
    keep = np.asarray(selection["kept"], dtype=bool)
    raw = view.salience.raw
    ranks = [gradient_rank(raw, layer, head) for layer, head in np.ndindex(raw.shape)]
    assert sorted(ranks) == list(range(1, raw.size + 1))
    top = np.unravel_index(np.argmax(layer_normalised(raw)), raw.shape)
    assert gradient_rank(raw, *top) == 1
    reasons = set()
    for layer, head in np.ndindex(keep.shape):
        details = head_details(labels, keep, raw, view.salience.normalised, layer, head)
        assert details.verdict.kept == keep[layer, head]
        assert len(details.mates) == int((labels == details.cluster).sum()) - 1
        reasons.add(details.verdict.reason)
    assert "unexplained" not in reasons and {"cluster-best", "cluster-beaten"} <= reasons


def test_a_click_on_the_layer_map_picks_its_head():
    from cahp_studio.dashboard.head_details import clicked_head

    event = {"selection": {"points": [{"x": 3, "y": 2, "curve_number": 0}]}}
    assert clicked_head(event, 12) == 27 and clicked_head(None, 12) is None
    assert clicked_head({"selection": {"points": []}}, 12) is None


def test_class_maps_come_from_the_signatures():
    from cahp_studio.dashboard.head_details import class_maps, class_maps_figure, class_names

    mean = np.random.default_rng(0).random((2, 3, 5, 16))  # [L, H, C, S*S]
    maps = class_maps({"mean": mean}, 1, 2)
    assert maps.shape == (5, 4, 4) and np.allclose(maps[3].ravel(), mean[1, 2, 3])
    names = class_names("sst5", 5)
    assert names[0] == "0: very negative" and class_names("custom", 2) == ["class 0", "class 1"]
    fig = class_maps_figure(maps, names, 1, 2)
    assert len(fig.data) == 5 and [d.showscale for d in fig.data].count(True) == 1
    assert len({(d.zmin, d.zmax) for d in fig.data}) == 1  # one shared colour scale


# ---------------------------------------------------------------- the pages


def test_head_graph_page_legend_counts_and_empty_state(env, tiny_view):
    from cahp_studio.dashboard.graph_view import EMPTY_MESSAGE

    at = page("head_graph.py")
    assert not at.exception and not at.error
    html = _frames(at)[0].proto.srcdoc
    assert 'class="cahp-legend"' in html
    n_layers, n_heads = tiny_view.shape
    total = n_layers * n_heads
    assert any(c.value.startswith(f"Showing {total} of {total} heads") for c in at.caption)
    at.multiselect[0].set_value([0]).run()
    assert any(c.value.startswith(f"Showing {n_heads} of {total} heads") for c in at.caption)
    at.multiselect[0].set_value([]).run()
    assert not at.exception and not _frames(at)
    assert [i.value for i in at.info] == [EMPTY_MESSAGE]
    assert any(c.value.startswith(f"Showing 0 of {total} heads") for c in at.caption)
    at.radio[0].set_value("Plotly").run()  # the plotly view has the same empty state
    assert not at.get("plotly_chart") and [i.value for i in at.info] == [EMPTY_MESSAGE]


@pytest.mark.parametrize("name", ["head_graph.py", "clusters.py"])
def test_head_details_panel_for_a_kept_and_a_dropped_head(env, name):
    at = page(name)
    assert not at.exception and _picker(at).value is None
    at, head = _pick(at, "kept")
    assert not at.exception
    assert any(s.value.startswith(f"Head {head}: layer") for s in at.subheader)
    assert _metric(at, "Status") == "kept" and re.fullmatch(
        r"\d+ of \d+", _metric(at, "Gradient rank")
    )
    assert any(s.value.startswith("**Kept") for s in at.success)
    assert any("cluster-mates" in m.value for m in at.markdown)
    assert any("Gradient rank" in m.value for m in at.markdown)
    at, head = _pick(at, "dropped")
    assert not at.exception and _metric(at, "Status") == "dropped"
    assert any(w.value.startswith("**Dropped") for w in at.warning)
    figures = [pio.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    maps = next(f for f in figures if f"attention map of {head}" in str(f.layout.title.text))
    assert maps.data[0].type == "heatmap" and maps.data[0].showscale  # with its colour scale
