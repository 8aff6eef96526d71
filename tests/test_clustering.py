import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cahp_core.clustering import (
    ClusteringResult,
    cluster_heads,
    kmedoids_sweep,
    simplified_silhouette,
)
from cahp_core.errors import CAHPError


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [20, 0], [0, 20]], dtype=float)
    points = np.concatenate([c + rng.normal(0, 0.5, (8, 2)) for c in centres])
    return points, np.repeat([0, 1, 2], 8)


def test_simplified_silhouette_hand_example():
    d = np.array([[0, 1, 4, 5], [1, 0, 3, 4], [4, 3, 0, 1], [5, 4, 1, 0]], dtype=float)
    labels, medoids = np.array([0, 0, 1, 1]), np.array([0, 2])
    # point 1: a=1, b=3 -> 2/3; point 3: a=1, b=5 -> 4/5; medoids score 1
    assert simplified_silhouette(d, labels, medoids) == pytest.approx((1 + 2 / 3 + 1 + 4 / 5) / 4)


def test_kmedoids_recovers_blobs_at_true_k():
    points, truth = _blobs()
    result = kmedoids_sweep(points, [2, 3, 4, 5])
    labels = result.labels_for(3)
    for cluster in range(3):
        assert len(set(labels[truth == cluster])) == 1
    assert result.ks[np.argmax(result.quality)] == 3


def test_identical_heads_share_a_cluster_and_determinism():
    points, _ = _blobs()
    points[5] = points[17]  # head 5 identical to head 17 (another blob)
    d = cdist(points, points)
    a = cluster_heads(d, perplexity=5, seed=1)
    b = cluster_heads(d, perplexity=5, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    for row in a.labels[a.ks < 20]:
        assert row[5] == row[17]
    assert list(a.ks) == list(range(2, 24))
    assert a.embedding.shape == (24, 2)


def test_graph_clustering_finds_blobs():
    points, truth = _blobs()
    result = cluster_heads(cdist(points, points), method="graph", perplexity=5)
    assert 3 in result.ks
    labels = result.labels_for(3)
    for cluster in range(3):
        assert len(set(labels[truth == cluster])) == 1


def test_round_trip_arrays():
    points, _ = _blobs()
    result = cluster_heads(cdist(points, points), perplexity=5)
    again = ClusteringResult.from_arrays(result.to_arrays())
    np.testing.assert_array_equal(again.labels, result.labels)
    assert [list(m) for m in again.medoids] == [list(m) for m in result.medoids]
    assert again.method == "tsne-kmedoids"


def test_bad_arguments():
    points, _ = _blobs()
    d = cdist(points, points)
    with pytest.raises(CAHPError, match="tsne-kmedoids, graph"):
        cluster_heads(d, method="spectral")
    with pytest.raises(CAHPError, match="k_min"):
        cluster_heads(d, k_min=1)
    with pytest.raises(CAHPError, match="not clustered"):
        kmedoids_sweep(points, [2, 3]).labels_for(7)
