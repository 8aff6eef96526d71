"""Where the dashboard finds a checkout's published benchmark results (reading them:
``cahp_core.benchmark_results``)."""

from __future__ import annotations

from pathlib import Path

# a checkout's published results (an installed wheel has none: the pages then say nothing)
PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def published_quality_results() -> Path | None:
    """benchmarks/results/quality.json of a source checkout, or None where there is none."""
    path = PUBLISHED / "quality.json"
    return path if path.is_file() else None
