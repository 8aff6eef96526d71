"""The selection rules beyond the paper: salience-radius and maximal marginal relevance."""

import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.baselines import gradient_selection, top_n
from cahp_core.method.clustering import ClusteringResult
from cahp_core.method.selection import (
    CAHPSelector,
    complementary_selection,
    fill_empty_layers,
    layer_normalised,
    mmr_selection,
    radius_threshold,
    salience_radius_selection,
)

# 2 layers x 3 heads. Heads 0 and 1 (layer 0) are near-duplicates; heads 3 and 4 (layer 1)
# too; head 2 and head 5 are far from everything.
POINTS = np.array([0.0, 0.1, 5.0, 10.0, 10.1, 20.0])
DISTANCE = np.abs(POINTS[:, None] - POINTS[None, :])  # [6, 6]
# layer-normalised ranking: head 0 > head 1 > head 2 in layer 0; head 3 > head 4 > head 5
SALIENCE = np.array([[0.9, 0.8, 0.3], [0.7, 0.6, 0.2]])


def _random_case(seed: int, layers: int = 4, heads: int = 6):
    rng = np.random.default_rng(seed)
    salience = rng.random((layers, heads))
    points = rng.random((layers * heads, 3))
    distance = np.linalg.norm(points[:, None] - points[None, :], axis=-1)  # [N, N]
    return salience, distance


def test_layer_normalised_is_the_gradient_ranking():
    norm = layer_normalised(SALIENCE)
    np.testing.assert_allclose(np.linalg.norm(norm, axis=1), 1.0)
    np.testing.assert_array_equal(norm.argsort(axis=1), SALIENCE.argsort(axis=1))
    for n in range(1, 7):
        np.testing.assert_array_equal(top_n(norm, n), gradient_selection(SALIENCE, n))


