"""The benchmark scripts' --smoke modes, so they cannot silently rot (tiny subsets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The scripts' --out folder's results/ (nothing is written into the source tree)."""
    return tmp_path_factory.mktemp("benchmarks") / "results"


def _smoke(results: Path, script: str, timeout: int = 600, *extra: str) -> None:
    out = str(results.parent)
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", out, *extra],
        cwd=ROOT,
        check=True,
        timeout=timeout,
        capture_output=True,
    )


@pytest.mark.benchmark
def test_overhead_smoke(results):
    _smoke(results, "overhead.py")
    result = json.loads((results / "overhead.smoke.json").read_text())
    assert result["signature_vs_forward"] > 0 and result["salience_vs_fwd_bwd"] > 0
    assert result["heads"] == 8 and result["degree_change_s"] >= 0
    assert result["finetune_vs_bare_loop"] > 0 and result["finetune_examples_per_s"] > 0
    assert result["masked_eval_vs_forward"] > 0 and result["eval_collating_vs_forward"] > 0


@pytest.mark.benchmark
def test_deployment_smoke(results):
    _smoke(results, "deployment.py")
    records = json.loads((results / "deployment.smoke.json").read_text())
    assert {(r["runtime"], r["batch"]) for r in records} == {
        ("pytorch", 1),
        ("pytorch", 32),
        ("onnxruntime", 1),
        ("onnxruntime", 32),
    }
    assert all(r["params_pruned"] < r["params_full"] and r["ideal_speedup"] > 1 for r in records)


def _check_quality_records(records: list[dict], protocol: str, methods: set[str]) -> None:
    assert {r["method"] for r in records if r["protocol"] == protocol} == methods | {"full"}
    mine = [r for r in records if r["protocol"] == protocol and r["method"] != "full"]
    assert {r["retune"] for r in mine} == {True, False}  # re-tuned and masked, every map
    for r in mine:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and r["kl"] >= 0
    paper_heads = {
        (r["task"], r["budget_frac"], r["seed"]): r["heads"] for r in mine if r["method"] == "cahp"
    }
    for r in mine:  # every method keeps as many heads as the paper's CAHP at that budget
        assert r["heads"] == paper_heads[(r["task"], r["budget_frac"], r["seed"])]
    pairs = {(r["task"], r["budget_frac"], r["method"], r["split"], r["retune"]) for r in mine}
    assert len(pairs) == len(mine)  # one record per map, split and kind


@pytest.mark.benchmark
def test_quality_smoke(shared_data, results):
    """The CPU protocol with every CAHP variant, then the paper protocol: records of both
    are kept side by side."""
    variants = ["cahp-js", "cahp-radius", "cahp-mmr", "cahp-mmr-js"]
    _smoke(results, "quality.py", 900, "--methods", "cahp", "gradient", "random", *variants)
    _smoke(results, "quality.py", 900, "--protocol", "paper", "--tasks", "sst5")
    records = json.loads((results / "quality.smoke.json").read_text())
    assert {(r["task"], r["protocol"]) for r in records} == {
        ("sst5", "cpu"),
        ("mnli", "cpu"),
        ("sst5", "paper"),
    }
    _check_quality_records(records, "cpu", {"cahp", "gradient", "random", *variants})
    _check_quality_records(records, "paper", {"cahp", "gradient", "random"})
    full = [r for r in records if r["method"] == "full"]
    assert all(r["kl"] == pytest.approx(0.0, abs=1e-6) for r in full)  # the reference itself
    meta = json.loads((results / "quality_meta.smoke.json").read_text())
    assert {"cpu/jm", "cpu/js"} <= set(meta["mmr_lambda"])  # chosen on validation data
    assert meta["mmr_lambda"]["cpu/jm"]["chosen"] in meta["lambda_grid"]
    proximity = json.loads((results / "proximity.smoke.json").read_text())
    assert all(0 <= p["mean_depth"] <= 1 for p in proximity)
    assert {p["protocol"] for p in proximity} == {"cpu", "paper"}


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


@pytest.mark.benchmark
def test_knee_smoke(shared_data, results):
    _smoke(results, "knee.py", timeout=900)
    records = json.loads((results / "knee.smoke.json").read_text())
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
    meta = json.loads((results / "knee_meta.smoke.json").read_text())
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


def test_goal_verdict_on_known_records(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report

    def records(mmr_margin: float) -> list[dict]:
        out = []
        for task in ("sst5", "mnli"):
            for budget in (0.1, 0.2, 0.3):
                for seed in (0, 1):
                    for retune in (True, False):
                        for method, acc in (
                            ("gradient", 0.4),
                            ("cahp", 0.39),
                            ("cahp-mmr", 0.4 + mmr_margin),
                        ):
                            out.append(
                                {
                                    "task": task,
                                    "split": "x",
                                    "budget_frac": budget,
                                    "seed": seed,
                                    "retune": retune,
                                    "protocol": "cpu",
                                    "method": method,
                                    "accuracy": acc,
                                    "heads": 7,
                                }
                            )
        return out

    met = "\n".join(report.goal_lines(records(0.03)))
    assert "**Met** by MMR." in met and "| MMR | mnli (2), sst5 (2) | +0.030 |" in met
    missed = "\n".join(report.goal_lines(records(0.01)))
    assert "**Not met.**" in missed and "the closest re-tuned on both tasks is MMR" in missed
    assert "MMR is ahead of gradient on average on both tasks" in missed
    assert "CAHP (paper) mnli -0.010, sst5 -0.010" in missed
