"""`cahp run --config run.json`: a saved run's settings launch it again (the Run page launches
every run this way)."""

from __future__ import annotations

import json

import pytest

from cahp_core.cli import main
from cahp_core.errors import CAHPError
from cahp_core.runs.config import PRESETS, file_config, read_config_file
from cahp_core.runs.run_format import MANIFEST
from cahp_core.testing import save_tiny_model, tiny_run_config


def _write(path, values) -> str:
    path.write_text(json.dumps(values))
    return str(path)


def test_layers_preset_then_file_then_flags(tmp_path):
    path = _write(tmp_path / "run.json", {"preset": "quick", "degree": 4, "max_train": None})
    config = file_config(path, None, seed=7)
    assert config.preset == "quick" and config.degree == 4 and config.seed == 7
    assert config.max_train == PRESETS["quick"]["max_train"]  # null keeps the preset's value
    assert file_config(path, "paper").max_train is None  # --preset wins over the file's
    assert file_config(path, None, degree=5).degree == 5  # a flag wins over the file
    assert file_config(None, None).preset == "paper"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"degre": 4}', r"unknown run setting\(s\) degre; known: model, task"),
        ("[4]", "must hold a JSON object of run settings"),
        ("{degree: 4", "cannot read the run config"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, text, match):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(CAHPError, match=match):
        read_config_file(path)


def test_a_bad_value_in_the_file_is_the_usual_one_line_error(tmp_path, capsys):
    path = _write(tmp_path / "run.json", {"task": "sst5", "degree": 1})
    assert main(["run", "--config", path, "--out", str(tmp_path / "run")]) != 0
    error = capsys.readouterr().err.strip()
    assert "degree 1 has no knee" in error and "\n" not in error
    assert not (tmp_path / "run").exists()


def test_run_needs_a_task_or_a_config(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run")]) != 0
    assert "pass --task" in capsys.readouterr().err


def test_a_saved_run_config_launches_the_same_run(tmp_path):
    model = save_tiny_model(tmp_path / "tiny")
    settings = tiny_run_config(model).to_dict()
    settings.pop("preset")  # "tiny" is a test fixture's label, not a preset
    path = _write(tmp_path / "run.json", settings)
    assert main(["run", "--config", path, "--out", str(tmp_path / "run")]) == 0
    recorded = json.loads(MANIFEST.path(tmp_path / "run").read_text())["config"]
    assert {k: recorded[k] for k in settings} == settings
    assert recorded["preset"] == "paper"
