import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.salience import gradient_salience, min_max


def _features(tokenizer, n=16):
    texts = [f"example number {i} is {'good' if i % 2 else 'bad'}" for i in range(n)]
    enc = tokenizer(texts)
    return [
        {"input_ids": ids, "attention_mask": m, "labels": i % 3}
        for i, (ids, m) in enumerate(zip(enc["input_ids"], enc["attention_mask"], strict=True))
    ]


def test_min_max():
    np.testing.assert_allclose(min_max(np.array([[2.0, 4.0], [3.0, 6.0]])), [[0, 0.5], [0.25, 1]])
    assert (min_max(np.full((2, 2), 3.0)) == 1).all()


def test_salience_shape_range_and_determinism(tiny):
    feats = _features(tiny.tokenizer)
    a = gradient_salience(
        tiny.model, tiny.tokenizer, feats, fraction=0.5, batch_size=4, show_progress=False
    )
    b = gradient_salience(
        tiny.model, tiny.tokenizer, feats, fraction=0.5, batch_size=4, show_progress=False
    )
    assert a.raw.shape == (2, 4)
    assert a.batches == 2 and a.examples == 8
    assert a.normalised.min() == 0 and a.normalised.max() == 1
    assert (a.raw > 0).all()
    np.testing.assert_array_equal(a.raw, b.raw)


def test_bad_fraction(tiny):
    with pytest.raises(CAHPError, match="fraction"):
        gradient_salience(tiny.model, tiny.tokenizer, _features(tiny.tokenizer), fraction=0)
