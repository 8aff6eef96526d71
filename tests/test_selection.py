import numpy as np
import pytest

import cahp_core.method.selection as selection_module
from cahp_core.errors import CAHPError
from cahp_core.method.clustering import ClusteringResult
from cahp_core.method.selection import CAHPSelector, complementary_selection
from cahp_core.method.signatures import HeadSignatures


def _signatures(seed=0, layers=3, heads=4, classes=3, dims=16):
    rng = np.random.default_rng(seed)
    mean = rng.random((layers, heads, classes, dims))
    var = rng.random((layers, heads, classes, dims)) * 0.1 + 0.01
    return HeadSignatures(mean, var, np.full(classes, 10.0))


def _hand_clustering():
    """2 layers x 3 heads; with ``HAND_SALIENCE`` k keeps 3, 3, 4, 5 heads for k = 2..5."""
    labels = np.array(
        [[0, 1, 1, 1, 1, 1], [0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 3, 3], [0, 1, 2, 3, 4, 4]]
    )
    medoids = [np.arange(k) for k in (2, 3, 4, 5)]
    quality = np.array([0.2, 0.5, 0.6, 0.62])
    return ClusteringResult("tsne-kmedoids", np.arange(2, 6), labels, medoids, quality)


HAND_SALIENCE = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4]])


def test_most_salient_head_per_cluster_and_one_per_layer():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2])  # 3 layers x 4 heads
    salience = np.array([[0.1, 0.9, 0.2, 0.3], [0.5, 0.4, 0.8, 0.1], [0.0, 0.2, 0.7, 0.2]])
    keep = complementary_selection(labels, salience, 3, 4)
    expected = np.zeros((3, 4), dtype=bool)
    expected[0, 1] = expected[1, 2] = expected[2, 2] = True
    np.testing.assert_array_equal(keep, expected)


def test_ties_go_to_the_lowest_index():
    labels = np.array([0, 1, 1, 0, 1, 1])  # 2 layers x 3 heads
    salience = np.array([[0.5, 0.7, 0.7], [0.5, 0.7, 0.1]])
    keep = complementary_selection(labels, salience, 2, 3)
    # cluster 0 {0, 3}: tie 0.5 -> head 0; cluster 1 {1, 2, 4, 5}: tie 0.7 -> head 1;
    # layer 1 empty -> its most salient head, head 1 (0.7)
    assert keep.tolist() == [[True, True, False], [False, True, False]]


def test_empty_layer_gets_its_most_salient_head_back():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # 2 layers x 4 heads, both winners in layer 0
    salience = np.array([[0.9, 0.1, 0.8, 0.1], [0.2, 0.6, 0.3, 0.6]])
    keep = complementary_selection(labels, salience, 2, 4)
    assert keep[0].tolist() == [True, False, True, False]
    assert keep[1].tolist() == [False, True, False, False]  # tie 0.6: lowest head index


def test_complementary_selection_checks_shapes():
    with pytest.raises(CAHPError, match="salience has shape"):
        complementary_selection(np.zeros(6, dtype=int), np.ones((3, 2)), 2, 3)
    with pytest.raises(CAHPError, match="labels has shape"):
        complementary_selection(np.zeros(5, dtype=int), np.ones((2, 3)), 2, 3)


