import json
import warnings

import numpy as np
import pytest
from kneed import KneeLocator

from cahp_core.errors import CAHPError
from cahp_core.method.knee import check_degree, chord_knee, find_knee, fit_polynomial

X = np.arange(2, 71, dtype=float)


def test_the_default_is_the_authors_kneed_call():
    """Same knee and same fitted values as the authors' KneeLocator call, at every degree."""
    rng = np.random.default_rng(3)
    y = np.log(X) + rng.normal(0, 0.03, X.size)
    for degree in range(2, 13):
        authors = KneeLocator(
            X,
            y,
            curve="concave",
            direction="increasing",
            interp_method="polynomial",
            polynomial_degree=degree,
        )
        result = find_knee(X, y, degree=degree)
        assert result.shape == "concave" and (result.curve, result.direction) == (
            "concave",
            "increasing",
        )
        np.testing.assert_allclose(result.y_fit, authors.Ds_y)
        if authors.knee is None or authors.knee in (X[0], X[-1]):
            assert result.fallback and f"no knee at degree {degree}" in result.reason
        else:
            assert not result.fallback and result.knee == authors.knee


def test_knee_of_a_curve_with_a_known_elbow():
    rng = np.random.default_rng(0)
    y = np.minimum(X, 20.0) + rng.normal(0, 0.05, X.size)
    result = find_knee(X, y, degree=9)
    assert not result.fallback
    assert abs(result.knee - 20) <= 5


def test_knee_of_saturating_exponential():
    y = 1 - np.exp(-X / 8)
    result = find_knee(X, y, degree=6)
    assert not result.fallback
    assert 10 <= result.knee <= 30
    assert result.knee in X
    assert result.knee_y == pytest.approx(result.y_fit[list(X).index(result.knee)])


def test_auto_shape_is_an_explicit_option():
    result = find_knee(X, np.exp(-X / 8), degree=6, shape="auto")
    assert (result.curve, result.direction, result.shape) == ("convex", "decreasing", "auto")
    assert not result.fallback and 10 <= result.knee <= 30


def test_no_knee_at_a_degree_is_said_and_falls_back_to_the_chord_rule():
    # a convex increasing curve has no concave knee: kneed reports the first point (k=2),
    # which is no knee either
    y = np.exp(X / 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no kneed "No knee/elbow found" warning leaks out
        result = find_knee(X, y, degree=4)
    assert result.fallback
    assert result.reason.startswith("no knee at degree 4")
    assert "end of the curve" in result.reason
    assert result.knee == X[chord_knee(X, result.y_fit)]


def test_fit_polynomial_reproduces_a_polynomial():
    x = np.arange(0.0, 10.0)
    y = 3 - 2 * x + 0.5 * x**2
    y_fit, coefficients = fit_polynomial(x, y, 2)
    np.testing.assert_allclose(y_fit, y, atol=1e-9)
    np.testing.assert_allclose(coefficients, [3, -2, 0.5], atol=1e-9)


def test_flat_curve_falls_back_to_smallest_x():
    result = find_knee(X, np.full(X.size, 0.5), degree=4)
    assert result.fallback and "flat" in result.reason
    assert result.knee == 2


def test_degree_one_is_refused_not_turned_into_k2():
    with pytest.raises(CAHPError, match="straight line"):
        find_knee(X, np.log(X), degree=1)


@pytest.mark.parametrize("degree", [0, -1, 1, 69, 100, 2.5, True])
def test_invalid_degree_is_a_clear_error(degree):
    with pytest.raises(CAHPError, match="degree"):
        find_knee(X, np.log(X), degree=degree)


def test_degree_error_names_the_allowed_range():
    with pytest.raises(CAHPError, match="choose a degree from 2 to 68"):
        find_knee(X, np.log(X), degree=69)
    with pytest.raises(CAHPError, match="choose a degree from 2$"):
        check_degree(1)


def test_too_few_points_and_bad_x():
    with pytest.raises(CAHPError, match="at least 3"):
        find_knee([1, 2], [1, 2], degree=2)
    with pytest.raises(CAHPError, match="increasing"):
        find_knee([1, 3, 2, 4], [1, 2, 3, 4], degree=2)
    with pytest.raises(CAHPError, match="NaN"):
        find_knee([1, 2, 3, 4], [1, np.nan, 3, 4], degree=2)
    with pytest.raises(CAHPError, match="same length"):
        find_knee([1, 2, 3, 4], [1, 2, 3], degree=2)
    with pytest.raises(CAHPError, match="unknown knee shape 'wavy'; choose one of concave, auto"):
        find_knee(X, np.log(X), degree=3, shape="wavy")


def test_different_degrees_can_give_different_knees():
    rng = np.random.default_rng(1)
    y = np.log(X) + 0.3 * np.sin(X / 4) + rng.normal(0, 0.02, X.size)
    knees = {find_knee(X, y, degree=d).knee for d in (2, 3, 6, 9)}
    assert len(knees) > 1


def test_chord_knee_on_a_corner():
    x = np.array([0.0, 1, 2, 3, 4])
    y = np.array([0.0, 3, 3.5, 3.8, 4])
    assert chord_knee(x, y) == 1


def test_to_dict_is_json_safe():
    result = find_knee(X, np.log(X), degree=3)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["knee"] == result.knee and data["degree"] == 3 and len(data["y_fit"]) == X.size
    assert data["shape"] == "concave"


def test_a_straight_fit_has_no_knee():
    result = find_knee(X, 0.01 * X, degree=3)
    assert result.fallback and result.reason.startswith("no knee at degree 3")


def test_the_concave_fallback_ignores_dips_below_the_chord():
    x = np.arange(0.0, 7.0)
    y = np.array([0.0, 0.6, 0.8, -0.5, 0.9, 0.95, 1.0])  # a deep dip at x=3, a bulge at x=1..2
    assert chord_knee(x, y) == 3  # farthest in absolute terms: the dip
    assert chord_knee(x, y, above=True) == 2  # the concave knee's side: the bulge
    assert chord_knee(x, np.abs(x - 3), above=True) == 3  # nothing above: back to |distance|
