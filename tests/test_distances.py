import numpy as np
import pytest

from cahp_core.distances import (
    bhattacharyya_gaussian,
    feature_distance_matrix,
    head_distances,
    head_mean_maps,
    jeffries_matusita,
    jm_features,
)
from cahp_core.errors import CAHPError
from cahp_core.signatures import HeadSignatures


def _signatures(seed=0, layers=2, heads=3, classes=3, dims=8):
    rng = np.random.default_rng(seed)
    mean = rng.random((layers, heads, classes, dims))
    var = rng.random((layers, heads, classes, dims)) * 0.2 + 0.01
    return HeadSignatures(mean, var, np.array([10.0, 5.0, 5.0])[:classes])


def test_bhattacharyya_known_values():
    zero = bhattacharyya_gaussian(np.array(1.0), np.array(2.0), np.array(1.0), np.array(2.0), eps=0)
    assert zero == pytest.approx(0.0)
    # equal variances: B = (mu_a - mu_b)^2 / (8 var)
    value = bhattacharyya_gaussian(
        np.array(0.0), np.array(1.0), np.array(2.0), np.array(1.0), eps=0
    )
    assert value == pytest.approx(4 / 8)
    # equal means: B = 0.5 ln((va + vb) / (2 sqrt(va vb)))
    value = bhattacharyya_gaussian(
        np.array(0.0), np.array(1.0), np.array(0.0), np.array(4.0), eps=0
    )
    assert value == pytest.approx(0.5 * np.log(5 / 4))


def test_jm_bounded_and_symmetric():
    rng = np.random.default_rng(0)
    ma, mb = rng.normal(size=100) * 10, rng.normal(size=100) * 10
    va, vb = rng.random(100) + 1e-3, rng.random(100) + 1e-3
    ab = jeffries_matusita(bhattacharyya_gaussian(ma, va, mb, vb))
    ba = jeffries_matusita(bhattacharyya_gaussian(mb, vb, ma, va))
    np.testing.assert_allclose(ab, ba)
    assert (ab >= 0).all() and (ab <= 2).all()
    assert jeffries_matusita(np.array(1e6)) == pytest.approx(2.0)


def test_jm_features_shape_class_pairs():
    sig = _signatures(classes=3)
    assert jm_features(sig).shape == (6, 3 * 8)  # 3 class pairs
    sig5 = HeadSignatures(np.zeros((1, 2, 5, 4)), np.ones((1, 2, 5, 4)), np.ones(5))
    assert jm_features(sig5).shape == (2, 10 * 4)  # SST-5: 10 pairs


@pytest.mark.parametrize("method", ["jm", "js"])
def test_identical_heads_have_distance_zero(method):
    sig = _signatures()
    mean, var = sig.mean.copy(), sig.var.copy()
    mean[1, 2], var[1, 2] = mean[0, 0], var[0, 0]  # head 5 is a copy of head 0
    result = head_distances(HeadSignatures(mean, var, sig.count), method)
    d = result.distance
    assert d[0, 5] == pytest.approx(0.0, abs=1e-9)
    assert d[0, 1] > 0
    np.testing.assert_array_equal(d, d.T)
    assert (np.diag(d) == 0).all()


def test_js_is_bounded_and_maps_are_distributions():
    sig = _signatures()
    maps = head_mean_maps(sig)
    np.testing.assert_allclose(maps.sum(1), 1.0)
    d = head_distances(sig, "js").distance
    assert (d >= 0).all() and (d <= 1).all()


def test_feature_distance_matrix_euclidean():
    d = feature_distance_matrix(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(d, [[0, 5], [5, 0]])


def test_unknown_distance():
    with pytest.raises(CAHPError, match="jm, js"):
        head_distances(_signatures(), "cosine")
