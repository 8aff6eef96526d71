import json
import warnings

import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.knee import chord_knee, find_knee, fit_polynomial

X = np.arange(2, 71, dtype=float)


def test_knee_of_a_curve_with_a_known_elbow():
    rng = np.random.default_rng(0)
    y = np.minimum(X, 20.0) + rng.normal(0, 0.05, X.size)
    result = find_knee(X, y, degree=9)
    assert not result.fallback
    assert abs(result.knee - 20) <= 5
    assert result.curve == "concave" and result.direction == "increasing"


def test_knee_of_saturating_exponential():
    y = 1 - np.exp(-X / 8)
    result = find_knee(X, y, degree=6)
    assert not result.fallback
    assert 10 <= result.knee <= 30
    assert result.knee in X
    assert result.knee_y == pytest.approx(result.y_fit[list(X).index(result.knee)])


def test_decreasing_convex_curve_is_detected():
    result = find_knee(X, np.exp(-X / 8), degree=6)
    assert (result.curve, result.direction) == ("convex", "decreasing")
    assert not result.fallback and 10 <= result.knee <= 30


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


def test_straight_line_falls_back_instead_of_crashing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no kneed "No knee/elbow found" warning leaks out
        result = find_knee(X, 0.01 * X, degree=1)
        curved = find_knee(X, np.log(X), degree=1)  # degree 1 always falls back
        exact_line = find_knee(X, 0.01 * X, degree=3)
    assert result.fallback and result.knee == 2
    assert curved.fallback and "straight line" in curved.reason and curved.knee == 2
    assert exact_line.fallback and exact_line.knee in X


@pytest.mark.parametrize("degree", [0, -1, 69, 100, 2.5, True])
def test_invalid_degree_is_a_clear_error(degree):
    with pytest.raises(CAHPError, match="degree"):
        find_knee(X, np.log(X), degree=degree)


def test_degree_error_names_the_allowed_range():
    with pytest.raises(CAHPError, match=r"between 1 and 68 \(number of curve points - 1\)"):
        find_knee(X, np.log(X), degree=0)


def test_too_few_points_and_bad_x():
    with pytest.raises(CAHPError, match="at least 3"):
        find_knee([1, 2], [1, 2], degree=1)
    with pytest.raises(CAHPError, match="increasing"):
        find_knee([1, 3, 2, 4], [1, 2, 3, 4], degree=1)
    with pytest.raises(CAHPError, match="NaN"):
        find_knee([1, 2, 3, 4], [1, np.nan, 3, 4], degree=1)
    with pytest.raises(CAHPError, match="same length"):
        find_knee([1, 2, 3, 4], [1, 2, 3], degree=1)
    with pytest.raises(CAHPError, match="curve must be"):
        find_knee(X, np.log(X), degree=3, curve="wavy")
    with pytest.raises(CAHPError, match="direction must be"):
        find_knee(X, np.log(X), degree=3, direction="up")


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


def test_a_knee_on_the_end_of_the_curve_falls_back(monkeypatch):
    class EndKnee:
        def __init__(self, x, *args, **kwargs):
            self.knee = x[-1]

    monkeypatch.setattr("cahp_core.knee.KneeLocator", EndKnee)
    result = find_knee(X, np.log(X), degree=3)
    assert result.fallback and "end of the curve" in result.reason
    assert X[0] < result.knee < X[-1]
