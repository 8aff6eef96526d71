import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from cahp_core.errors import CAHPError
from cahp_core.method.distances import (
    HeadDistances,
    bhattacharyya_gaussian,
    feature_distance_matrix,
    head_distances,
    head_mean_maps,
    jeffries_matusita,
    jm_features,
    js_distance_matrix,
)
from cahp_core.method.signatures import HeadSignatures


def _signatures(seed=0, layers=2, heads=3, classes=3, dims=8):
    rng = np.random.default_rng(seed)
    mean = rng.random((layers, heads, classes, dims))
    var = rng.random((layers, heads, classes, dims)) * 0.2 + 0.01
    return HeadSignatures(mean, var, np.array([10.0, 5.0, 5.0, 1.0, 1.0])[:classes])


def test_bhattacharyya_known_values():
    same = bhattacharyya_gaussian(np.array(1.0), np.array(2.0), np.array(1.0), np.array(2.0))
    assert same == pytest.approx(0.0, abs=1e-12)
    # equal variances 1: B = (0 - 2)^2 / (4 * 2) = 0.5
    b = bhattacharyya_gaussian(np.array(0.0), np.array(1.0), np.array(2.0), np.array(1.0), eps=0)
    assert b == pytest.approx(0.5)
    # equal means, variances 1 and 4: B = 0.5 ln(2.5 / 2) = 0.5 ln 1.25
    b = bhattacharyya_gaussian(np.array(0.0), np.array(1.0), np.array(0.0), np.array(4.0), eps=0)
    assert b == pytest.approx(0.5 * np.log(1.25))
    # both terms: mu 1 vs 3, var 1 vs 3: 4 / 16 + 0.5 ln(2 / sqrt 3)
    b = bhattacharyya_gaussian(np.array(1.0), np.array(1.0), np.array(3.0), np.array(3.0), eps=0)
    assert b == pytest.approx(0.25 + 0.5 * np.log(2 / np.sqrt(3)))
    # JM of B = 0.5: 2 (1 - e^-0.5)
    assert jeffries_matusita(np.array(0.5)) == pytest.approx(0.786938680574733)


def test_zero_variance_is_finite_thanks_to_eps():
    b = bhattacharyya_gaussian(np.zeros(3), np.zeros(3), np.ones(3), np.zeros(3))
    assert np.isfinite(b).all() and (b > 0).all()
    assert bhattacharyya_gaussian(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3)).max() == 0


def test_jm_bounded_and_symmetric():
    rng = np.random.default_rng(0)
    ma, mb = rng.normal(size=100) * 10, rng.normal(size=100) * 10
    va, vb = rng.random(100) + 1e-3, rng.random(100) + 1e-3
    ab = jeffries_matusita(bhattacharyya_gaussian(ma, va, mb, vb))
    ba = jeffries_matusita(bhattacharyya_gaussian(mb, vb, ma, va))
    np.testing.assert_allclose(ab, ba)
    assert (ab >= 0).all() and (ab <= 2).all()
    assert ab.max() > 1.9  # far-apart Gaussians approach the bound
    assert jeffries_matusita(np.array(1e6)) == pytest.approx(2.0)


def test_jm_features_shape_and_class_pair_order():
    assert jm_features(_signatures(classes=3)).shape == (6, 3 * 8)  # MNLI: 3 class pairs
    assert jm_features(_signatures(classes=5)).shape == (6, 10 * 8)  # SST-5: 10 pairs
    sig = _signatures(classes=3, dims=4)
    mean, var = sig.mean.copy(), sig.var.copy()
    mean[:, :, 1], var[:, :, 1] = mean[:, :, 0], var[:, :, 0]  # class 1 == class 0
    features = jm_features(HeadSignatures(mean, var, sig.count))  # pairs (0,1), (0,2), (1,2)
    assert np.abs(features[:, :4]).max() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(features[:, 4:8], features[:, 8:12])
    assert features[:, 4:].min() > 0


def test_jm_features_need_two_classes():
    with pytest.raises(CAHPError, match="at least two classes"):
        jm_features(HeadSignatures(np.zeros((1, 2, 1, 4)), np.ones((1, 2, 1, 4)), np.ones(1)))


@pytest.mark.parametrize("method", ["jm", "js"])
def test_identical_heads_have_distance_zero(method):
    sig = _signatures()
    mean, var = sig.mean.copy(), sig.var.copy()
    mean[1, 2], var[1, 2] = mean[0, 0], var[0, 0]  # head 5 is a copy of head 0
    result = head_distances(HeadSignatures(mean, var, sig.count), method)
    assert isinstance(result, HeadDistances) and result.method == method
    d = result.distance
    assert d.shape == (6, 6)
    assert d[0, 5] == pytest.approx(0.0, abs=1e-9)
    others = ~np.eye(6, dtype=bool)
    others[0, 5] = others[5, 0] = False
    assert (d[others] > 0).all()
    np.testing.assert_array_equal(d, d.T)
    assert (np.diag(d) == 0).all()


def test_head_mean_maps_weighting_clipping_and_uniform():
    mean = np.zeros((1, 3, 2, 4))
    mean[0, 0, 0] = [1, 0, 0, 0]  # class 0 (weight 3/4)
    mean[0, 0, 1] = [0, 0, 0, 1]  # class 1 (weight 1/4)
    mean[0, 1, :] = [2, -1, 2, 0]  # negative clipped
    sig = HeadSignatures(mean, np.ones_like(mean), np.array([3.0, 1.0]))
    maps = head_mean_maps(sig)
    np.testing.assert_allclose(maps[0], [0.75, 0, 0, 0.25])
    np.testing.assert_allclose(maps[1], [0.5, 0, 0.5, 0])
    np.testing.assert_allclose(maps[2], [0.25] * 4)  # zero map -> uniform
    np.testing.assert_allclose(maps.sum(1), 1.0)


def test_js_distance_known_values_and_scipy_agreement():
    maps = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    d = js_distance_matrix(maps)
    assert d[0, 1] == pytest.approx(1.0)  # disjoint supports: the maximum in base 2
    # by hand: M = (0.75, 0.25); JSD = (0.5*KL(p|M) + 0.5*KL(q|M)) = 0.311278 bits
    assert d[0, 2] == pytest.approx(0.5579230, abs=1e-6)
    assert d[0, 3] == 0
    rng = np.random.default_rng(2)
    maps = rng.random((7, 16))
    d = js_distance_matrix(maps)
    for i in range(7):
        for j in range(7):
            expected = 0.0 if i == j else jensenshannon(maps[i], maps[j], base=2)
            assert d[i, j] == pytest.approx(expected, abs=1e-12)


def test_js_is_bounded():
    d = head_distances(_signatures(), "js").distance
    assert (d >= 0).all() and (d <= 1).all() and d.max() > 0


def test_feature_distance_matrix_euclidean():
    d = feature_distance_matrix(np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]))
    np.testing.assert_allclose(d, [[0, 5, 10], [5, 0, 5], [10, 5, 0]])
    with pytest.raises(CAHPError, match="finite 2-D"):
        feature_distance_matrix(np.array([[0.0, np.nan], [1.0, 1.0]]))


def test_unknown_distance():
    with pytest.raises(CAHPError, match="jm, js"):
        head_distances(_signatures(), "cosine")
