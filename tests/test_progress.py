"""Honest progress: measured stage weights, a monotone overall bar, elapsed time and ETA."""

from __future__ import annotations

import json

import pytest

from cahp_core.runs.progress import (
    DEFAULT_STAGE_SECONDS,
    ProgressTracker,
    eta_seconds,
    format_duration,
    measured_history,
    stage_weights,
)
from cahp_core.runs.stages import EXPORT_STAGES
from cahp_core.runs.stages import STAGE_NAMES as STAGES


def test_weights_come_from_measured_stage_costs_else_the_default_table():
    default = stage_weights(STAGES)
    assert sum(default.values()) == pytest.approx(1.0)
    # the default table: fine-tuning and the export dominate a quick run, selection is free
    assert default["finetune"] > 10 * default["salience"] > 0
    ratio = DEFAULT_STAGE_SECONDS["export"] / DEFAULT_STAGE_SECONDS["finetune"]
    assert default["export"] / default["finetune"] == pytest.approx(ratio)
    history = [{"finetune": 10.0, "export": 30.0}, {"finetune": 30.0, "export": 50.0}]
    measured = stage_weights(EXPORT_STAGES, history)
    assert measured["export"] / measured["finetune"] == pytest.approx(40.0 / 20.0)  # medians


def test_measured_history_prefers_runs_of_the_same_preset(tmp_path):
    for name, preset, seconds in [
        ("a", "quick", {"finetune": 100.0, "export": 0.01}),  # a reused export: left out
        ("b", "paper", {"finetune": 900.0}),
    ]:
        (tmp_path / name).mkdir()
        summary = {"preset": preset, "stage_seconds": seconds}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    assert measured_history(tmp_path, "quick") == [{"finetune": 100.0}]
    assert len(measured_history(tmp_path, "other")) == 2  # none of that preset: all of them
    assert measured_history(tmp_path / "missing") == []


def test_overall_progress_never_moves_backwards():
    tracker = ProgressTracker(STAGES, stage_weights(STAGES))
    seen = []
    events = [
        ("finetune", 0.0, "step 0/10"),
        ("finetune", 0.5, "step 5/10"),
        ("finetune", 0.3, "a stage that restarts its own count"),
        ("salience", 0.5, "batch 1/2"),  # completes fine-tuning
        ("signatures", 1.0, "batch 4/4"),
        ("distances", 0.0, "jm distances"),
        ("export", 0.2, "step 1/5"),  # completes every stage before it
        ("export", 1.0, "done"),
    ]
    for event in events:
        seen.append(tracker.update(*event)["overall"])
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0)
    snapshot = tracker.snapshot()
    assert snapshot["stages"]["finetune"]["fraction"] == 1.0
    assert snapshot["stages"]["task_curve"]["fraction"] == 1.0  # completed by a later stage
    assert snapshot["stages"]["finetune"]["message"] == "a stage that restarts its own count"


def test_reused_stages_drop_out_of_the_weights():
    """A resumed run reuses fine-tuning: the bar measures the work this job still does."""
    weights = stage_weights(EXPORT_STAGES)
    tracker = ProgressTracker(EXPORT_STAGES, weights)
    first = tracker.update("finetune", 1.0, "reused from the run folder")
    assert first["overall"] == 0.0 and first["stages"]["finetune"]["reused"]
    assert tracker.update("export", 0.5, "step 2/4")["overall"] == pytest.approx(0.5)
    fresh = ProgressTracker(EXPORT_STAGES, weights)
    fresh.update("finetune", 0.5, "step 5/10")
    done = fresh.update("finetune", 1.0, "saving the model")
    assert not done["stages"]["finetune"]["reused"]  # finished here, not reused
    assert done["overall"] == pytest.approx(weights["finetune"])


def test_eta_and_elapsed_time():
    assert eta_seconds(0.01, 10.0) is None  # too early to extrapolate
    assert eta_seconds(0.25, 60.0) == pytest.approx(180.0)
    assert eta_seconds(1.0, 60.0) is None
    tracker = ProgressTracker(EXPORT_STAGES, stage_weights(EXPORT_STAGES), started=100.0)
    tracker.update("export", 0.5, "half")
    snapshot = tracker.snapshot(now=160.0)
    assert snapshot["elapsed_s"] == pytest.approx(60.0)
    assert snapshot["eta_s"] == pytest.approx(
        60.0 * (1 - snapshot["overall"]) / snapshot["overall"]
    )
    assert tracker.finish()["overall"] == 1.0
    assert [format_duration(s) for s in (None, 42, 185, 3720)] == [
        "—",
        "42 s",
        "3 min 05 s",
        "1 h 02 min",
    ]


def test_unknown_stage_is_shown_without_weight():
    tracker = ProgressTracker(("export",), {"export": 1.0})
    snapshot = tracker.update("baseline", 0.5, "step 1/2")
    assert snapshot["stages"]["baseline"]["weight"] == 0.0
    assert snapshot["overall"] == 0.0  # it says nothing about the stages of the job
