import json

import networkx as nx
import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.graph import (
    build_head_graph,
    canonical_labels,
    graph_to_json,
    head_node_id,
    knn_edges,
)


def _distance(seed=0, n=12):
    points = np.random.default_rng(seed).random((n, 3))
    return np.linalg.norm(points[:, None] - points[None], axis=-1)  # [n, n]


def test_head_node_id():
    assert head_node_id(3, 7) == "L3H7"


def test_nodes_and_attributes():
    distance = _distance()
    salience = np.random.default_rng(1).random((3, 4))
    keep = np.zeros((3, 4), dtype=bool)
    keep[:, 0] = True
    labels = np.arange(12) % 5
    graph = build_head_graph(distance, 3, 4, 3, salience=salience, labels=labels, keep=keep)
    assert graph.number_of_nodes() == 12
    assert sorted(graph.nodes) == sorted(f"L{la}H{h}" for la in range(3) for h in range(4))
    node = graph.nodes["L2H1"]
    assert (node["layer"], node["head"], node["index"], node["cluster"]) == (2, 1, 9, 9 % 5)
    assert node["salience"] == pytest.approx(salience[2, 1]) and node["kept"] is False
    assert graph.nodes["L1H0"]["kept"] is True
    bare = build_head_graph(distance, 3, 4).nodes["L0H0"]
    assert (bare["salience"], bare["cluster"], bare["kept"]) == (0.0, -1, False)


def test_edges_are_symmetrised_knn_with_positive_similarity_weights():
    distance = _distance()
    graph = build_head_graph(distance, 3, 4, n_neighbors=2)
    assert all(graph.degree(n) >= 2 for n in graph.nodes)
    median = np.median(distance[distance > 0])
    for u, v, data in graph.edges(data=True):
        i, j = graph.nodes[u]["index"], graph.nodes[v]["index"]
        assert data["distance"] == pytest.approx(distance[i, j])
        assert data["weight"] == pytest.approx(np.exp(-distance[i, j] / median))
        assert 0 < data["weight"] <= 1
    for i in range(12):  # each head's 2 nearest neighbours are joined to it
        nearest = [j for j in np.argsort(distance[i]) if j != i][:2]
        for j in nearest:
            assert graph.has_edge(head_node_id(*divmod(i, 4)), head_node_id(*divmod(int(j), 4)))


def test_far_edges_keep_a_positive_weight():
    distance = np.array([[0.0, 1.0, 1e6], [1.0, 0.0, 1e6], [1e6, 1e6, 0.0]])
    graph = build_head_graph(distance, 1, 3, n_neighbors=1)
    assert all(d["weight"] > 0 for *_, d in graph.edges(data=True))
    assert graph.degree("L0H2") >= 1


def test_knn_edges_known_answer_and_ties():
    distance = np.array([[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]], dtype=float)
    assert knn_edges(distance, 1) == {(0, 1), (1, 2), (2, 3)}  # head 1: tie 0/2 -> 0
    assert knn_edges(distance, 10) == {(i, j) for i in range(4) for j in range(i + 1, 4)}


def test_deterministic_and_json_round_trip():
    distance = _distance(seed=4)
    a = build_head_graph(distance, 3, 4, n_neighbors=3, labels=np.zeros(12, dtype=int))
    b = build_head_graph(distance, 3, 4, n_neighbors=3, labels=np.zeros(12, dtype=int))
    assert list(a.edges(data=True)) == list(b.edges(data=True))
    text = json.dumps(graph_to_json(a))  # only JSON types
    again = nx.node_link_graph(json.loads(text), edges="edges")
    assert isinstance(again, nx.Graph) and not again.is_directed()
    assert dict(again.nodes(data=True)) == dict(a.nodes(data=True))
    assert sorted(again.edges(data=True)) == sorted(a.edges(data=True))


def test_canonical_labels():
    assert canonical_labels(np.array([7, 7, 3, 9, 3])).tolist() == [0, 0, 1, 2, 1]


def test_bad_inputs():
    with pytest.raises(CAHPError, match=r"expected \(12, 12\)"):
        build_head_graph(_distance(n=10), 3, 4)
    with pytest.raises(CAHPError, match="neighbours"):
        build_head_graph(_distance(), 3, 4, n_neighbors=0)
    with pytest.raises(CAHPError, match="salience"):
        build_head_graph(_distance(), 3, 4, salience=np.ones((4, 3)))
