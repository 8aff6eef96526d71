import numpy as np
import pytest
import torch

from cahp_core.errors import CAHPError
from cahp_core.method.signatures import (
    HeadSignatures,
    StreamingMoments,
    compute_signatures,
    crop_and_resize,
)


def _features(tokenizer, texts, labels):
    enc = tokenizer(texts)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)
    ]


def test_streaming_moments_equal_batch_moments():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(103, 4, 5))
    labels = rng.integers(0, 3, size=103)
    moments = StreamingMoments(3, (4, 5))
    for start in range(0, 103, 17):  # uneven chunks
        moments.update(values[start : start + 17], labels[start : start + 17])
    for c in range(3):
        members = values[labels == c]
        np.testing.assert_allclose(moments.mean[c], members.mean(0), atol=1e-12)
        np.testing.assert_allclose(moments.variance()[c], members.var(0), atol=1e-12)
        assert moments.count[c] == len(members)


def test_crop_ignores_padding_left_or_right():
    torch.manual_seed(0)
    real = torch.rand(1, 3, 4, 4)  # one example, 3 maps, 4 real tokens
    right = torch.zeros(1, 3, 7, 7)
    right[:, :, :4, :4] = real
    left = torch.zeros(1, 3, 7, 7)
    left[:, :, 3:, 3:] = real
    ref = crop_and_resize(real, torch.ones(1, 4, dtype=torch.long), grid=8)
    got_right = crop_and_resize(right, torch.tensor([[1, 1, 1, 1, 0, 0, 0]]), grid=8)
    got_left = crop_and_resize(left, torch.tensor([[0, 0, 0, 1, 1, 1, 1]]), grid=8)
    torch.testing.assert_close(got_right, ref)
    torch.testing.assert_close(got_left, ref)
    assert ref.shape == (1, 3, 64)


def test_padding_never_enters_a_signature(tiny):
    """The same example alone, or padded next to a much longer one, gives the same signature."""
    short = "a fine film"
    long = "a long and winding review that goes on and on about many many things"
    alone = compute_signatures(
        tiny.model,
        tiny.tokenizer,
        _features(tiny.tokenizer, [short], [0]),
        3,
        grid=8,
        batch_size=1,
        show_progress=False,
    )
    # batch of two: the short one gets padded; class 1 holds the long one and is ignored here
    padded = compute_signatures(
        tiny.model,
        tiny.tokenizer,
        _features(tiny.tokenizer, [short, long], [0, 1]),
        3,
        grid=8,
        batch_size=2,
        show_progress=False,
    )
    np.testing.assert_allclose(padded.mean[:, :, 0], alone.mean[:, :, 0], atol=1e-6)
    assert padded.count.tolist() == [1, 1, 0]


def test_signature_shapes_and_roundtrip(tiny):
    feats = _features(tiny.tokenizer, ["good", "bad film", "ok ok ok", "fine"], [0, 1, 2, 0])
    sig = compute_signatures(tiny.model, tiny.tokenizer, feats, 3, grid=4, show_progress=False)
    assert sig.mean.shape == (2, 4, 3, 16) and sig.var.shape == (2, 4, 3, 16)
    assert (sig.var >= 0).all()
    assert sig.count.tolist() == [2, 1, 1]
    again = HeadSignatures.from_arrays(sig.to_arrays())
    np.testing.assert_array_equal(again.mean, sig.mean)


def test_empty_features_is_a_clear_error(tiny):
    with pytest.raises(CAHPError, match="no examples"):
        compute_signatures(tiny.model, tiny.tokenizer, [], 3, show_progress=False)
