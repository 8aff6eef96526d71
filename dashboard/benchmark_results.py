"""Reading benchmarks/quality.py's result files, shared by the dashboard and
benchmarks/report.py (pandas only: no Streamlit import)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# a checkout's published results (an installed wheel has none: the pages then say nothing)
PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def published_quality_results() -> Path | None:
    """benchmarks/results/quality.json of a source checkout, or None where there is none."""
    path = PUBLISHED / "quality.json"
    return path if path.is_file() else None


def benchmark_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """benchmarks/quality.py records (quality or proximity) with the fields older records
    lack: ``protocol`` "cpu", ``retune`` True (re-tuned), ``macro_f1`` and ``kl`` NaN; budgets
    as text ("0.1", "knee")."""
    frame = frame.copy()
    defaults = (
        ("protocol", "cpu"),
        ("retune", True),
        ("macro_f1", float("nan")),
        ("kl", float("nan")),
    )
    for column, default in defaults:
        frame[column] = frame[column].fillna(default) if column in frame else default
    frame["retune"] = frame["retune"].astype(bool)
    return frame.astype({"budget_frac": str})
