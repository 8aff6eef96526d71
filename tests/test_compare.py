"""The Compare page and its logic (dashboard/compare.py), on the embedded example run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "default_run"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The example as the default run, and a copy of it as a second finished run."""
    shutil.copytree(EXAMPLE, tmp_path / "copy")
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(EXAMPLE))
    return tmp_path


def test_overlap_counts_and_jaccard():
    from cahp_studio.dashboard.compare import overlap, overlap_figure, overlap_heads

    a = np.array([[1, 1, 0], [0, 0, 1]], dtype=bool)
    b = np.array([[1, 0, 1], [0, 0, 1]], dtype=bool)
    assert overlap(a, b) == {"jaccard": 0.5, "both": 2, "only A": 1, "only B": 1}
    assert overlap_heads(a, b) == {"both": ["L0H0", "L1H2"], "only A": ["L0H1"], "only B": ["L0H2"]}
    fig = overlap_figure(a, b)
    assert [t.name for t in fig.data] == ["neither", "both (2)", "only A (1)", "only B (1)"]


def test_gradient_side_keeps_cahps_count_and_its_own_accuracy():
    from cahp_core.method.proximity import depth_stats
    from cahp_core.runs.results import RunView
    from cahp_studio.dashboard.compare import cahp_side, depth_table, gradient_side
    from cahp_studio.dashboard.selection_view import degree_view, expected_accuracy

    view = RunView(EXAMPLE)
    chosen = degree_view(view, 4)
    a, b = cahp_side("A", "example", view, chosen), gradient_side("B", "example", view, chosen)
    assert a.heads_kept == b.heads_kept == chosen.heads_kept
    assert a.expected_accuracy == chosen.expected_accuracy
    assert b.expected_accuracy == expected_accuracy(view, chosen.heads_kept, "gradient")
    table = depth_table([a, b])
    assert list(table["method"]) == ["CAHP", "Gradient (Michel et al.)"]
    assert table["mean depth"][1] == round(depth_stats(b.keep)["mean_depth"], 3)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("mode", ["degrees", "curves", "gradient", "runs"])
def test_compare_page_every_mode(env, mode):
    at = AppTest.from_file(str(ROOT / "pages" / "compare.py"), default_timeout=120)
    at.session_state["compare_mode"] = mode
    at.run()
    assert not at.exception, at.exception
    assert any("Compare two selections" in t.value for t in at.title)
    jaccard = float(_metric(at, "Jaccard index"))
    assert 0.0 <= jaccard <= 1.0
    table = at.dataframe[-1].value
    assert list(table["selection"]) == ["A", "B"] and "mean depth" in table
    assert table["expected accuracy"].notna().all()  # the example has a task curve
    if mode == "runs":
        assert jaccard == 1.0  # the copy selects the same heads
        assert list(table["run"])[1] == "copy"
    if mode == "curves":
        assert list(table["knee curve"]) == ["quality knee", "performance knee"]


def test_two_degrees_follow_the_pickers(env):
    at = AppTest.from_file(str(ROOT / "pages" / "compare.py"), default_timeout=120).run()
    a, b = at.selectbox[0], at.selectbox[1]
    at = b.set_value(a.value).run()  # the same degree twice: identical selections
    assert _metric(at, "Jaccard index") == "1.00" and _metric(at, "Only in A") == "0"
