"""The proximity verdict: a permutation test of where a method keeps heads against random
selections of the same size, and the Proximity page that shows it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from cahp_core.errors import CAHPError
from cahp_core.method.proximity import (
    common_curve_count,
    format_p,
    proximity_table,
    proximity_test,
    proximity_tests,
)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "proximity.py"
EXAMPLE = ROOT / "assets" / "default_run"
TIMEOUT = 120


def _map(layers: int = 6, heads: int = 12, **rows: int) -> np.ndarray:
    """``_map(l5=4)``: the first 4 heads of layer 5 kept. bool [layers, heads]"""
    keep = np.zeros((layers, heads), dtype=bool)
    for layer, count in rows.items():
        keep[int(layer[1:]), :count] = True
    return keep


# ---------------------------------------------------------------- the test


def test_a_map_of_only_the_last_layer_is_closer_to_the_output():
    test = proximity_test(_map(l5=12), "gradient")
    assert test.mean_depth == 1 and test.closer_to_output
    # P(a random 12 all in the last layer) = 1 / C(72, 12): no draw gets there, p = 1 / 10,001
    assert test.p_depth == pytest.approx(1 / (10_000 + 1))
    # exact: P(all 12 random heads in the last 2 of 6 layers) = C(24, 12) / C(72, 12)
    assert test.p_last_third == pytest.approx(math.comb(24, 12) / math.comb(72, 12))
    assert test.depth_effect > 3 and test.last_third_effect > 3
    assert test.sentence.startswith(
        "On this run, gradient pruning (12 of 72 heads) keeps heads closer to the output than "
        "random selections of the same size (mean depth 1.00 vs 0.50 ± "
    )
    assert "p < 0.001" in test.sentence and "does not" not in test.sentence
    assert proximity_test(_map(l5=4)).p_depth < 0.002  # 4 heads: a few random draws tie


def test_an_even_spread_is_not_closer_to_the_output():
    test = proximity_test(_map(**{f"l{i}": 2 for i in range(6)}), "CAHP")
    assert test.mean_depth == pytest.approx(0.5) and test.last_third_share == pytest.approx(1 / 3)
    assert 0.3 < test.p_depth < 0.7 and test.p_last_third > 0.3
    assert abs(test.depth_effect) < 0.1 and not test.closer_to_output
    assert "CAHP pruning (12 of 72 heads) does not keep heads closer to the output" in test.sentence
    assert re.search(
        r"mean depth 0\.50 vs 0\.50 ± 0\.\d\d, [+-]0\.0 sd, p = 0\.\d\d;", test.sentence
    )


def test_a_map_near_the_input_says_so():
    test = proximity_test(_map(l0=6), "first")
    assert test.p_depth == 1 and not test.closer_to_output
    assert "nearer the input than 97.5 % of them" in test.sentence


def test_random_selections_keep_as_many_heads_as_the_map():
    """The null's spread is that of means of n heads drawn without replacement."""
    keep = _map(l1=3, l4=7)
    test = proximity_test(keep)
    depth = np.repeat(np.arange(6) / 5, 12)  # every head's depth
    n, total = 10, 72
    sd = np.sqrt(depth.var() / n * (total - n) / (total - 1))  # finite-population correction
    assert test.heads_kept == n and test.heads_total == total and test.n_draws == 10_000
    assert test.random_depth_mean == pytest.approx(0.5, abs=0.005)
    assert test.random_depth_sd == pytest.approx(sd, rel=0.03)
    share = stats.hypergeom(total, 24, n)
    assert test.random_last_third_mean == pytest.approx(share.mean() / n)
    assert test.random_last_third_sd == pytest.approx(share.std() / n)
    low, high = test.random_depth_range
    assert low < test.random_depth_mean < high


