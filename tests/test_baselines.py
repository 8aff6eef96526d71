import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.baselines import gradient_selection, random_selection, same_budget_maps


def test_gradient_selection_picks_the_top_heads():
    importance = np.array([[1.0, 5.0, 2.0], [0.1, 0.2, 9.0]])
    keep = gradient_selection(importance, 2, normalise_per_layer=False)
    assert keep.tolist() == [[False, True, False], [False, False, True]]
    keep = gradient_selection(importance, 3, normalise_per_layer=False)
    assert keep.tolist() == [[False, True, True], [False, False, True]]


def test_per_layer_normalisation_changes_the_ranking():
    importance = np.array([[10.0, 10.0], [0.3, 0.01]])
    raw = gradient_selection(importance, 1, normalise_per_layer=False)
    assert raw.tolist() == [[True, False], [False, False]]  # 10 > 0.3 (tie -> lowest index)
    # normalised: layer 0 -> 0.707 each, layer 1 -> 0.9994 and 0.033
    normalised = gradient_selection(importance, 1)
    assert normalised.tolist() == [[False, False], [True, False]]


def test_ties_go_to_the_lowest_flat_index_and_zero_layers_are_safe():
    importance = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    keep = gradient_selection(importance, 3)
    assert keep.tolist() == [[True, False], [True, True], [False, False]]


def test_gradient_budget_errors():
    importance = np.ones((2, 3))
    for bad in (0, 7, 2.5, True):
        with pytest.raises(CAHPError, match="between 1 and 6"):
            gradient_selection(importance, bad)
    with pytest.raises(CAHPError, match="finite"):
        gradient_selection(np.array([[1.0, np.nan]]), 1)


def test_random_selection():
    a, b, c = (random_selection(6, 12, 20, s) for s in (0, 0, 1))
    assert a.sum() == 20 and a.shape == (6, 12) and a.dtype == bool
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert random_selection(2, 3, 6, 5).all()


def test_random_selection_is_uniform_over_heads():
    counts = sum(random_selection(2, 4, 2, seed).astype(int) for seed in range(2000))
    np.testing.assert_allclose(counts / 2000, 0.25, atol=0.04)  # 2 of 8 heads each time


def test_random_budget_errors():
    for bad in (0, 73, -1):
        with pytest.raises(CAHPError, match="between 1 and 72"):
            random_selection(6, 12, bad, 0)


def test_same_budget_maps_keep_as_many_heads_as_cahp():
    importance = np.array([[0.1, 0.2, 0.3], [5.0, 6.0, 7.0]])  # the last layer dominates raw
    cahp = np.array([[True, True, False], [False, False, True]])
    maps = same_budget_maps(cahp, importance, seed=0, raw_gradient=True)
    assert list(maps) == ["cahp", "gradient", "random", "gradient-raw"]
    assert {int(m.sum()) for m in maps.values()} == {3}
    np.testing.assert_array_equal(maps["cahp"], cahp)
    # raw: the three heads of the dominant layer; normalised: both layers are on one scale
    assert maps["gradient-raw"].tolist() == [[False, False, False], [True, True, True]]
    assert maps["gradient"][0].any() and maps["gradient"][1].any()
    assert "gradient-raw" not in same_budget_maps(cahp, importance, seed=0)
