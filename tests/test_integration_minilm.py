"""Integration tier: the real minilm-l6 on a small SST-5 subset, offline, through the CLI."""

from __future__ import annotations

import json

import pytest

from cahp_core.cli import main

pytestmark = pytest.mark.integration


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_finetune_prune_and_evaluate_pruned_equals_masked(tmp_path, capsys):
    model_dir, pruned_dir = tmp_path / "sst5", tmp_path / "sst5-pruned"
    spec = "0:0,1,2;3:5;5:*"  # uneven, and layer 5 left with no head at all
    assert (
        main(
            [
                "finetune",
                "--model",
                "minilm-l6",
                "--task",
                "sst5",
                "--max-train",
                "128",
                "--max-eval",
                "64",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--out",
                str(model_dir),
            ]
        )
        == 0
    )
    assert (model_dir / "model.safetensors").is_file()
    capsys.readouterr()
    common = ["--task", "sst5", "--max-eval", "64", "--device", "cpu", "--json"]
    assert main(["evaluate", str(model_dir), *common, "--mask", spec]) == 0
    masked = _json_out(capsys)
    assert main(["prune", str(model_dir), "--remove", spec, "--out", str(pruned_dir)]) == 0
    pruned_info = _json_out(capsys)
    assert pruned_info["heads_kept"] == 72 - 3 - 1 - 12
    assert pruned_info["params_pruned"] < pruned_info["params_full"]
    assert main(["evaluate", str(pruned_dir), *common]) == 0
    pruned = _json_out(capsys)
    assert pruned == masked
    assert main(["evaluate", str(model_dir), *common]) == 0
    full = _json_out(capsys)
    assert full["n"] == masked["n"] == 64
