import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cahp_core.atomic import load_npz, write_npz_atomic
from cahp_core.errors import CAHPError
from cahp_core.method.clustering import (
    ClusteringResult,
    classical_mds,
    cluster_heads,
    cluster_heads_seeds,
    cluster_quality,
    clusterings_from_arrays,
    clusterings_to_arrays,
    kmedoids_sweep,
    louvain_sweep,
    mean_simplified_silhouette,
    pad_after_perfect,
    simplified_silhouette,
    tsne_embedding,
    umap_embedding,
)


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


# Six points on a line: clusters {0, 1, 2} (medoid 1), {3, 4} (medoid 3), {5} (medoid 5,
# a medoid-only cluster).
LINE = np.array([0.0, 1.0, 4.0, 10.0, 11.0, 20.0])
LINE_D = np.abs(LINE[:, None] - LINE[None, :])
LINE_LABELS, LINE_MEDOIDS = np.array([0, 0, 0, 1, 1, 2]), np.array([1, 3, 5])


def test_mss_by_hand_mean_over_other_medoids_without_the_medoids():
    # medoids (a = 0) are left out; b = mean distance to the two other medoids
    # point 0: a = 1, b = (10 + 20) / 2 = 15 -> 14/15
    # point 2: a = 3, b = (6 + 16) / 2 = 11 -> 8/11
    # point 4: a = 1, b = (10 + 9) / 2 = 9.5 -> 8.5/9.5
    expected = (14 / 15 + 8 / 11 + 8.5 / 9.5) / 3
    assert mean_simplified_silhouette(LINE_D, LINE_LABELS, LINE_MEDOIDS) == pytest.approx(expected)
    assert cluster_quality("mss", LINE_D, LINE_LABELS, LINE_MEDOIDS) == pytest.approx(expected)


def test_simplified_silhouette_variant_by_hand_nearest_medoid_and_medoids_score_one():
    # every medoid scores 1; point 0: a = 1, b = 10 -> 9/10; point 2: a = 3, b = 6 -> 1/2;
    # point 4: a = 1, b = min(10, 9) = 9 -> 8/9
    expected = (1 + 1 + 1 + 9 / 10 + 1 / 2 + 8 / 9) / 6
    got = cluster_quality("simplified-silhouette", LINE_D, LINE_LABELS, LINE_MEDOIDS)
    assert got == pytest.approx(expected)


def test_mss_is_one_when_every_point_sits_on_its_medoid():
    pairs = np.repeat([0.0, 5.0, 9.0], 2)  # three locations, two points each
    d = np.abs(pairs[:, None] - pairs[None, :])
    assert mean_simplified_silhouette(d, np.array([0, 0, 1, 1, 2, 2]), np.array([0, 2, 4])) == 1


def test_pad_with_one_after_the_curve_reaches_one():
    np.testing.assert_array_equal(
        pad_after_perfect([0.5, 0.7, 1.0, 0.9, 0.95]), [0.5, 0.7, 1.0, 1.0, 1.0]
    )
    np.testing.assert_array_equal(pad_after_perfect([0.5, 0.7]), [0.5, 0.7])
    # in a sweep: four locations, two heads each -> MSS is 1 from k = 4 on, padded
    points = np.repeat([[0.0, 0.0], [9.0, 0.0], [0.0, 7.0], [5.0, 5.0]], 2, axis=0)
    mss = kmedoids_sweep(points, range(2, 8), seed=0)
    assert list(mss.quality[2:]) == [1.0, 1.0, 1.0, 1.0] and mss.quality[0] < 1
    variant = kmedoids_sweep(points, range(2, 8), seed=0, quality="simplified-silhouette")
    assert variant.quality[-1] < 1  # the variant is not padded (and scores a == b == 0 as 0)


def test_unknown_quality_is_a_clear_error():
    with pytest.raises(CAHPError, match="unknown cluster quality 'silhouette'; choose one of mss"):
        cluster_quality("silhouette", LINE_D, LINE_LABELS, LINE_MEDOIDS)
    with pytest.raises(CAHPError, match="unknown cluster quality"):
        cluster_heads(LINE_D, perplexity=1, quality="nope")