def test_radius_threshold_is_a_quantile_of_pair_distances():
    pairs = np.sort(DISTANCE[np.triu_indices(6, k=1)])
    assert radius_threshold(DISTANCE, 0.0) == 0.0
    assert radius_threshold(DISTANCE, 0.5) == pytest.approx(np.quantile(pairs, 0.5))
    with pytest.raises(CAHPError, match=r"radius quantile must be in \[0, 1\)"):
        radius_threshold(DISTANCE, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_radius_zero_and_lambda_one_are_the_gradient_ranking(seed):
    salience, distance = _random_case(seed)
    for n in (8, 12):
        gradient = gradient_selection(salience, n)
        if not gradient.any(axis=1).all():
            continue  # the rules keep one head per layer; gradient need not
        np.testing.assert_array_equal(
            salience_radius_selection(salience, distance, n, 0.0), gradient
        )
        np.testing.assert_array_equal(mmr_selection(salience, distance, n, 1.0), gradient)


def test_radius_skips_the_near_duplicate_of_a_kept_head():
    # order 3, 0, 1, 4, 2, 5 (by layer-normalised salience); the 0.1 quantile of the 15
    # pair distances is 0.1 + 0.4 * (4.9 - 0.1) = 2.02: the two 0.1-pairs are redundant.
    keep = salience_radius_selection(SALIENCE, DISTANCE, 4, radius_quantile=0.1)
    # 3 kept; 0 kept; 1 skipped (0.1 from 0); 4 skipped (0.1 from 3); 2 and 5 kept
    assert keep.tolist() == [[True, False, True], [True, False, True]]
    # without a radius the two duplicates are kept instead of heads 2 and 5
    plain = salience_radius_selection(SALIENCE, DISTANCE, 4, radius_quantile=0.0)
    assert plain.tolist() == [[True, True, False], [True, True, False]]


def test_radius_fills_the_budget_with_skipped_heads_when_too_few_survive():
    # a radius covering every pair: only the most salient head survives, then the most
    # salient skipped heads fill the budget (here: the plain ranking again)
    keep = salience_radius_selection(SALIENCE, DISTANCE, 3, radius_quantile=0.99)
    assert int(keep.sum()) == 3
    assert keep.tolist() == [[True, True, False], [True, False, False]]


def test_mmr_by_hand():
    # relevance s = layer-normalised salience / its max: heads 3, 0, 1, 4, 2, 5 in that order
    # (1.0, 0.977, 0.869, 0.857, 0.326, 0.286); similarity = 1 - distance / 20. lambda 0.3:
    # pick 1: head 3. pick 2: head 0 (0.3 * 0.977 - 0.7 * 0.5 = -0.057, the best);
    # pick 3: head 5 (0.3 * 0.286 - 0.7 * 0.5 = -0.264) beats head 1, the duplicate of
    # head 0 (0.3 * 0.869 - 0.7 * 0.995 = -0.436).
    norm = layer_normalised(SALIENCE).reshape(-1)
    relevance = norm / norm.max()
    similarity = 1 - DISTANCE / DISTANCE.max()
    kept: list[int] = []
    for _ in range(3):
        nearest = similarity[:, kept].max(axis=1) if kept else np.zeros(6)
        gain = np.where(np.isin(np.arange(6), kept), -np.inf, 0.3 * relevance - 0.7 * nearest)
        kept.append(int(np.argmax(gain)))
    assert kept == [3, 0, 5]
    keep = mmr_selection(SALIENCE, DISTANCE, 3, 0.3)
    assert np.flatnonzero(keep.reshape(-1)).tolist() == sorted(kept)
    # with more weight on salience (0.5) the duplicate wins the third place
    keep = mmr_selection(SALIENCE, DISTANCE, 3, 0.5)
    assert np.flatnonzero(keep.reshape(-1)).tolist() == [0, 1, 3]


def test_mmr_lambda_zero_spreads_the_heads_out():
    keep = mmr_selection(SALIENCE, DISTANCE, 3, 0.0)
    # gain = -(max similarity to a kept head). Pick 1: every gain is 0 -> head 0 (lowest
    # index); pick 2: the farthest from it, head 5; pick 3: head 3 (max similarity 0.5)
    # before head 4 (0.505) and head 2 (0.75)
    assert np.flatnonzero(keep.reshape(-1)).tolist() == [0, 3, 5]


def test_fill_empty_layers_swaps_the_worst_head_of_a_crowded_layer():
    keep = np.array([[True, True, True], [False, False, False]])
    score = np.array([[0.9, 0.8, 0.3], [0.1, 0.5, 0.4]])
    filled = fill_empty_layers(keep, score)
    assert filled.tolist() == [[True, True, False], [False, True, False]]
    with pytest.raises(CAHPError, match="one per layer"):
        fill_empty_layers(np.array([[True, False], [False, False]]), np.ones((2, 2)))


@pytest.mark.parametrize("rule", ["salience-radius", "mmr"])
def test_rules_keep_exactly_the_budget_and_one_per_layer(rule):
    salience, distance = _random_case(3)
    select = salience_radius_selection if rule == "salience-radius" else mmr_selection
    for n in (4, 7, 13, 24):
        keep = select(salience, distance, n, 0.3)
        assert keep.shape == (4, 6) and int(keep.sum()) == n
        assert keep.any(axis=1).all()
    with pytest.raises(CAHPError, match="head budget must be between 4"):
        select(salience, distance, 3, 0.3)
    with pytest.raises(CAHPError, match="distance has shape"):
        select(salience, distance[:5, :5], 6, 0.3)


def _clustering() -> ClusteringResult:
    labels = np.array([[0, 0, 1, 1, 1, 1], [0, 0, 1, 2, 2, 2], [0, 0, 1, 2, 2, 3]])
    quality = np.array([0.2, 0.5, 0.6])
    medoids = [np.arange(k) for k in (2, 3, 4)]
    return ClusteringResult("tsne-kmedoids", np.arange(2, 5), labels, medoids, quality)


def test_selector_rules_keep_as_many_heads_as_the_paper_rule_at_the_knee():
    paper = CAHPSelector(degree=2).fit_from_clustering(_clustering(), SALIENCE, 2, 3)
    for rule in ("salience-radius", "mmr"):
        selector = CAHPSelector(degree=2, rule=rule, radius_quantile=0.15, mmr_lambda=0.5)
        selector.fit_from_clustering(_clustering(), SALIENCE, 2, 3, distance=DISTANCE)
        assert selector.knee_ == paper.knee_
        assert selector.n_heads_kept_ == paper.n_heads_kept_
        budget = selector.select_budget(4)
        assert int(budget.sum()) == 4  # exactly the budget
    labels = _clustering().labels_for(paper.knee_)
    np.testing.assert_array_equal(paper.support_, complementary_selection(labels, SALIENCE, 2, 3))


def test_selector_rule_needs_distances_and_valid_parameters():
    with pytest.raises(CAHPError, match="needs the head distance matrix"):
        CAHPSelector(degree=2, rule="mmr").fit_from_clustering(_clustering(), SALIENCE, 2, 3)
    for params, match in (
        ({"rule": "best"}, "unknown selection rule 'best'"),
        ({"rule": "mmr", "mmr_lambda": 1.5}, r"mmr_lambda must be in \[0, 1\]"),
        ({"rule": "salience-radius", "radius_quantile": -0.1}, "radius_quantile must be in"),
    ):
        with pytest.raises(CAHPError, match=match):
            CAHPSelector(degree=2, **params).fit_from_clustering(
                _clustering(), SALIENCE, 2, 3, distance=DISTANCE
            )


def test_selector_fit_passes_its_own_distances_to_the_rule():
    from cahp_core.method.signatures import HeadSignatures

    rng = np.random.default_rng(0)
    sig = HeadSignatures(
        rng.random((3, 4, 3, 16)), rng.random((3, 4, 3, 16)) * 0.1 + 0.01, np.full(3, 10.0)
    )
    salience = rng.random((3, 4))
    selector = CAHPSelector(degree=3, perplexity=3, n_seeds=1, rule="mmr", mmr_lambda=0.6)
    selector.fit(sig, salience)
    expected = mmr_selection(salience, selector.distances_.distance, selector.n_heads_kept_, 0.6)
    np.testing.assert_array_equal(selector.support_, expected)
    assert "rule" in selector.get_params() and "mmr_lambda" in selector.get_params()
