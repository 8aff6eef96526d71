"""Pruned folders load with plain transformers (``trust_remote_code=True``), without cahp_core."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from cahp_core.errors import CAHPError, UnsupportedArchitectureError
from cahp_core.model.heads import SUPPORTED_MODEL_TYPES
from cahp_core.model.loading import LoadedModel, load_model
from cahp_core.model.pruning import load_pruned, remove_heads, save_pruned
from cahp_core.model.remote_code import MODELING_FILE, REMOTE_CLASSES, auto_map
from cahp_core.model.remote_code import modeling_cahp_pruned as remote

TEXTS = ["a great and moving film", "dull", "the plot makes no sense at all , sadly"]
UNEVEN = np.array([[True, False, True, True], [False, False, False, False]])  # 3 heads, then 0

# Runs in a fresh interpreter: cahp_core must not be importable, transformers does the rest.
PLAIN_LOAD = """
import importlib.abc, json, sys

class NoCAHP(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cahp_core" or name.startswith("cahp_core."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, NoCAHP())
try:
    import cahp_core  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("cahp_core is still importable")

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

folder, texts, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(folder)
batch = tokenizer(texts, padding=True, return_tensors="pt")
assert (batch["attention_mask"] == 0).any(), "the batch must include padding"
results = {}
for impl in ("default", "eager", "sdpa"):
    kwargs = {} if impl == "default" else {"attn_implementation": impl}
    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, trust_remote_code=True, output_loading_info=True, **kwargs
    )
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    results[impl] = {
        "class": type(model).__name__,
        "attn": model.config._attn_implementation,
        "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(info["unexpected_keys"]),
        "mismatched": sorted(str(k) for k in info["mismatched_keys"]),
        "logits": logits.tolist(),
    }
json.dump(results, open(out, "w"))
"""


def _spread(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Larger random weights, so logits differ clearly between inputs and heads."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model


def _prune_and_save(loaded: LoadedModel, keep: np.ndarray, out: Path) -> Path:
    pruned = LoadedModel(remove_heads(copy.deepcopy(loaded.model), keep), loaded.tokenizer, "t")
    return save_pruned(pruned, keep, out, extra={"source": "tiny"})


def _reference_logits(folder: Path, attn_implementation: str = "eager") -> np.ndarray:
    loaded = load_pruned(folder, attn_implementation=attn_implementation)
    batch = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**batch).logits.numpy()


def _plain_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HOME=str(tmp_path / "hf"),  # the copied modeling code goes here, not to ~/.cache
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    return env


def test_pruned_folder_loads_with_plain_transformers(tiny, tmp_path):
    _spread(tiny.model)
    folder = _prune_and_save(tiny, UNEVEN, tmp_path / "pruned")
    script, out = tmp_path / "plain_load.py", tmp_path / "logits.json"
    script.write_text(PLAIN_LOAD)
    done = subprocess.run(
        [sys.executable, str(script), str(folder), json.dumps(TEXTS), str(out)],
        cwd=tmp_path,
        env=_plain_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    expected = _reference_logits(folder)
    assert np.ptp(expected, axis=0).max() > 1e-3  # inputs give different logits
    assert results["eager"]["attn"] == "eager"
    for impl, result in results.items():
        assert result["class"] == "CAHPBertForSequenceClassification", impl
        assert not (result["missing"] or result["unexpected"] or result["mismatched"]), result
        np.testing.assert_allclose(np.array(result["logits"]), expected, atol=1e-5, err_msg=impl)
    np.testing.assert_allclose(_reference_logits(folder, "sdpa"), expected, atol=1e-5)


def test_saved_folder_names_its_remote_code(tiny, tmp_path):
    folder = _prune_and_save(tiny, UNEVEN, tmp_path / "pruned")
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoModelForSequenceClassification": (
            "modeling_cahp_pruned.CAHPBertForSequenceClassification"
        )
    }
    assert config["cahp_kept_heads"] == [[0, 2, 3], []]  # the one record of the map
    assert (folder / MODELING_FILE.name).read_bytes() == MODELING_FILE.read_bytes()
    # cahp_core's own loaders ignore auto_map (no remote code is run)
    for loaded in (load_pruned(folder), load_model(folder, num_labels=3)):
        assert type(loaded.model).__name__ == "BertForSequenceClassification"


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "camembert", "electra"])
def test_other_types_save_and_load_with_their_class(tiny, tmp_path, model_type):
    config = AutoConfig.for_model(
        model_type,
        vocab_size=tiny.tokenizer.vocab_size,
        hidden_size=32,
        embedding_size=32,  # electra only
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=tiny.tokenizer.pad_token_id,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = _spread(AutoModelForSequenceClassification.from_config(config).eval())
    keep = np.array([[True] * 4, [False, True, False, False], [False] * 4])
    folder = _prune_and_save(LoadedModel(model, tiny.tokenizer, "m"), keep, tmp_path / "m")
    saved = json.loads((folder / "config.json").read_text())
    name = REMOTE_CLASSES[model_type]
    assert saved["auto_map"]["AutoModelForSequenceClassification"] == f"modeling_cahp_pruned.{name}"
    plain = getattr(remote, name).from_pretrained(folder).eval()
    batch = tiny.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = plain(**batch).logits.numpy()
    np.testing.assert_allclose(logits, _reference_logits(folder), atol=1e-5)


def test_every_supported_type_has_a_remote_class():
    assert set(REMOTE_CLASSES) == set(SUPPORTED_MODEL_TYPES)
    for model_type, name in REMOTE_CLASSES.items():
        cls = getattr(remote, name)
        assert cls.__mro__[1].__name__.endswith("ForSequenceClassification")
        assert cls.__mro__[1].config_class.model_type == model_type
        assert auto_map(model_type)["AutoModelForSequenceClassification"].endswith(f".{name}")
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        auto_map("gpt2")


def test_modeling_file_imports_only_torch_transformers_and_stdlib():
    tree = ast.parse(MODELING_FILE.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the file is copied alone"
            roots.add(node.module.split(".")[0])
    assert roots - {"torch", "transformers"} <= set(sys.stdlib_module_names)


def test_modeling_file_ships_in_the_package():
    from setuptools import find_packages

    root = Path(__file__).resolve().parents[1]
    assert "cahp_core.model.remote_code" in find_packages(str(root), include=["cahp_core*"])


def test_plain_class_keeps_all_heads_without_a_head_map(tiny):
    model = remote.CAHPBertForSequenceClassification(tiny.model.config)
    assert model.bert.encoder.layer[0].attention.self.query.out_features == 32


def test_plain_class_rejects_a_bad_head_map(tiny):
    config = copy.deepcopy(tiny.model.config)
    config.cahp_kept_heads = [[0, 9], []]
    with pytest.raises(ValueError, match="outside 0..3"):
        remote.CAHPBertForSequenceClassification(config)
    config.cahp_kept_heads = [[0]]
    with pytest.raises(ValueError, match="each of the 2 layers"):
        remote.CAHPBertForSequenceClassification(config)


def test_save_pruned_refuses_a_map_that_does_not_match_the_model(tiny, tmp_path):
    with pytest.raises(CAHPError, match="remove_heads"):
        save_pruned(tiny, UNEVEN, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
