"""Prediction helpers: logits in input order and the KL divergence from a reference."""

import contextlib

import numpy as np
import pytest
import torch

from cahp_core.errors import CAHPError
from cahp_core.model.training import log_softmax, predict, predict_logits, prediction_kl


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


def _reference_logits(model, tokenizer, features, batch_size, keep=None):
    """The previous predict_logits, inline: a DataLoader over length-sorted examples."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    from cahp_core.model.masking import head_gates, keep_to_gates

    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    inputs = [{k: v for k, v in features[i].items() if k != "labels"} for i in order]
    loader = DataLoader(
        inputs, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer)
    )
    gates = head_gates(model, keep_to_gates(keep)) if keep is not None else contextlib.nullcontext()
    with torch.no_grad(), gates:
        chunks = [model(**batch).logits.numpy() for batch in loader]
    result = np.empty((len(features), chunks[0].shape[1]), np.float32)
    result[order] = np.concatenate(chunks)
    return result


def _features(tiny, n: int = 11):
    from cahp_core.data import TASKS, tokenize_records

    text = "a moving , funny and rather long film about nothing much at all"
    records = [{"text": text[: 1 + (23 * i) % len(text)], "label": i % 3} for i in range(n)]
    return tokenize_records(records, tiny.tokenizer, TASKS["sst5"], 32)


def test_eval_batches_are_sorted_padded_per_batch_and_keep_labels(tiny):
    from cahp_core.model.training import eval_batches

    features = _features(tiny)
    batches = eval_batches(tiny.tokenizer, features, batch_size=4)
    lengths = [len(features[i]["input_ids"]) for i in batches.order]
    assert lengths == sorted(lengths) and len(batches) == len(features)
    assert [b["input_ids"].shape[0] for b in batches.batches] == [4, 4, 3]
    widths = [b["input_ids"].shape[1] for b in batches.batches]
    ends = [lengths[3], lengths[7], lengths[10]]  # each batch padded to its own longest
    assert widths == ends
    np.testing.assert_array_equal(batches.labels, [f["labels"] for f in features])


def test_predict_logits_with_eval_batches_is_bit_identical_to_the_loader(tiny):
    """Collating once and reusing the batches (the task curve) changes no logit, masked or
    not, and evaluate's metrics are the same from features or from prepared batches."""
    from cahp_core.model.training import eval_batches, evaluate

    features = _features(tiny)
    keep = np.array([[True, False, True, False], [False, True, True, True]])
    batches = eval_batches(tiny.tokenizer, features, batch_size=4)
    for mask in (None, keep, None):  # reused batches: any order of passes
        want = _reference_logits(tiny.model, tiny.tokenizer, features, 4, mask)
        np.testing.assert_array_equal(
            predict_logits(tiny.model, tiny.tokenizer, batches, keep=mask), want
        )
        np.testing.assert_array_equal(
            predict_logits(tiny.model, tiny.tokenizer, features, batch_size=4, keep=mask), want
        )
    assert evaluate(tiny.model, tiny.tokenizer, batches, keep=keep) == evaluate(
        tiny.model, tiny.tokenizer, features, batch_size=4, keep=keep
    )