def test_small_models_are_tested_exactly():
    test = proximity_test(_map(layers=2, heads=2, l1=1))  # C(4, 1) = 4 selections
    assert test.exact_depth and test.n_draws == 4
    assert test.p_depth == pytest.approx(0.5)  # 2 of the 4 single heads sit in the last layer
    assert test.p_last_third == pytest.approx(0.5)
    test = proximity_test(_map(layers=2, heads=3, l1=2))  # C(6, 2) = 15 selections (scipy)
    assert test.exact_depth and test.n_draws == 15
    assert test.p_depth == pytest.approx(3 / 15)  # C(3, 2) pairs of last-layer heads
    assert not proximity_test(_map(l5=4)).exact_depth


def test_the_test_is_seeded():
    keep = _map(l2=3, l5=5)
    assert proximity_test(keep, seed=3) == proximity_test(keep, seed=3)
    other = proximity_test(keep, seed=4)
    assert other.random_depth_sd != proximity_test(keep, seed=3).random_depth_sd
    assert other.closer_to_output == proximity_test(keep, seed=3).closer_to_output


def test_to_dict_is_json_ready():
    d = proximity_test(_map(l5=4), "gradient").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["closer_to_output"] is True and d["sentence"].startswith("On this run, gradient")
    assert d["random_depth_range"][0] < d["random_depth_range"][1]


def test_methods_are_tested_at_one_budget():
    maps = {"cahp": _map(l2=4), "gradient": _map(l5=4)}
    tests = proximity_tests(maps, {"cahp": "CAHP"})
    assert tests["cahp"].method == "CAHP" and tests["gradient"].method == "gradient"
    assert tests["gradient"].closer_to_output and not tests["cahp"].closer_to_output
    table = proximity_table(tests)
    assert list(table["method"]) == ["cahp", "gradient"]
    assert list(table["closer to the output"]) == ["no", "yes"]
    with pytest.raises(CAHPError, match="different numbers of heads.*cahp 4, gradient 5"):
        proximity_tests({"cahp": _map(l2=4), "gradient": _map(l5=5)})


@pytest.mark.parametrize(
    ("keep", "settings", "message"),
    [
        (np.zeros((6, 12), dtype=bool), {}, "keeps no head"),
        (np.ones(5, dtype=bool), {}, "2-D"),
        (np.ones((6, 12), dtype=bool), {}, "keeps every head"),
        (_map(layers=1, l0=2), {}, "at least 2 layers"),
        (_map(l5=4).astype(int) * 2, {}, "True/False"),
        (_map(l5=4), {"n_draws": 10}, "at least 100 random draws"),
        (_map(l5=4), {"seed": -1}, "seed"),
        (_map(l5=4), {"alpha": 1.5}, "between 0 and 1"),
    ],
)
def test_bad_input_is_a_clear_error(keep, settings, message):
    with pytest.raises(CAHPError, match=message):
        proximity_test(keep, **settings)


def test_no_maps_is_a_clear_error():
    with pytest.raises(CAHPError, match="no kept-head maps"):
        proximity_tests({})


def test_format_p():
    assert format_p(0.3123) == "p = 0.31"
    assert format_p(0.0472) == "p = 0.047"
    assert format_p(0.0002) == "p < 0.001"


def test_the_accuracy_count_is_shared_by_every_method():
    curve = [
        {"method": m, "heads_kept": n}
        for m, counts in (("cahp", (25, 33, 40)), ("gradient", (25, 33)), ("random", (33, 40)))
        for n in counts
    ]
    assert common_curve_count(curve, ["cahp", "gradient", "random"], 30) == 33
    assert common_curve_count(curve, ["cahp", "gradient"], 29) == 25  # nearest
    assert common_curve_count(curve, ["cahp", "gradient"], 29) == 25
    assert common_curve_count(curve, ["cahp", "gradient", "gradient-raw"], 30) == 33  # unmeasured
    assert common_curve_count(curve, ["cahp", "random"], 0) == 33
    assert common_curve_count([], ["cahp"], 30) is None