def test_selector_fit_attributes_and_one_head_per_layer():
    sig = _signatures()
    salience = np.random.default_rng(1).random((3, 4))
    selector = CAHPSelector(degree=3, perplexity=3).fit(sig, salience)
    assert selector.support_.shape == (3, 4) and selector.support_.dtype == bool
    assert selector.get_support() is selector.support_
    assert (selector.kept_per_layer_ >= 1).all()
    assert selector.kept_per_layer_.tolist() == selector.support_.sum(axis=1).tolist()
    assert selector.n_heads_kept_ == int(selector.support_.sum()) < 12
    assert selector.curve_.shape == (10, 2)
    np.testing.assert_array_equal(selector.curve_[:, 0], np.arange(2, 12))
    assert selector.labels_.shape == (12,)
    assert (
        selector.knee_ == selector.knee_result_.knee and selector.knee_ in selector.clustering_.ks
    )
    np.testing.assert_array_equal(selector.labels_, selector.clustering_.labels_for(selector.knee_))
    assert selector.distances_.distance.shape == (12, 12)
    np.testing.assert_array_equal(selector.salience_, salience)
    for k in selector.clustering_.ks:
        keep = selector.select(int(k))
        assert keep.any(axis=1).all()
        assert min(k, 12) <= keep.sum() <= k + 3


def test_identical_heads_share_a_cluster_and_only_one_is_kept():
    sig = _signatures()
    mean, var = sig.mean.copy(), sig.var.copy()
    mean[2, 3], var[2, 3] = mean[1, 0], var[1, 0]  # head 11 is a copy of head 4
    salience = np.random.default_rng(0).random((3, 4)) * 0.5
    salience[2, 3], salience[1, 0], salience[1, 1] = (
        2.0,
        1.5,
        1.8,
    )  # 4: 2nd overall, not 1st in layer
    selector = CAHPSelector(degree=2, perplexity=3).fit(
        HeadSignatures(mean, var, sig.count), salience
    )
    assert selector.distances_.distance[4, 11] == pytest.approx(0.0, abs=1e-9)
    for k in selector.clustering_.ks:
        labels = selector.clustering_.labels_for(int(k))
        assert labels[4] == labels[11]
        keep = selector.select(int(k))
        assert keep[2, 3] and not keep[1, 0]


def test_deterministic():
    sig, salience = _signatures(), np.random.default_rng(3).random((3, 4))
    a = CAHPSelector(perplexity=3, degree=4, n_seeds=2).fit(sig, salience)
    b = CAHPSelector(perplexity=3, degree=4, n_seeds=2).fit(sig, salience)
    np.testing.assert_array_equal(a.clustering_.labels, b.clustering_.labels)
    np.testing.assert_array_equal(a.support_, b.support_)
    assert a.knee_ == b.knee_


def test_changing_degree_reuses_distances_and_clustering(monkeypatch):
    calls = {"cluster": 0, "distances": 0}
    cluster_heads = selection_module.cluster_heads_seeds
    head_distances = selection_module.head_distances

    def counting_cluster(*args, **kwargs):
        calls["cluster"] += 1
        return cluster_heads(*args, **kwargs)

    def counting_distances(*args, **kwargs):
        calls["distances"] += 1
        return head_distances(*args, **kwargs)

    monkeypatch.setattr(selection_module, "cluster_heads_seeds", counting_cluster)
    monkeypatch.setattr(selection_module, "head_distances", counting_distances)
    sig, salience = _signatures(), np.random.default_rng(3).random((3, 4))
    selector = CAHPSelector(perplexity=3, degree=2, n_seeds=2).fit(sig, salience)
    clusterings = selector.clusterings_
    for degree in (3, 4, 5):
        assert selector.set_params(degree=degree) is selector
        selector.fit(sig, salience)
        assert selector.knee_result_.degree == degree
        assert selector.clustering_ in clusterings and selector.distances_ is not None
    assert calls == {"cluster": 1, "distances": 1}
    selector.set_params(seed=7).fit(sig, salience)  # an upstream parameter: recompute
    assert calls == {"cluster": 2, "distances": 2}
    mean = sig.mean.copy()
    mean[0, 0, 0, 0] += 0.5
    selector.fit(HeadSignatures(mean, sig.var, sig.count), salience)  # other data: recompute
    assert calls == {"cluster": 3, "distances": 3}


