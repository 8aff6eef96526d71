"""Prediction helpers: logits in input order and the KL divergence from a reference."""

import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.training import log_softmax, predict, predict_logits, prediction_kl


def test_prediction_kl_by_hand():
    reference = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    model = np.log(np.array([[0.25, 0.75], [0.9, 0.1]]))
    # KL(p || q) row 1: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75); row 2: 0
    expected = (0.5 * np.log(2) + 0.5 * np.log(2 / 3)) / 2
    assert prediction_kl(reference, model) == pytest.approx(expected)
    assert prediction_kl(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert prediction_kl(reference + 3.0, model - 1.0) == pytest.approx(expected)  # shifts
    with pytest.raises(CAHPError, match="logit shapes differ"):
        prediction_kl(reference, model[:1])


def test_log_softmax_is_stable_and_normalised():
    logits = np.array([[1000.0, 0.0], [-1000.0, -999.0]])
    out = log_softmax(logits)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0)


def test_predict_logits_keep_input_order_and_match_predict(tiny):
    from cahp_core.data import TASKS, tokenize_records

    texts = ["a", "a much longer sentence than the first", "mid length text"]
    records = [{"text": t, "label": 0} for t in texts]
    features = tokenize_records(records, tiny.tokenizer, TASKS["sst5"], 32)
    logits = predict_logits(tiny.model, tiny.tokenizer, features, batch_size=2)
    assert logits.shape == (3, 3)
    one_by_one = np.concatenate([predict_logits(tiny.model, tiny.tokenizer, [f]) for f in features])
    np.testing.assert_allclose(logits, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(predict(tiny.model, tiny.tokenizer, features), logits.argmax(-1))
