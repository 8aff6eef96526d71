import numpy as np
import pytest

import cahp_core.selection as selection_module
from cahp_core.errors import CAHPError
from cahp_core.selection import CAHPSelector, complementary_selection
from cahp_core.signatures import HeadSignatures


def _signatures(seed=0, layers=3, heads=4, classes=3, dims=16):
    rng = np.random.default_rng(seed)
    mean = rng.random((layers, heads, classes, dims))
    var = rng.random((layers, heads, classes, dims)) * 0.1 + 0.01
    return HeadSignatures(mean, var, np.full(classes, 10.0))


def test_most_salient_head_per_cluster_and_one_per_layer():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2])  # 3 layers x 4 heads
    salience = np.array([[0.1, 0.9, 0.2, 0.3], [0.5, 0.4, 0.8, 0.1], [0.0, 0.2, 0.7, 0.2]])
    keep = complementary_selection(labels, salience, 3, 4)
    expected = np.zeros((3, 4), dtype=bool)
    expected[0, 1] = expected[1, 2] = expected[2, 2] = True
    np.testing.assert_array_equal(keep, expected)


def test_empty_layer_gets_its_most_salient_head_back():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # 2 layers x 4 heads, both winners in layer 0
    salience = np.array([[0.9, 0.1, 0.8, 0.1], [0.2, 0.6, 0.3, 0.6]])
    keep = complementary_selection(labels, salience, 2, 4)
    assert keep[0].tolist() == [True, False, True, False]
    assert keep[1].tolist() == [False, True, False, False]  # tie 0.6: lowest head index


def test_selector_fit_attributes_and_one_head_per_layer():
    sig = _signatures()
    salience = np.random.default_rng(1).random((3, 4))
    selector = CAHPSelector(degree=3, perplexity=3).fit(sig, salience)
    assert selector.support_.shape == (3, 4) and selector.support_.dtype == bool
    assert (selector.kept_per_layer_ >= 1).all()
    assert selector.n_heads_kept_ == int(selector.support_.sum()) < 12
    assert selector.curve_.shape[1] == 2 and selector.labels_.shape == (12,)
    assert selector.knee_ in selector.clustering_.ks
    for k in selector.clustering_.ks:
        keep = selector.select(int(k))
        assert keep.any(axis=1).all()
        assert keep.sum() >= min(k, 12)


def test_identical_heads_share_a_cluster_and_only_one_is_kept():
    sig = _signatures()
    mean, var = sig.mean.copy(), sig.var.copy()
    mean[2, 3], var[2, 3] = mean[1, 0], var[1, 0]
    salience = np.random.default_rng(0).random((3, 4))
    selector = CAHPSelector(degree=2, perplexity=3).fit(
        HeadSignatures(mean, var, sig.count), salience
    )
    for k in selector.clustering_.ks[:5]:
        labels = selector.clustering_.labels_for(int(k))
        assert labels[4] == labels[11]
        assert not (selector.select(int(k))[1, 0] and selector.select(int(k))[2, 3]) or k >= 11


def test_deterministic():
    sig, salience = _signatures(), np.random.default_rng(3).random((3, 4))
    a = CAHPSelector(perplexity=3, degree=4).fit(sig, salience)
    b = CAHPSelector(perplexity=3, degree=4).fit(sig, salience)
    np.testing.assert_array_equal(a.support_, b.support_)
    assert a.knee_ == b.knee_


def test_changing_degree_reuses_distances_and_clustering(monkeypatch):
    calls = {"n": 0}
    original = selection_module.cluster_heads

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(selection_module, "cluster_heads", counting)
    sig, salience = _signatures(), np.random.default_rng(3).random((3, 4))
    selector = CAHPSelector(perplexity=3, degree=2).fit(sig, salience)
    for degree in (3, 4, 5):
        selector.set_params(degree=degree).fit(sig, salience)
        assert selector.knee_result_.degree == degree
    assert calls["n"] == 1
    selector.set_params(seed=7).fit(sig, salience)  # an upstream parameter: recompute
    assert calls["n"] == 2


def test_select_budget():
    sig, salience = _signatures(), np.random.default_rng(3).random((3, 4))
    selector = CAHPSelector(perplexity=3, degree=2).fit(sig, salience)
    keep = selector.select_budget(6)
    assert 3 <= keep.sum() <= 6 and keep.any(axis=1).all()
    with pytest.raises(CAHPError, match="between 3"):
        selector.select_budget(2)
    with pytest.raises(CAHPError, match="between 3"):
        selector.select_budget(13)


def test_errors():
    with pytest.raises(CAHPError, match="not fitted"):
        CAHPSelector().select(3)
    with pytest.raises(CAHPError, match="unknown parameter"):
        CAHPSelector().set_params(alpha=1)
    with pytest.raises(CAHPError, match="salience"):
        CAHPSelector().fit(_signatures(), np.ones((2, 4)))
    with pytest.raises(CAHPError, match="degree"):
        CAHPSelector(degree=0, perplexity=3).fit(_signatures(), np.ones((3, 4)))