def test_fit_from_clustering_matches_fit():
    sig, salience = _signatures(), np.random.default_rng(3).random((3, 4))
    fitted = CAHPSelector(perplexity=3, degree=3, n_seeds=3).fit(sig, salience)
    cached = CAHPSelector(degree=3).fit_from_clustering(fitted.clusterings_, salience, 3, 4)
    assert cached.consensus_seed_ == fitted.consensus_seed_ and cached.seeds_ == [42, 43, 44]
    assert cached.distances_ is None
    assert cached.knee_ == fitted.knee_
    np.testing.assert_array_equal(cached.support_, fitted.support_)
    np.testing.assert_array_equal(cached.labels_, fitted.labels_)


def test_hand_clustering_selection_and_budget():
    selector = CAHPSelector(degree=2).fit_from_clustering(_hand_clustering(), HAND_SALIENCE, 2, 3)
    assert selector.select(4).tolist() == [[True, True, True], [False, False, True]]
    assert selector.select(2).tolist() == [[True, True, False], [False, False, True]]
    assert selector.select_budget(4).tolist() == selector.select(4).tolist()
    assert selector.select_budget(6).sum() == 5  # the largest selection is k=5: 5 heads
    assert selector.select_budget(3).sum() == 3
    with pytest.raises(CAHPError, match=r"the fewest is 3 \(k=2\)"):
        selector.select_budget(2)
    for budget in (1, 7, 2.5):
        with pytest.raises(CAHPError, match="between 2 \\(one per layer\\) and 6"):
            selector.select_budget(budget)
    with pytest.raises(CAHPError, match=r"choose k in 2\.\.5"):
        selector.select(6)


def test_sklearn_style_parameters():
    selector = CAHPSelector(degree=4, clustering="graph")
    params = selector.get_params()
    assert params["degree"] == 4 and params["clustering"] == "graph" and params["k_max"] is None
    assert set(params) == {
        "degree",
        "knee_curve",
        "knee_shape",
        "clustering",
        "distance",
        "quality",
        "perplexity",
        "seed",
        "n_seeds",
        "k_min",
        "k_max",
        "n_neighbors",
        "rule",
        "radius_quantile",
        "mmr_lambda",
    }
    assert params["rule"] == "complementary"  # the paper's rule is the default
    assert params["quality"] == "mss" and params["n_seeds"] == 5
    assert params["knee_curve"] == "quality" and params["knee_shape"] == "concave"
    assert "degree=4" in repr(selector)
    assert not hasattr(selector, "support_")  # __init__ only stores parameters


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"degree": 0}, "degree"),
        ({"degree": 1}, "straight line"),
        ({"degree": 2.5}, "degree"),
        ({"quality": "silhouette"}, "unknown cluster quality"),
        ({"knee_curve": "accuracy"}, "unknown knee curve 'accuracy'; choose one of quality"),
        ({"knee_shape": "wavy"}, "unknown knee shape"),
        ({"n_seeds": 0}, "--seeds must be a whole number >= 1"),
        ({"clustering": "spectral"}, "tsne-kmedoids, graph"),
        ({"distance": "cosine"}, "jm, js"),
        ({"perplexity": -1}, "perplexity"),
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"k_min": 1}, "k_min"),
        ({"degree": 10}, "from 2 to 9"),  # ks 2..11: 10 curve points
    ],
)
def test_bad_parameters_raise(params, match):
    with pytest.raises(CAHPError, match=match):
        CAHPSelector(**{"perplexity": 3, **params}).fit(_signatures(), np.ones((3, 4)))


