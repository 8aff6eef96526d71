import numpy as np
import pytest
import torch

from cahp_core.errors import CAHPError
from cahp_core.model.masking import head_gates, keep_to_gates


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_gates_of_ones_are_bit_identical(tiny, tiny_batch):
    base = _logits(tiny.model, tiny_batch)
    with head_gates(tiny.model, torch.ones(2, 4)):
        gated = _logits(tiny.model, tiny_batch)
    assert torch.equal(base, gated)


def test_zero_gate_changes_logits_and_hooks_are_removed(tiny, tiny_batch):
    base = _logits(tiny.model, tiny_batch)
    gates = torch.ones(2, 4)
    gates[1, 2] = 0.0
    with head_gates(tiny.model, gates):
        masked = _logits(tiny.model, tiny_batch)
    assert not torch.allclose(base, masked)
    assert torch.equal(_logits(tiny.model, tiny_batch), base)


def test_hooks_removed_even_on_error(tiny, tiny_batch):
    base = _logits(tiny.model, tiny_batch)
    with pytest.raises(RuntimeError), head_gates(tiny.model, torch.zeros(2, 4)):
        raise RuntimeError("boom")
    assert torch.equal(_logits(tiny.model, tiny_batch), base)


def test_gradients_reach_the_gates(tiny, tiny_batch):
    gates = torch.ones(2, 4, requires_grad=True)
    with head_gates(tiny.model, gates):
        out = tiny.model(**tiny_batch, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    assert gates.grad is not None
    assert gates.grad.shape == (2, 4)
    assert gates.grad.abs().sum() > 0


def test_wrong_gate_shape_is_a_clear_error(tiny):
    with (
        pytest.raises(CAHPError, match="2 layers x 4 heads"),
        head_gates(tiny.model, torch.ones(3, 4)),
    ):
        pass


def test_keep_to_gates():
    keep = np.array([[True, False], [False, True]])
    assert keep_to_gates(keep).tolist() == [[1.0, 0.0], [0.0, 1.0]]
