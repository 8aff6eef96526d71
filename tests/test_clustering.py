import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cahp_core.clustering import (
    ClusteringResult,
    cluster_heads,
    kmedoids_sweep,
    louvain_sweep,
    simplified_silhouette,
    tsne_embedding,
)
from cahp_core.errors import CAHPError


def _blobs(seed=0, per_blob=8):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [20, 0], [0, 20]], dtype=float)
    points = np.concatenate([c + rng.normal(0, 0.5, (per_blob, 2)) for c in centres])
    return points, np.repeat([0, 1, 2], per_blob)


def _same_partition(labels, truth):
    """Each true group is one cluster and different groups are different clusters."""
    groups = [set(labels[truth == t]) for t in np.unique(truth)]
    return all(len(g) == 1 for g in groups) and len(set.union(*groups)) == len(groups)


def _check_medoids_match_labels(result):
    for row, medoids in zip(result.labels, result.medoids, strict=True):
        assert len(medoids) == row.max() + 1
        assert [row[m] for m in medoids] == list(range(len(medoids)))


def test_simplified_silhouette_hand_example():
    d = np.array([[0, 1, 4, 5], [1, 0, 3, 4], [4, 3, 0, 1], [5, 4, 1, 0]], dtype=float)
    labels, medoids = np.array([0, 0, 1, 1]), np.array([0, 2])
    # medoids: a=0 -> 1; point 1: a=1, b=3 -> 2/3; point 3: a=1, b=5 -> 4/5
    assert simplified_silhouette(d, labels, medoids) == pytest.approx((1 + 2 / 3 + 1 + 4 / 5) / 4)
    # a wrong assignment is negative: point 1 in cluster 1 -> a=3, b=1 -> -2/3
    bad = simplified_silhouette(d, np.array([0, 1, 1, 1]), medoids)
    assert bad == pytest.approx((1 - 2 / 3 + 1 + 4 / 5) / 4)
    # a == b == 0 scores 0: two identical points, each its own medoid
    assert simplified_silhouette(np.zeros((2, 2)), np.array([0, 1]), np.array([0, 1])) == 0


def test_kmedoids_recovers_blobs_at_true_k():
    points, truth = _blobs()
    result = kmedoids_sweep(points, [2, 3, 4, 5])
    assert _same_partition(result.labels_for(3), truth)
    assert result.ks[np.argmax(result.quality)] == 3
    _check_medoids_match_labels(result)
    assert result.labels[0][0] == 0  # canonical: the cluster of head 0 is 0


def test_kmedoids_on_a_precomputed_matrix_matches_points():
    points, _ = _blobs()
    a = kmedoids_sweep(points, [3, 4], seed=3)
    b = kmedoids_sweep(cdist(points, points), [3, 4], seed=3, precomputed=True)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.quality, b.quality)


def test_identical_heads_share_a_cluster_and_determinism():
    points, _ = _blobs()
    points[5] = points[17]  # head 5 identical to head 17 (another blob)
    d = cdist(points, points)
    before = d.copy()
    a = cluster_heads(d, perplexity=5, seed=1)
    b = cluster_heads(d, perplexity=5, seed=1)
    np.testing.assert_array_equal(d, before)  # the input is not modified
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    for row in a.labels[a.ks < 20]:
        assert row[5] == row[17]
    assert list(a.ks) == list(range(2, 24))
    assert a.embedding.shape == (24, 2)
    _check_medoids_match_labels(a)


def test_tsne_embedding_separates_blobs_and_clamps_perplexity():
    points, truth = _blobs()
    embedding = tsne_embedding(cdist(points, points), perplexity=5, seed=0)
    centres = np.array([embedding[truth == t].mean(0) for t in range(3)])
    spread = max(np.linalg.norm(embedding[truth == t] - centres[t], axis=1).max() for t in range(3))
    assert cdist(centres, centres)[np.triu_indices(3, 1)].min() > 2 * spread
    tiny = tsne_embedding(cdist(points[:5], points[:5]), perplexity=30.0)  # clamped to 1
    assert tiny.shape == (5, 2) and np.isfinite(tiny).all()


def test_graph_clustering_finds_blobs_deterministically():
    points, truth = _blobs()
    d = cdist(points, points)
    result = cluster_heads(d, method="graph", perplexity=5)
    again = louvain_sweep(d)
    assert result.method == "graph" and 3 in result.ks
    assert _same_partition(result.labels_for(3), truth)
    np.testing.assert_array_equal(result.labels, again.labels)
    assert result.ks.min() >= 2 and result.ks.max() <= 23 and len(result.ks) >= 3
    _check_medoids_match_labels(result)
    for row in result.labels:  # canonical: cluster ids appear in order of first member
        _, first = np.unique(row, return_index=True)
        assert (np.diff(first) > 0).all()


def test_round_trip_through_an_npz_file(tmp_path):
    points, _ = _blobs()
    result = cluster_heads(cdist(points, points), perplexity=5)
    np.savez(tmp_path / "c.npz", **result.to_arrays())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as arrays:
        again = ClusteringResult.from_arrays(arrays)
    np.testing.assert_array_equal(again.labels, result.labels)
    np.testing.assert_array_equal(again.ks, result.ks)
    np.testing.assert_array_equal(again.quality, result.quality)
    np.testing.assert_array_equal(again.embedding, result.embedding)
    assert [list(m) for m in again.medoids] == [list(m) for m in result.medoids]
    assert again.method == "tsne-kmedoids"


def test_bad_arguments():
    points, _ = _blobs()
    d = cdist(points, points)
    with pytest.raises(CAHPError, match="tsne-kmedoids, graph"):
        cluster_heads(d, method="spectral")
    with pytest.raises(CAHPError, match="k_min"):
        cluster_heads(d, k_min=1)
    with pytest.raises(CAHPError, match="k_max"):
        cluster_heads(d, k_max=24)
    with pytest.raises(CAHPError, match="square"):
        cluster_heads(d[:, :5])
    broken = d.copy()
    broken[0, 1] = np.nan
    with pytest.raises(CAHPError, match="NaN"):
        cluster_heads(broken)
    with pytest.raises(CAHPError, match="perplexity"):
        cluster_heads(d, perplexity=0)
    with pytest.raises(CAHPError, match=r"not clustered; choose k in 2\.\.3"):
        kmedoids_sweep(points, [2, 3]).labels_for(7)
    with pytest.raises(CAHPError, match="between 2 and 23"):
        kmedoids_sweep(points, [1, 2])
