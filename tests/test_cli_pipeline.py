"""`cahp run`, `cahp export` and `cahp baseline` end to end on the tiny model (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cahp_core.cli import main
from cahp_core.errors import CAHPError
from cahp_core.method.baselines import gradient_selection
from cahp_core.model.pruning import load_pruned, read_keep
from cahp_core.runs.results import RunView
from cahp_core.testing import save_tiny_model

SUMMARY_KEYS = {
    "heads_total",
    "heads_kept",
    "kept_per_layer",
    "knee",
    "degree",
    "knee_fallback",
    "knee_curve",
    "knee_by_seed",
    "heads_by_seed",
    "knee_spread",
    "consensus_seed",
    "quality_knee",
    "performance_knee",
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


def test_run_diagnoses_its_premise_and_diagnose_reads_it_back(demo, capsys):
    _, run, _ = demo
    saved = json.loads((run / "diagnostics.json").read_text())
    assert set(saved["mean_agreement"]) == {"jm", "js"}
    assert all(-1 <= v <= 1 for v in saved["mean_agreement"].values())
    assert -1 <= saved["shuffled_correlation"] <= 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["diagnostic_warnings"] == saved["warnings"]
    assert main(["diagnose", str(run)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1]) == saved  # computed once, then read
    assert "split-half agreement (adjusted Rand, 1 = identical): JM" in captured.err
    assert RunView(run).diagnostics == saved


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
    assert first.startswith(f"degree {degree}, quality knee: k=")
    assert "consensus of 5" in first
    info = json.loads(captured.out.splitlines()[-1])
    assert info["degree"] == degree
    assert read_keep(out).sum() == info["heads_kept"]
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert stages["signatures"] == manifest["stages"]["signatures"]


def test_export_int8_measures_its_accuracy_and_the_card_holds_it(demo, capsys):
    """--quantize int8 writes the int8 graph beside the fused one, measures its accuracy
    change and the batch-1 latency, and the model card shows them with its command."""
    base, run, _ = demo
    out = base / "export-int8"
    assert main(["export", str(run), "--degree", "3", "--out", str(out), "--quantize", "int8"]) == 0
    captured = capsys.readouterr()
    assert (
        "int8 ONNX accuracy" in captured.err and "points vs the pruned fp32 model" in captured.err
    )
    info = json.loads((out / "cahp_export.json").read_text())
    assert json.loads(captured.out.splitlines()[-1])["accuracy_int8"] == info["accuracy_int8"]
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert info["onnx"]["attention_fused"] >= 1
    latency = info["latency_ms"]
    assert {"full_pytorch", "pruned_pytorch", "pruned_fp32_onnx", "pruned_int8_onnx"} <= set(
        latency
    )
    assert latency["batch"] == 1 and all(
        latency[k] > 0 for k in ("full_pytorch", "pruned_int8_onnx")
    )
    card = (out / "README.md").read_text()
    assert "| pruned, ONNX Runtime (fused, int8) |" in card and "Pruned, int8 ONNX" in card
    assert f"--out {out} --quantize int8" in card  # the command that reproduces it
    with pytest.raises(SystemExit):  # argparse refuses other quantizations at once
        main(["export", str(run), "--degree", "3", "--out", str(out), "--quantize", "int4"])


def test_baselines(demo, capsys):
    base, run, _ = demo
    for method in ("gradient", "random"):
        out = base / f"baseline-{method}"
        assert (
            main(["baseline", str(run), "--method", method, "--heads", "5", "--out", str(out)]) == 0
        )
        info = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert info["heads_kept"] == 5 and info["method"] == method
        assert read_keep(out).sum() == 5
    raw_out = base / "baseline-gradient-raw"
    args = ["baseline", str(run), "--method", "gradient", "--heads", "5", "--no-layer-norm"]
    assert main([*args, "--out", str(raw_out)]) == 0
    info = json.loads((raw_out / "cahp_export.json").read_text())
    assert info["normalise_per_layer"] is False and info["heads_kept"] == 5
    salience = json.loads((run / "salience.json").read_text())
    expected = gradient_selection(np.array(salience["raw"]), 5, normalise_per_layer=False)
    np.testing.assert_array_equal(read_keep(raw_out), expected)


def test_run_export_and_the_dashboard_view_agree_for_every_degree_and_curve(demo, capsys):
    """`cahp run` (selection.json), `cahp export --degree D [--knee-curve C]` (kept_heads of the
    folder) and RunView.selector (what every dashboard page draws) keep the same heads."""
    base, run, _ = demo
    view = RunView(run)
    selection = json.loads((run / "selection.json").read_text())
    at_run_degree = view.selector(3, "quality")
    assert selection["kept"] == at_run_degree.support_.astype(int).tolist()
    assert selection["knee"] == at_run_degree.knee_
    summary = json.loads((run / "summary.json").read_text())
    assert summary["heads_by_seed"] == {str(s): n for s, n in at_run_degree.heads_by_seed_.items()}
    points = len(view.task_curve) // 3 - 1  # cahp, gradient, random; minus the full model
    for curve in ("quality", "performance"):
        for degree in range(2, points):
            selector = view.selector(degree, curve)
            assert selector.knee_curve == curve and selector.degree == degree
        for degree in (2, 5):
            out = base / f"agree-{curve}-{degree}"
            args = ["export", str(run), "--degree", str(degree), "--knee-curve", curve]
            assert main([*args, "--out", str(out)]) == 0
            info = json.loads(capsys.readouterr().out.splitlines()[-1])
            selector = view.selector(degree, curve)
            assert info["knee"] == selector.knee_ and info["knee_curve"] == curve
            np.testing.assert_array_equal(read_keep(out), selector.support_)


@pytest.mark.parametrize(
    ("rule", "extra"),
    [("salience-radius", ["--radius-quantile", "0.2"]), ("mmr", ["--mmr-lambda", "0.5"])],
)
def test_export_with_another_selection_rule_keeps_the_knee_count(demo, capsys, rule, extra):
    """`cahp export --rule R` keeps as many heads as the paper's rule at the knee (the knee
    says how many, the rule which), the same heads the dashboard's selector shows."""
    base, run, _ = demo
    out = base / f"rule-{rule}"
    assert (
        main(["export", str(run), "--degree", "3", "--rule", rule, *extra, "--out", str(out)]) == 0
    )
    info = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert info["rule"]["name"] == rule
    view = RunView(run)
    paper = view.selector(3)
    params = {"radius_quantile": 0.2} if rule == "salience-radius" else {"mmr_lambda": 0.5}
    chosen = view.selector(3, rule={"rule": rule, **params})
    assert chosen.rule == rule and info["knee"] == paper.knee_
    assert int(read_keep(out).sum()) == paper.n_heads_kept_
    np.testing.assert_array_equal(read_keep(out), chosen.support_)
    assert json.loads((out / "cahp_export.json").read_text())["rule"] == {"name": rule, **params}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mmr-lambda", "2"], "--mmr-lambda must be in [0, 1]; got 2.0"),
        (["--radius-quantile", "1"], "--radius-quantile must be in [0, 1); got 1.0"),
        (["--quality", "silhouette"], "unknown --quality 'silhouette'; choose one of mss"),
        (["--knee-curve", "accuracy"], "unknown --knee-curve 'accuracy'; choose one of quality"),
        (["--seeds", "0"], "--seeds must be a whole number >= 1"),
        (["--degree", "1"], "degree 1 has no knee (a degree-1 fit is a straight line)"),
    ],
)
def test_bad_knee_options_are_one_line_errors(tmp_path, capsys, extra, message):
    args = ["run", "--model", "minilm-l6", "--task", "sst5", "--out", str(tmp_path / "r")]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_export_degree_out_of_range_and_without_a_knee(demo, capsys):
    base, run, _ = demo
    for degree in ("1", "40"):
        out = base / f"bad-{degree}"
        assert main(["export", str(run), "--degree", degree, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "choose a degree from 2" in err
        assert not out.exists()


def test_a_run_from_before_the_seed_sweep_says_how_to_recluster_and_recluster_works(
    demo, capsys, tmp_path
):
    import shutil

    from cahp_core.atomic import load_npz, write_npz_atomic
    from cahp_core.method.clustering import clusterings_from_arrays

    _, run, args = demo
    old = tmp_path / "old"
    shutil.copytree(run, old)
    # what an earlier version wrote: one clustering, no seed sweep settings in the manifest
    first = clusterings_from_arrays(load_npz(old / "clustering.npz"))[0]
    write_npz_atomic(old / "clustering.npz", **first.to_arrays())
    manifest = json.loads((old / "manifest.json").read_text())
    for name in ("quality", "n_seeds", "knee_curve", "knee_shape"):
        manifest["config"].pop(name)
    (old / "manifest.json").write_text(json.dumps(manifest))
    resume = [*args[: args.index("--out")], "--out", str(old)]
    assert main(resume) == 2
    err = capsys.readouterr().err
    assert f"re-cluster it with `cahp recluster {old}`" in err and err.count("\n") == 1
    with pytest.raises(CAHPError, match="cahp recluster"):
        _ = RunView(old).clusterings  # the dashboard shows the same advice
    assert main(["recluster", str(old), "--seeds", "2"]) == 0
    summary = json.loads((old / "summary.json").read_text())
    assert len(summary["heads_by_seed"]) == 2 and summary["quality"] == "mss"
    assert len(RunView(old).clusterings) == 2
    stages = json.loads((old / "manifest.json").read_text())["stages"]
    assert stages["finetune"] == manifest["stages"]["finetune"]  # the model is kept


def test_a_rule_without_distances_is_a_one_line_error(demo, capsys, tmp_path):
    import shutil

    base, run, _ = demo
    copy = tmp_path / "no-distances"
    shutil.copytree(run, copy)
    (copy / "distances.npz").unlink()
    out = tmp_path / "out"
    assert main(["export", str(copy), "--degree", "3", "--rule", "mmr", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the mmr rule needs the run's head distances") and "\n" not in err
    assert not out.exists()
