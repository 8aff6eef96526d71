import copy
import json

import numpy as np
import pytest
import torch

from cahp_core.errors import CAHPError
from cahp_core.model.heads import head_layout
from cahp_core.model.loading import count_parameters, load_model
from cahp_core.model.masking import head_gates, keep_to_gates
from cahp_core.model.pruning import load_pruned, read_keep, remove_heads, save_pruned


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


# uneven across layers, layer 1 left with zero heads
UNEVEN = np.array([[True, False, True, False], [False, False, False, False]])


def _masked_and_pruned(tiny, tiny_batch, keep):
    masked_model = tiny.model
    with head_gates(masked_model, keep_to_gates(keep)):
        masked = _logits(masked_model, tiny_batch)
    pruned_model = remove_heads(copy.deepcopy(tiny.model), keep)
    return masked, _logits(pruned_model, tiny_batch), pruned_model


@pytest.mark.parametrize(
    "keep",
    [
        UNEVEN,
        np.array([[True, True, True, False], [True, False, False, False]]),
        np.array([[False] * 4, [True] * 4]),
    ],
)
def test_pruned_equals_masked(tiny, tiny_batch, keep):
    masked, pruned, model = _masked_and_pruned(tiny, tiny_batch, keep)
    torch.testing.assert_close(pruned, masked, atol=1e-5, rtol=0)
    assert head_layout(model).heads_per_layer == tuple(int(n) for n in keep.sum(1))


def test_removing_a_head_changes_the_logits(tiny, tiny_batch):
    base = _logits(tiny.model, tiny_batch)
    keep = np.ones((2, 4), dtype=bool)
    keep[0, 1] = False
    pruned = _logits(remove_heads(copy.deepcopy(tiny.model), keep), tiny_batch)
    assert not torch.allclose(base, pruned)


def test_parameter_count_drops_by_exactly_the_removed_heads(tiny):
    hidden, head_dim = 32, 8
    per_head = 3 * (hidden * head_dim + head_dim) + hidden * head_dim  # q,k,v rows + o columns
    before = count_parameters(tiny.model)
    model = remove_heads(copy.deepcopy(tiny.model), UNEVEN)
    removed = int((~UNEVEN).sum())
    assert before - count_parameters(model) == removed * per_head


def test_save_and_reload_matches_masked_original(tiny, tiny_batch, tmp_path):
    masked, _, pruned_model = _masked_and_pruned(tiny, tiny_batch, UNEVEN)
    pruned = copy.copy(tiny)
    pruned.model = pruned_model
    folder = save_pruned(pruned, UNEVEN, tmp_path / "pruned")
    assert not (folder / "kept_heads.json").exists()  # recorded once, in config.json
    assert list(folder.glob("*.safetensors"))
    assert not list(folder.glob("*.bin"))
    assert np.array_equal(read_keep(folder), UNEVEN)
    reloaded = load_pruned(folder)
    torch.testing.assert_close(_logits(reloaded.model, tiny_batch), masked, atol=1e-5, rtol=0)
    # load_model recognises a pruned folder too
    again = load_model(folder, num_labels=3)
    torch.testing.assert_close(_logits(again.model, tiny_batch), masked, atol=1e-5, rtol=0)


def test_pruned_model_trains(tiny, tiny_batch):
    model = remove_heads(copy.deepcopy(tiny.model), UNEVEN).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(**tiny_batch, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    opt.step()
    assert model.base_model.encoder.layer[0].attention.self.query.weight.grad is not None


def test_bad_keep_shape_is_a_clear_error(tiny):
    with pytest.raises(CAHPError, match="shape"):
        remove_heads(copy.deepcopy(tiny.model), np.ones((3, 4), dtype=bool))


def test_a_folder_exported_before_the_map_moved_into_config_still_loads(tiny, tiny_batch, tmp_path):
    """Folders from earlier versions kept the map in kept_heads.json as well; one whose
    config.json lacks it is read from that file."""
    masked, _, pruned_model = _masked_and_pruned(tiny, tiny_batch, UNEVEN)
    pruned = copy.copy(tiny)
    pruned.model = pruned_model
    folder = save_pruned(pruned, UNEVEN, tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    kept = config.pop("cahp_kept_heads")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "kept_heads.json").write_text(json.dumps({"n_heads": 4, "kept": kept}))
    assert np.array_equal(read_keep(folder), UNEVEN)
    reloaded = load_model(folder, num_labels=3)
    torch.testing.assert_close(_logits(reloaded.model, tiny_batch), masked, atol=1e-5, rtol=0)
