"""The README.md model card and heads_kept.svg of pruned folders."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.model.loading import LoadedModel
from cahp_core.model.model_card import (
    CARD_FILE,
    FIGURE_FILE,
    NOT_RECORDED,
    model_card,
    write_model_card,
)
from cahp_core.model.pruning import card_head_map, read_keep, remove_heads, save_pruned
from cahp_core.runs.run_format import EXPORT_INFO

KEPT = [[0, 2, 3], []]


def _head_map(**extra) -> dict:
    return {"n_layers": 2, "n_heads": 4, "kept": KEPT, "heads_kept": 3, **extra}


def _full_info() -> dict:
    return {
        "model": "minilm-l6",
        "task": "sst5",
        "eval_split": "validation",
        "heads_total": 8,
        "heads_kept": 3,
        "kept_per_layer": [3, 0],
        "accuracy_full": 0.5123,
        "accuracy_masked": 0.4011,
        "macro_f1_masked": 0.3512,
        "accuracy_pruned": 0.4987,
        "macro_f1_pruned": 0.4765,
        "accuracy_int8": 0.4979,
        "n_eval": 1101,
        "params_full": 22_713_216,
        "params_pruned": 21_523_200,
        "size_full_bytes": 90_868_376,
        "degree": 4,
        "knee_curve": "quality",
        "rule": {"name": "mmr", "mmr_lambda": 0.3},
        "knee": 17,
        "consensus_seed": 1,
        "heads_by_seed": {"0": 40, "1": 42, "2": 41},
        "latency_ms": {"full": 12.5, "pruned": 9.25},
        "command": "cahp export runs/demo --degree 4 --out runs/demo/pruned",
    }


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:[.,]\d+)*", text))


def _weights(folder: Path, n_bytes: int) -> None:
    (folder / "model.safetensors").write_bytes(b"\0" * n_bytes)  # size is all the card reads


def test_card_lists_every_recorded_fact(tmp_path):
    _weights(tmp_path, 12_345)
    card = model_card(_head_map(cahp=_full_info()), tmp_path)
    assert card.startswith("---\nlibrary_name: transformers\n")
    front = card.split("---")[1]
    assert 'base_model: "sentence-transformers/all-MiniLM-L6-v2"' in front
    assert "pipeline_tag: text-classification" in front
    assert '- "pruning"' in front and '- "cahp"' in front
    assert "| 0 | 3 of 4 | 0, 2, 3 |" in card
    assert "| 1 | 0 of 4 | none (attention removed) |" in card
    assert f"![Heads kept per layer]({FIGURE_FILE})" in card
    assert "`sst5`" in card and "`validation` split" in card and "1,101 examples" in card
    for row in (
        "| Full model (all heads) | 0.5123 | not recorded |",
        "| Heads masked (before fine-tuning) | 0.4011 | 0.3512 |",
        "| Pruned, fine-tuned once | 0.4987 | 0.4765 |",
        "| Pruned, int8 ONNX | 0.4979 | not recorded |",
    ):
        assert row in card
    assert "CAHP, selection rule `mmr`" in card and "`mmr_lambda`:** 0.3" in card
    assert "**Degree:** 4" in card and "`quality`" in card and "**Knee:** 17" in card
    assert "**Consensus seed:** 1" in card and "(0, 1, 2):** 40 to 42" in card
    assert "22,713,216" in card and "21,523,200 (5.2 % smaller)" in card
    assert "90.87 MB (90,868,376 bytes)" in card and "estimated" not in card
    assert "0.01 MB (12,345 bytes)" in card  # measured on the folder's weight file
    assert "**Latency, full:** 12.5 ms" in card and "**Latency, pruned:** 9.25 ms" in card
    assert "```bash\ncahp export runs/demo --degree 4 --out runs/demo/pruned\n```" in card
    assert "load_pruned(" in card and "trust_remote_code=True" in card
    assert NOT_RECORDED not in card.replace("| not recorded |", "")


def test_missing_fields_say_not_recorded_and_invent_nothing(tmp_path):
    card = model_card(_head_map(), tmp_path)  # no extra fields, no weight files
    for line in (
        f"**Base model:** {NOT_RECORDED}",
        f"**Task:** {NOT_RECORDED}",
        f"**Method:** {NOT_RECORDED}",
        f"Accuracy: {NOT_RECORDED}.",
        f"Latency: {NOT_RECORDED}.",
        f"Command: {NOT_RECORDED}.",
        f"| Parameters | {NOT_RECORDED} | {NOT_RECORDED} |",
    ):
        assert line in card
    assert "base_model" not in card and "MB" not in card and "```bash" not in card
    # only layer indices, head counts (3 of 4, 0 of 4, 3 of 8) and 37.5 % remain
    assert _numbers(card) <= {"0", "1", "2", "3", "4", "8", "37.5"}


def test_params_full_alone_gives_an_estimated_size(tmp_path):
    card = model_card(_head_map(cahp={"params_full": 1000, "accuracy_pruned": None}), tmp_path)
    assert "0.00 MB (4,000 bytes) (estimated: parameters x 4 bytes, float32)" in card
    assert f"Accuracy: {NOT_RECORDED}." in card  # None is not a number


def test_baseline_and_manual_methods(tmp_path):
    gradient = _head_map(cahp={"method": "gradient", "heads_kept": 3, "normalise_per_layer": True})
    assert "top" not in model_card(gradient, tmp_path)
    assert "gradient-importance baseline" in model_card(gradient, tmp_path)
    assert "normalised per layer" in model_card(gradient, tmp_path)
    random = model_card(_head_map(cahp={"method": "random", "seed": 7}), tmp_path)
    assert "random baseline" in random and "**Seed:** 7" in random
    manual = model_card(_head_map(source="runs/ft"), tmp_path)
    assert "manual head list" in manual and "**Pruned from:** `runs/ft`" in manual


def test_figure_has_one_bar_per_layer(tmp_path):
    write_model_card(tmp_path, _head_map())
    root = ET.fromstring((tmp_path / FIGURE_FILE).read_text())
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.get("fill") == "#3b6ea8"]
    assert [float(b.get("height")) for b in bars] == [90.0, 0.0]


@pytest.mark.parametrize(
    "head_map",
    [
        {},
        {"n_heads": 4},
        {"n_heads": 4, "kept": [[0, 4]]},
        {"n_heads": 4, "kept": [[0]], "n_layers": 2},
        {"n_heads": "4", "kept": [[0]]},
    ],
)
def test_bad_head_map_is_a_clear_error(tmp_path, head_map):
    with pytest.raises(CAHPError, match="kept-head map"):
        model_card(head_map, tmp_path)


def test_write_needs_a_folder(tmp_path):
    with pytest.raises(CAHPError, match="not a folder"):
        write_model_card(tmp_path / "missing", _head_map())


def test_save_pruned_writes_the_card_and_rewriting_is_idempotent(tiny, tmp_path):
    keep = np.array([[True, False, True, True], [False] * 4])
    pruned = LoadedModel(remove_heads(copy.deepcopy(tiny.model), keep), tiny.tokenizer, "t")
    folder = save_pruned(pruned, keep, tmp_path / "pruned", extra={"task": "sst5"})
    card = (folder / CARD_FILE).read_text()
    weights = (folder / "model.safetensors").stat().st_size
    assert f"({weights:,} bytes)" in card and "| 1 | 0 of 4 |" in card
    assert "`sst5`" in card and (folder / FIGURE_FILE).is_file()
    head_map = card_head_map(read_keep(folder), json.loads((folder / EXPORT_INFO).read_text()))
    assert card == model_card(head_map, folder)  # nothing depends on the temp folder's name
    assert write_model_card(folder, head_map) == folder / CARD_FILE
    assert (folder / CARD_FILE).read_text() == card
    (folder / "model.onnx").write_bytes(b"\0" * 2048)
    write_model_card(folder, {**head_map, "cahp": {"task": "sst5", "accuracy_int8": 0.5}})
    card = (folder / CARD_FILE).read_text()
    assert "`model.onnx` 0.00 MB (2,048 bytes)" in card and "| Pruned, int8 ONNX | 0.5000 |" in card
    assert f"({weights:,} bytes)" in card  # ONNX files are not counted as weights
