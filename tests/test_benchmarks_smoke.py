"""The benchmark scripts' --smoke modes, so they cannot silently rot (tiny subsets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

pytestmark = pytest.mark.integration


def _smoke(script: str, timeout: int = 600) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"],
        cwd=ROOT,
        check=True,
        timeout=timeout,
        capture_output=True,
    )


def test_overhead_smoke():
    _smoke("overhead.py")
    result = json.loads((RESULTS / "overhead.smoke.json").read_text())
    assert result["signature_vs_forward"] > 0 and result["salience_vs_fwd_bwd"] > 0
    assert result["heads"] == 8 and result["degree_change_s"] >= 0


def test_deployment_smoke():
    _smoke("deployment.py")
    records = json.loads((RESULTS / "deployment.smoke.json").read_text())
    assert {(r["runtime"], r["batch"]) for r in records} == {
        ("pytorch", 1),
        ("pytorch", 32),
        ("onnxruntime", 1),
        ("onnxruntime", 32),
    }
    assert all(r["params_pruned"] < r["params_full"] and r["ideal_speedup"] > 1 for r in records)


def test_quality_smoke(shared_data):
    _smoke("quality.py", timeout=900)
    records = json.loads((RESULTS / "quality.smoke.json").read_text())
    methods = {r["method"] for r in records}
    assert {"cahp", "gradient", "random", "full"} <= methods
    assert {r["task"] for r in records} == {"sst5", "mnli"}
    for r in records:
        assert 0 <= r["accuracy"] <= 1
    cahp = {(r["task"], r["budget_frac"]): r["heads"] for r in records if r["method"] == "cahp"}
    for r in records:
        if r["method"] in ("gradient", "random"):
            assert r["heads"] == cahp[(r["task"], r["budget_frac"])]  # same budget
    proximity = json.loads((RESULTS / "proximity.smoke.json").read_text())
    assert all(0 <= p["mean_depth"] <= 1 for p in proximity)


KNEE_FIELDS = {
    "task",
    "knee_curve",
    "quality",
    "method",
    "seed",
    "degree",
    "knee_k",
    "heads_kept",
    "fallback",
    "reason",
}


def test_knee_smoke(shared_data):
    _smoke("knee.py", timeout=900)
    records = json.loads((RESULTS / "knee.smoke.json").read_text())
    assert all(set(r) >= KNEE_FIELDS for r in records)
    assert {r["task"] for r in records} == {"sst5", "mnli"}
    assert {(r["knee_curve"], r["method"], r["quality"]) for r in records} == {
        ("quality", "paper", "mss"),
        ("quality", "previous", "simplified-silhouette"),
        ("performance", "paper", "mss"),
    }
    assert {r["degree"] for r in records} == {1, 2, 3, 4}
    for r in records:
        if r["degree"] == 1:  # the engine refuses a straight line
            assert r["knee_k"] is None and r["heads_kept"] is None
            assert r["reason"] == "refused: a degree-1 fit is a straight line"
        else:
            assert 2 <= r["knee_k"] <= 71 and 6 <= r["heads_kept"] <= 72  # >= 1 head per layer
            assert isinstance(r["fallback"], bool) and r["reason"]
    groups = {(r["task"], r["knee_curve"], r["quality"], r["degree"]) for r in records}
    for group in groups:
        rows = [
            r for r in records if (r["task"], r["knee_curve"], r["quality"], r["degree"]) == group
        ]
        assert sorted(r["seed"] for r in rows if r["seed"] != "consensus") == [0, 1]
        consensus = [r for r in rows if r["seed"] == "consensus"]
        assert len(consensus) == 1  # the consensus record of every group
        if group[3] > 1:  # the consensus is one of the seeds' selections
            chosen = next(r for r in rows if r["seed"] == consensus[0]["consensus_seed"])
            assert chosen["heads_kept"] == consensus[0]["heads_kept"]
    meta = json.loads((RESULTS / "knee_meta.smoke.json").read_text())
    assert meta["seeds"] == [0, 1] and set(meta["tasks"]) == {"sst5", "mnli"}


def test_results_doc_matches_the_results_files():
    """docs/results.md is what benchmarks/report.py makes of benchmarks/results/*.json."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_report_statistics_on_known_records(monkeypatch):
    import pandas as pd

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report

    assert report.middle_third_share([0, 0, 2, 2, 0, 0]) == 1.0  # layers 2, 3 of 6
    assert report.middle_third_share([1, 1, 0, 0, 1, 1]) == 0.0
    group = pd.DataFrame(
        [
            {"budget_frac": "0.1", "seed": s, "method": m, "accuracy": a}
            for s, (c, g) in enumerate(((0.5, 0.4), (0.6, 0.4), (0.4, 0.4)))
            for m, a in (("cahp", c), ("gradient", g), ("random", 0.1))
        ]
    )
    mean, std = report.paired_differences(group)["0.1"]
    assert mean == pytest.approx(0.1) and std == pytest.approx(0.1)
    line = report.claim1_line("sst5", "test", {"0.1": (0.1, 0.1), "0.2": (-0.02, 0.01)})
    assert "held partly" in line and "within the seed spread" in line and "behind, beyond" in line
