"""Honest progress of a multi-stage job: stage weights from measured costs, one monotone
overall fraction, elapsed time and an ETA.

The engine reports ``(stage, fraction, message)`` events; :class:`ProgressTracker` turns
them into a snapshot that the CLI writes (``--progress-json``) and the dashboard draws.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Seconds per stage of a quick-preset run (minilm-l6, SST-5, 2 CPU cores): the embedded
# example's summary.json (assets/default_run). Used until this runs folder has finished
# runs of its own, whose measured stage_seconds then set the weights.
DEFAULT_STAGE_SECONDS: dict[str, float] = {
    "finetune": 531.0,
    "salience": 8.0,
    "signatures": 10.0,
    "distances": 1.0,
    "diagnostics": 41.0,
    "clustering": 2.0,
    "task_curve": 164.0,
    "selection": 0.5,
    "graph": 0.5,
    "export": 701.0,
    "baseline": 701.0,  # a baseline export is the export stage's work
}
MIN_STAGE_SECONDS = 0.5  # every stage weighs something, so none finishes "for free"
ETA_AFTER_FRACTION = 0.02  # no ETA from the first 2 %: too little to extrapolate from
REUSED = "reused"


def stage_weights(
    stages: Sequence[str], history: Iterable[dict[str, float]] = ()
) -> dict[str, float]:
    """Relative cost of each stage: the median of measured ``stage_seconds`` over finished
    runs (``history``), else :data:`DEFAULT_STAGE_SECONDS`; normalised to sum to 1."""
    measured: dict[str, list[float]] = {}
    for seconds in history:
        for stage, value in seconds.items():
            if isinstance(value, int | float) and value >= 0:
                measured.setdefault(stage, []).append(float(value))
    raw = {
        stage: max(
            statistics.median(measured[stage])
            if stage in measured
            else DEFAULT_STAGE_SECONDS.get(stage, MIN_STAGE_SECONDS),
            MIN_STAGE_SECONDS,
        )
        for stage in stages
    }
    total = sum(raw.values())
    return {stage: value / total for stage, value in raw.items()}


def measured_history(runs_root: str | Path, preset: str | None = None) -> list[dict[str, float]]:
    """``stage_seconds`` of the finished runs in ``runs_root`` (those of ``preset`` when
    there are any; a stage reused from an earlier run took ~0 s and is left out)."""
    root = Path(runs_root)
    found: list[tuple[str | None, dict[str, float]]] = []
    for summary_path in sorted(root.glob("*/summary.json")) if root.is_dir() else []:
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            continue
        seconds = summary.get("stage_seconds") if isinstance(summary, dict) else None
        if isinstance(seconds, dict):
            kept = {k: v for k, v in seconds.items() if isinstance(v, int | float) and v > 0.05}
            found.append((summary.get("preset"), kept))
    same = [s for p, s in found if preset is not None and p == preset]
    return same or [s for _, s in found]


def eta_seconds(overall: float, elapsed: float) -> float | None:
    """Seconds left at the average pace so far; None until enough is done to tell."""
    if overall < ETA_AFTER_FRACTION or overall >= 1.0 or elapsed <= 0:
        return None
    return elapsed * (1.0 - overall) / overall


def format_duration(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``; ``"—"`` for None."""
    if seconds is None:
        return "—"
    seconds = int(round(max(seconds, 0.0)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class ProgressTracker:
    """Stage events -> one snapshot: per-stage fractions, a monotone overall fraction,
    elapsed time and ETA.

    Stages run in the order given: a report from a stage completes every earlier one. A
    stage whose first report is "reused" did no work in this job and drops out of the
    weights (the remaining work is what the bar and the ETA measure).
    """

    stages: Sequence[str]
    weights: dict[str, float]
    started: float = field(default_factory=time.time)
    fractions: dict[str, float] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    reused: set[str] = field(default_factory=set)
    overall: float = 0.0
    current: str | None = None

    def update(self, stage: str, fraction: float, message: str) -> dict:
        """Record one event and return the new snapshot."""
        if stage not in self.stages:  # an unknown stage is shown, weighing nothing
            self.stages = (*self.stages, stage)
        elif stage in self.weights:  # a known stage runs after every earlier one
            for earlier in self.stages[: list(self.stages).index(stage)]:
                self.fractions[earlier] = 1.0
        fraction = min(max(float(fraction), 0.0), 1.0)
        if stage not in self.fractions and fraction >= 1.0 and REUSED in message:
            self.reused.add(stage)
        self.fractions[stage] = max(self.fractions.get(stage, 0.0), fraction)
        self.messages[stage] = message
        self.current = stage
        self.overall = max(self.overall, self._weighted())
        return self.snapshot()

    def finish(self) -> dict:
        """Every stage done: the snapshot of a finished job."""
        for stage in self.stages:
            self.fractions[stage] = 1.0
        self.overall = 1.0
        return self.snapshot()

    def _weighted(self) -> float:
        working = [s for s in self.stages if s not in self.reused]
        total = sum(self.weights.get(s, 0.0) for s in working)
        if total <= 0:
            return 0.0
        done = sum(self.weights.get(s, 0.0) * self.fractions.get(s, 0.0) for s in working)
        return min(done / total, 1.0)

    def snapshot(self, now: float | None = None) -> dict:
        """JSON-ready state: ``overall``, ``elapsed_s``, ``eta_s`` and a row per stage."""
        elapsed = (time.time() if now is None else now) - self.started
        return {
            "stage": self.current,
            "message": self.messages.get(self.current or "", ""),
            "overall": self.overall,
            "started": self.started,
            "updated": self.started + elapsed,
            "elapsed_s": elapsed,
            "eta_s": eta_seconds(self.overall, elapsed),
            "stages": {
                stage: {
                    "fraction": self.fractions.get(stage, 0.0),
                    "message": self.messages.get(stage, ""),
                    "weight": 0.0 if stage in self.reused else self.weights.get(stage, 0.0),
                    "reused": stage in self.reused,
                }
                for stage in self.stages
            },
        }