def test_the_benchmark_chart_has_readable_labels():
    from cahp_core.benchmark_results import benchmark_frame
    from cahp_studio.dashboard.figures import benchmark_figure

    records = [
        {"task": "sst5", "split": "test", "method": m, "budget_frac": b, "heads": h}
        | {"seed": s, "accuracy": a + 0.01 * s, "retune": False}
        for m, b, h, a in (
            ("full", 1.0, 72, 0.5),
            ("cahp", 0.1, 7, 0.4),
            ("gradient", 0.1, 7, 0.3),
            ("cahp", "knee", 14, 0.45),
            ("gradient", "knee", 14, 0.42),
        )
        for s in (1, 2)
    ]
    fig = benchmark_figure(benchmark_frame(pd.DataFrame(records)), retune=False)
    assert [d.name for d in fig.data] == ["CAHP", "Gradient (Michel et al.)"]
    assert list(fig.layout.xaxis.ticktext) == ["10 %", "CAHP's knee<br>(14 heads)"]
    assert fig.data[0].y[1] is None  # no line from the budgets to the knee
    assert fig.layout.annotations[0].text == "SST-5, test"
    assert any("full model 0.515" in str(a.text) for a in fig.layout.annotations)
    assert fig.data[0].y[0] == pytest.approx(0.415)
    assert "budget_frac" not in fig.to_json()


# ---------------------------------------------------------------- the page


def _shown(at: AppTest) -> list[str]:
    return [e.value for e in (*at.info, *at.success, *at.markdown, *at.caption)]


def _verdicts(at: AppTest) -> dict[str, str]:
    """The verdict sentence per method name in the sentence."""
    sentences = [e.value for e in (*at.info, *at.success) if e.value.startswith("On this run")]
    return {s.split(" pruning")[0].removeprefix("On this run, "): s for s in sentences}


def test_the_page_gives_a_verdict_at_one_head_count(tiny_runs, monkeypatch):
    from cahp_core.runs.results import RunView

    monkeypatch.setenv("CAHP_RUNS_DIR", str(tiny_runs))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tiny_runs / "tiny-run"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception
    verdicts = _verdicts(at)
    assert set(verdicts) == {"CAHP", "gradient"}  # random's own test is in the table only
    for sentence in verdicts.values():
        assert re.search(
            r"\(mean depth \d\.\d\d vs \d\.\d\d ± \d\.\d\d, [+-]\d+\.\d sd, p = ", sentence
        )
        assert "random selections of the same size" in sentence
    depth = at.dataframe[0].value
    budget = int(depth["heads kept"].iloc[0])
    assert (depth["heads kept"] == budget).all()
    measured = depth["measured at (heads)"]
    assert measured.nunique() == 1  # masked accuracy: one head count for every method
    view = RunView(tiny_runs / "tiny-run")
    assert int(measured.iloc[0]) == common_curve_count(
        view.task_curve, ["cahp", "gradient", "random"], budget
    )
    assert any(f"each keeps exactly {budget} heads" in s for s in _shown(at))
    assert any(
        f"taken at {int(measured.iloc[0])} heads" in s or "measured at" in s for s in _shown(at)
    )
    numbers = at.dataframe[1].value
    assert list(numbers["method"]) == ["CAHP", "Gradient (Michel et al.)", "Random"]
    assert {"p (depth)", "effect (sd)", "random 95 % range"} <= set(numbers.columns)
    at.toggle(key="proximity_raw_gradient").set_value(True).run()
    assert not at.exception and "un-normalised gradient" in _verdicts(at)


def test_the_embedded_example_page(tmp_path, monkeypatch):
    """What a newcomer sees first: verdicts, one head count, the benchmarks as a chart."""
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(EXAMPLE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception
    verdicts = _verdicts(at)
    assert {"CAHP", "gradient"} <= set(verdicts)
    assert all("p = " in s or "p < " in s for s in verdicts.values())
    assert any("**Same head count for every method:** each keeps exactly" in s for s in _shown(at))
    if (ROOT / "benchmarks" / "results" / "quality.json").is_file():
        charts = [pio.from_json(c.proto.spec) for c in at.get("plotly_chart")]
        benchmark = charts[-1]
        assert any(t.startswith("CAHP's knee") for t in benchmark.layout.xaxis.ticktext)
        assert "budget_frac" not in benchmark.to_json()
        assert all("budget_frac" not in d.value.columns for d in at.dataframe)
