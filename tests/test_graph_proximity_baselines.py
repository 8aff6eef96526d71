import json

import numpy as np
import pytest

from cahp_core.baselines import gradient_selection, random_selection
from cahp_core.errors import CAHPError
from cahp_core.graph import build_head_graph, graph_from_json, graph_to_json
from cahp_core.proximity import compare_depths, depth_stats


def test_head_graph_nodes_edges_and_json_round_trip():
    rng = np.random.default_rng(0)
    points = rng.random((12, 3))
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    salience = rng.random((3, 4))
    keep = np.zeros((3, 4), dtype=bool)
    keep[:, 0] = True
    graph = build_head_graph(
        distance, 3, 4, n_neighbors=3, salience=salience, labels=np.arange(12) % 5, keep=keep
    )
    assert graph.number_of_nodes() == 12
    assert all(graph.degree(n) >= 1 for n in graph.nodes)
    assert all(d["weight"] > 0 for *_, d in graph.edges(data=True))
    node = graph.nodes["L2H1"]
    assert node["layer"] == 2 and node["head"] == 1 and node["cluster"] == 9 % 5
    assert node["salience"] == pytest.approx(salience[2, 1]) and not node["kept"]
    again = graph_from_json(json.loads(json.dumps(graph_to_json(graph))))
    assert sorted(again.edges) == sorted(graph.edges)


def test_depth_stats_extremes():
    last = np.zeros((6, 12), dtype=bool)
    last[5, :4] = True
    stats = depth_stats(last)
    assert stats["mean_depth"] == 1 and stats["last_third_share"] == 1
    first = np.zeros((6, 12), dtype=bool)
    first[0, :3] = True
    assert depth_stats(first)["mean_depth"] == 0 and depth_stats(first)["last_third_share"] == 0
    uniform = np.zeros((6, 12), dtype=bool)
    uniform[:, :2] = True
    stats = depth_stats(uniform)
    assert stats["uniform_distance"] == pytest.approx(0) and stats["mean_depth"] == pytest.approx(
        0.5
    )
    assert stats["last_third_share"] == pytest.approx(1 / 3)
    assert stats["kept_per_layer"] == [2] * 6
    with pytest.raises(CAHPError):
        depth_stats(np.zeros((6, 12), dtype=bool))
    table = compare_depths({"a": last, "b": uniform})
    assert list(table["method"]) == ["a", "b"]


def test_gradient_selection_picks_top_heads():
    importance = np.array([[1.0, 5.0, 2.0], [0.1, 0.2, 9.0]])
    keep = gradient_selection(importance, 2, normalise_per_layer=False)
    assert keep.tolist() == [[False, True, False], [False, False, True]]
    # per-layer normalisation: layer 0 scores 5/sqrt(30)=0.91, layer 1 9/9.003=0.9997
    keep = gradient_selection(importance, 1)
    assert keep[1, 2] and keep.sum() == 1
    with pytest.raises(CAHPError, match="between 1 and 6"):
        gradient_selection(importance, 0)


def test_random_selection():
    a, b, c = (random_selection(6, 12, 20, s) for s in (0, 0, 1))
    assert a.sum() == 20 and a.shape == (6, 12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(CAHPError):
        random_selection(6, 12, 73, 0)
