"""Reading benchmarks/quality.py's result records, shared by the dashboard and
benchmarks/report.py (pandas only)."""

from __future__ import annotations

import pandas as pd


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
