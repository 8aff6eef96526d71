"""`cahp run`, `cahp export` and `cahp baseline` end to end on the tiny model (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cahp_core.baselines import gradient_selection
from cahp_core.cli import main
from cahp_core.pruning import load_pruned, read_keep
from cahp_core.testing import save_tiny_model

SUMMARY_KEYS = {
    "heads_total",
    "heads_kept",
    "kept_per_layer",
    "knee",
    "degree",
    "knee_fallback",
    "accuracy_full",
    "accuracy_masked",
    "accuracy_pruned",
    "params_full",
    "params_pruned",
    "stage_seconds",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    model = save_tiny_model(base / "tiny")
    run = base / "demo"
    args = [
        "run",
        "--model",
        str(model),
        "--task",
        "sst5",
        "--max-train",
        "96",
        "--max-eval",
        "48",
        "--epochs",
        "1",
        "--prune-epochs",
        "1",
        "--degree",
        "3",
        "--device",
        "cpu",
        "--out",
        str(run),
    ]
    assert main(args) == 0
    return base, run, args


def test_run_writes_summary_and_a_reloadable_pruned_model(demo):
    _, run, _ = demo
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["heads_total"] == 12
    assert 3 <= summary["heads_kept"] < 12
    assert all(n >= 1 for n in summary["kept_per_layer"])
    assert summary["params_pruned"] < summary["params_full"]
    assert set(summary["stage_seconds"]) >= {
        "finetune",
        "signatures",
        "salience",
        "clustering",
        "export",
    }
    pruned = load_pruned(run / "pruned")
    assert pruned.model.config.num_labels == 5
    for name in (
        "signatures.safetensors",
        "salience.json",
        "clustering.npz",
        "distances.npz",
        "task_curve.json",
        "selection.json",
        "graph.json",
        "manifest.json",
    ):
        assert (run / name).is_file(), name


def test_rerun_resumes_everything(demo, capsys):
    _, run, args = demo
    before = json.loads((run / "manifest.json").read_text())["stages"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "[signatures] reused from the run folder" in err
    assert "[finetune] reused from the run folder" in err
    after = json.loads((run / "manifest.json").read_text())["stages"]
    assert after["signatures"]["finished"] == before["signatures"]["finished"]


@pytest.mark.parametrize("degree", [2, 4])
def test_export_other_degree_reuses_cached_stages(demo, capsys, degree):
    base, run, _ = demo
    manifest = json.loads((run / "manifest.json").read_text())
    out = base / f"export-d{degree}"
    assert main(["export", str(run), "--degree", str(degree), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "signatures" not in captured.err  # no signature pass
    first = captured.out.splitlines()[0]
    assert first.startswith(f"degree {degree}: knee k=")
    info = json.loads(captured.out.splitlines()[-1])
    assert info["degree"] == degree
    assert (out / "kept_heads.json").is_file()
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert stages["signatures"] == manifest["stages"]["signatures"]


def test_baselines(demo, capsys):
    base, run, _ = demo
    for method in ("gradient", "random"):
        out = base / f"baseline-{method}"
        assert (
            main(["baseline", str(run), "--method", method, "--heads", "5", "--out", str(out)]) == 0
        )
        info = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert info["heads_kept"] == 5 and info["method"] == method
        assert (out / "kept_heads.json").is_file()
    raw_out = base / "baseline-gradient-raw"
    args = ["baseline", str(run), "--method", "gradient", "--heads", "5", "--no-layer-norm"]
    assert main([*args, "--out", str(raw_out)]) == 0
    info = json.loads((raw_out / "cahp_export.json").read_text())
    assert info["normalise_per_layer"] is False and info["heads_kept"] == 5
    salience = json.loads((run / "salience.json").read_text())
    expected = gradient_selection(np.array(salience["raw"]), 5, normalise_per_layer=False)
    np.testing.assert_array_equal(read_keep(raw_out), expected)