def test_scikit_learn_protocol():
    """clone, check_is_fitted and NotFittedError behave as for any scikit-learn estimator."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    selector = CAHPSelector(degree=2, perplexity=3, n_seeds=2)
    assert set(CAHPSelector._parameter_constraints) == set(selector.get_params())
    copy = clone(selector)
    assert copy is not selector and copy.get_params() == selector.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(selector)
    with pytest.raises(NotFittedError, match="call fit"):
        selector.get_support()
    selector.fit(_signatures(), np.ones((3, 4)))
    check_is_fitted(selector)
    assert not hasattr(clone(selector), "support_")  # a clone is unfitted


def test_errors():
    with pytest.raises(CAHPError, match="not fitted"):
        CAHPSelector().select(3)
    with pytest.raises(CAHPError, match="not fitted"):
        CAHPSelector().get_support()
    with pytest.raises(CAHPError, match="unknown parameter"):
        CAHPSelector().set_params(alpha=1)
    with pytest.raises(CAHPError, match="salience"):
        CAHPSelector().fit(_signatures(), np.ones((2, 4)))
    with pytest.raises(CAHPError, match="different|labels for 6 heads"):
        CAHPSelector(degree=2).fit_from_clustering(_hand_clustering(), np.ones((3, 4)), 3, 4)


def _shifted(clustering: ClusteringResult, seed: int, labels=None) -> ClusteringResult:
    return ClusteringResult(
        clustering.method,
        clustering.ks,
        clustering.labels if labels is None else labels,
        clustering.medoids,
        clustering.quality,
        seed=seed,
    )


def test_consensus_is_the_seed_closest_to_all_others():
    base = _hand_clustering()
    odd = base.labels.copy()
    odd[:, :] = [[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 2, 3], [0, 0, 1, 2, 3, 4]]
    seeds = [_shifted(base, 0, odd), _shifted(base, 1), _shifted(base, 2)]
    selector = CAHPSelector(degree=2).fit_from_clustering(seeds, HAND_SALIENCE, 2, 3)
    assert selector.seeds_ == [0, 1, 2]
    assert selector.consensus_seed_ == 1  # seeds 1 and 2 agree; seed 0 is the odd one out
    assert selector.support_by_seed_.shape == (3, 2, 3)
    assert set(selector.knee_by_seed_) == {0, 1, 2}
    assert selector.heads_by_seed_[1] == int(selector.support_.sum())
    np.testing.assert_array_equal(selector.support_, selector.support_by_seed_[1])
    heads = selector.knee_spread_["heads"]
    assert heads["min"] <= heads["median"] <= heads["max"]


def test_consensus_index_by_hand():
    from cahp_core.method.selection import consensus_index

    a = np.array([[1, 0, 0, 0]], dtype=bool)
    b = np.array([[1, 1, 0, 0]], dtype=bool)
    c = np.array([[1, 1, 1, 0]], dtype=bool)
    # summed Hamming distances: a: 1 + 2 = 3, b: 1 + 1 = 2, c: 2 + 1 = 3
    assert consensus_index(np.stack([a, b, c])) == 1
    assert consensus_index(np.stack([a, a])) == 0  # ties: the first seed


def test_performance_knee_from_the_measured_curve():
    from cahp_core.method.selection import performance_points

    records = [{"k": None, "method": "cahp", "accuracy": 0.9}] + [
        {"k": k, "method": m, "accuracy": acc}
        for k, acc in zip((2, 3, 4, 5), (0.2, 0.5, 0.6, 0.62), strict=True)
        for m in ("cahp", "gradient")
    ]
    points = performance_points(records)
    assert points.tolist() == [[2, 0.2], [3, 0.5], [4, 0.6], [5, 0.62]]
    selector = CAHPSelector(degree=2, knee_curve="performance").fit_from_clustering(
        _hand_clustering(), HAND_SALIENCE, 2, 3, performance=points
    )
    assert selector.knee_result_ is selector.performance_knee_result_
    assert selector.knee_ == selector.performance_knee_result_.knee
    assert selector.quality_knee_result_ is not None  # both knees are always reported
    np.testing.assert_array_equal(selector.support_, selector.select(selector.knee_))
    with pytest.raises(CAHPError, match="performance knee needs the run's measured accuracy"):
        CAHPSelector(degree=2, knee_curve="performance").fit_from_clustering(
            _hand_clustering(), HAND_SALIENCE, 2, 3
        )
