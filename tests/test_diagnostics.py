"""Diagnostics of CAHP's premise: split-half agreement and the JM distances' class signal."""

import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.diagnostics import (
    Diagnostics,
    diagnose,
    diagnostic_classes,
    shuffled_label_correlation,
    split_half_agreement,
)
from cahp_core.method.signatures import HeadSignatures


def _signatures(seed: int, class_effect: float, layers=3, heads=4, classes=3, dims=16):
    """Heads in 3 behaviour groups; ``class_effect`` scales how much each head's attention
    differs between classes (head-specific, so it changes the JM distances)."""
    rng = np.random.default_rng(seed)
    group = np.arange(layers * heads).reshape(layers, heads) % 3  # [L, H]
    base = rng.random((3, dims))[group]  # [L, H, D]
    per_class = rng.normal(size=(layers, heads, classes, dims)) * class_effect
    mean = base[:, :, None, :] + per_class + rng.normal(size=(layers, heads, 1, dims)) * 0.01
    var = np.full((layers, heads, classes, dims), 0.05)
    return HeadSignatures(mean, var, np.full(classes, 50.0))


def test_diagnostic_classes_split_in_two_disjoint_halves_and_shuffle():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])
    sets = diagnostic_classes(labels, seed=0)
    in_a, in_b = sets["half_a"] >= 0, sets["half_b"] >= 0
    assert not (in_a & in_b).any() and (in_a | in_b).all() and in_a.sum() == 5
    np.testing.assert_array_equal(sets["half_a"][in_a], labels[in_a])
    np.testing.assert_array_equal(sets["half_b"][in_b], labels[in_b])
    assert sorted(sets["shuffled"]) == sorted(labels)
    np.testing.assert_array_equal(diagnostic_classes(labels, 0)["shuffled"], sets["shuffled"])
    with pytest.raises(CAHPError, match="at least 4 training examples"):
        diagnostic_classes(labels[:3], 0)


def test_identical_halves_agree_perfectly():
    sig = _signatures(0, class_effect=0.5)
    agreement = split_half_agreement(sig, sig, "jm", ks=[2, 3, 5], seeds=[0, 1], perplexity=3)
    assert list(agreement) == [2, 3, 5]
    assert all(v == pytest.approx(1.0) for per_seed in agreement.values() for v in per_seed)


def test_unrelated_halves_agree_less_than_identical_ones():
    a, b = _signatures(0, 0.5), _signatures(7, 0.5)
    agreement = split_half_agreement(a, b, "js", ks=[3, 4], seeds=[0], perplexity=3)
    assert max(v for per_seed in agreement.values() for v in per_seed) < 1.0


def test_shuffled_label_correlation_sees_class_signal():
    # JM distances that come from per-class differences: shuffling the classes (here: a
    # different draw of them) ranks the head pairs differently
    true = _signatures(0, class_effect=1.0)
    unrelated = HeadSignatures(_signatures(3, 1.0).mean, true.var, true.count)
    assert shuffled_label_correlation(true, true) == pytest.approx(1.0)
    assert shuffled_label_correlation(true, unrelated) < 0.9


def test_warnings_and_round_trip():
    weak = Diagnostics(
        ks=[7, 14],
        seeds=[42],
        agreement={"jm": {7: [0.2], 14: [0.25]}, "js": {7: [0.8], 14: [0.7]}},
        shuffled_correlation=0.97,
        examples=100,
    )
    warnings = weak.warnings()
    assert len(warnings) == 2
    assert "adjusted Rand index of 0.23" in warnings[0] and "try --distance js" in warnings[0]
    assert "Spearman 0.97" in warnings[1]
    again = Diagnostics.from_dict(weak.to_dict())
    assert again == weak and weak.to_dict()["mean_agreement"]["js"] == pytest.approx(0.75)
    strong = Diagnostics([7], [42], {"jm": {7: [0.9]}, "js": {7: [0.9]}}, 0.2, 100)
    assert strong.warnings() == []


def test_diagnose_needs_every_set():
    sig = _signatures(0, 0.5)
    with pytest.raises(CAHPError, match="missing: half_b, shuffled"):
        diagnose({"all": sig, "half_a": sig}, ks=[2], seeds=[0])
    result = diagnose(
        {"all": sig, "half_a": sig, "half_b": sig, "shuffled": sig},
        ks=[2, 3],
        seeds=[0],
        perplexity=3,
    )
    assert result.ks == [2, 3] and result.mean_agreement("jm") == pytest.approx(1.0)
    assert result.shuffled_correlation == pytest.approx(1.0)


def test_signature_sets_from_one_pass_match_separate_passes(tiny):
    """ "all" equals compute_signatures; each half equals signatures of that half alone."""
    from cahp_core.data import TASKS, tokenize_records
    from cahp_core.method.signatures import compute_signature_sets, compute_signatures

    words = ["good", "bad", "a very long and fine"] * 4
    records = [{"text": f"{w} film number {i}", "label": i % 3} for i, w in enumerate(words)]
    features = tokenize_records(records, tiny.tokenizer, TASKS["sst5"], 32)
    labels = np.array([f["labels"] for f in features])
    classes = {"all": labels, **diagnostic_classes(labels, 0)}
    kwargs = {"grid": 4, "batch_size": 5, "show_progress": False}
    sets = compute_signature_sets(tiny.model, tiny.tokenizer, features, 3, classes, **kwargs)
    alone = compute_signatures(tiny.model, tiny.tokenizer, features, 3, **kwargs)
    np.testing.assert_allclose(sets["all"].mean, alone.mean, atol=1e-6)
    half = [f for f, c in zip(features, classes["half_a"], strict=True) if c >= 0]
    half_alone = compute_signatures(tiny.model, tiny.tokenizer, half, 3, **kwargs)
    np.testing.assert_allclose(sets["half_a"].mean, half_alone.mean, atol=1e-6)
    np.testing.assert_allclose(sets["half_a"].var, half_alone.var, atol=1e-6)
    assert sets["half_a"].count.sum() + sets["half_b"].count.sum() == len(features)