def test_mss_curve_rises_with_k_on_blobs_and_peaks_the_variant_at_true_k():
    points, _ = _blobs()
    mss = kmedoids_sweep(points, range(2, 12))
    assert mss.quality_name == "mss" and mss.quality[-1] > mss.quality[0]
    variant = kmedoids_sweep(points, range(2, 12), quality="simplified-silhouette")
    assert variant.ks[np.argmax(variant.quality)] == 3


def test_tsne_on_features_is_the_authors_and_barely_depends_on_the_seed():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(c, 0.3, (10, 6)) for c in (0.0, 3.0, 6.0)])  # [30, 6]
    d = cdist(features, features)
    from sklearn.manifold import TSNE

    authors = TSNE(n_components=2, perplexity=9, max_iter=1000, random_state=4)
    np.testing.assert_allclose(
        tsne_embedding(d, 9, seed=4, features=features), authors.fit_transform(features)
    )
    a, b = (cluster_heads(d, perplexity=9, seed=s, features=features) for s in (0, 1))
    np.testing.assert_array_equal(a.labels_for(3), b.labels_for(3))
    assert a.seed == 0 and b.seed == 1


def test_classical_mds_recovers_pca_geometry():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(12, 5)) * [5, 2, 0.1, 0.1, 0.1]
    coords = classical_mds(cdist(features, features))
    centred = features - features.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    pca = centred @ vt[:2].T
    for axis in range(2):  # equal up to the sign of each axis
        assert np.allclose(coords[:, axis], pca[:, axis]) or np.allclose(
            coords[:, axis], -pca[:, axis]
        )


def test_seed_sweep_round_trip_and_old_files_say_how_to_recluster(tmp_path):
    points, _ = _blobs()
    d = cdist(points, points)
    results = cluster_heads_seeds(d, [3, 4], perplexity=5)
    write_npz_atomic(tmp_path / "c.npz", **clusterings_to_arrays(results))
    again = clusterings_from_arrays(load_npz(tmp_path / "c.npz"))
    assert [r.seed for r in again] == [3, 4] and again[0].method == "tsne-kmedoids"
    assert again[1].quality_name == "mss"
    for new, old in zip(again, results, strict=True):
        np.testing.assert_array_equal(new.labels, old.labels)
        np.testing.assert_array_equal(new.quality, old.quality)
    write_npz_atomic(tmp_path / "old.npz", **results[0].to_arrays())
    with pytest.raises(CAHPError, match="re-cluster it with `cahp recluster runs/x`"):
        clusterings_from_arrays(load_npz(tmp_path / "old.npz"), where="runs/x")


def test_kmedoids_recovers_blobs_at_true_k():
    points, truth = _blobs()
    result = kmedoids_sweep(points, [2, 3, 4, 5], quality="simplified-silhouette")
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


def test_umap_embedding_is_two_d_seeded_and_refuses_a_non_square_matrix():
    points, _ = _blobs()
    d = cdist(points, points)  # [24, 24]
    embedding = umap_embedding(d, seed=3)
    assert embedding.shape == (24, 2) and np.isfinite(embedding).all()
    np.testing.assert_array_equal(embedding, umap_embedding(d, seed=3))  # same seed, same map
    with pytest.raises(CAHPError, match="square"):
        umap_embedding(d[:, :5])


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


def test_tsne_runs_on_one_openmp_thread_whatever_the_machine(monkeypatch):
    """The embedding must not depend on the core count: t-SNE's OpenMP loops get one thread."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_info

    seen: list[int] = []
    fit = TSNE.fit_transform

    def recording(self, X, *args, **kwargs):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")
        return fit(self, X, *args, **kwargs)

    monkeypatch.setattr(TSNE, "fit_transform", recording)
    points, _ = _blobs()
    tsne_embedding(cdist(points, points), perplexity=5, seed=0)
    tsne_embedding(cdist(points, points), perplexity=5, seed=0, features=points)
    assert seen and set(seen) == {1}
