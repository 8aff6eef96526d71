"""benchmarks/report.py's knee-stability statistics and verdicts on known records."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def report(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report

    return report


def records(task, heads_by_degree, curve="quality", method="paper", consensus_seed=0):
    """Knee records: ``heads_by_degree[degree]`` lists the heads of seeds 0, 1, ...;
    degree 1 is refused, as the engine refuses it."""
    quality = "mss" if method == "paper" else "simplified-silhouette"
    out = []
    n_seeds = len(next(iter(heads_by_degree.values())))
    for seed in [*range(n_seeds), "consensus"]:
        out.append(
            {
                "task": task,
                "knee_curve": curve,
                "quality": quality,
                "method": method,
                "seed": seed,
                "degree": 1,
                "knee_k": None,
                "heads_kept": None,
                "fallback": None,
                "reason": "refused: a degree-1 fit is a straight line",
            }
        )
    for degree, heads in heads_by_degree.items():
        rows = [
            {
                "task": task,
                "knee_curve": curve,
                "quality": quality,
                "method": method,
                "seed": seed,
                "degree": degree,
                "knee_k": n,
                "heads_kept": n,
                "fallback": False,
                "reason": "kneed",
            }
            for seed, n in enumerate(heads)
        ]
        consensus = {**rows[consensus_seed], "seed": "consensus", "consensus_seed": consensus_seed}
        out += [*rows, consensus]
    return out


def both_tasks(paper_sst5, paper_mnli, previous=(20, 30, 10)):
    return [
        *records("sst5", paper_sst5),
        *records("mnli", paper_mnli),
        *records("sst5", {2: [30] * 3, 6: list(previous)}, method="previous"),
        *records("mnli", {2: [30] * 3, 6: list(previous)}, method="previous"),
    ]


def test_stability_at_degree_6(report):
    knee = both_tasks({2: [36, 36, 36], 6: [14, 15, 14]}, {2: [35] * 3, 6: [10, 12, 14]})
    table = report.knee_stability(knee).set_index(["task", "method"])
    sst5 = table.loc[("sst5", "paper")]
    assert sst5["median"] == 14 and sst5["max_rel_from_median"] == pytest.approx(1 / 14)
    assert bool(sst5["within"]) and sst5["consensus"] == 14
    mnli = table.loc[("mnli", "paper")]
    assert mnli["max_rel_from_median"] == pytest.approx(2 / 12) and bool(mnli["within"])
    previous = table.loc[("sst5", "previous")]
    assert previous["median"] == 20 and not previous["within"]  # 10 is 50 % below 20
    assert "**held**" in report.stability_verdict(report.knee_stability(knee))


def test_criterion_fails_and_names_the_consensus(report):
    knee = both_tasks({2: [36] * 3, 6: [14, 15, 14]}, {2: [35] * 3, 6: [9, 14, 30]})
    verdict = report.stability_verdict(report.knee_stability(knee))
    assert "**did not hold**" in verdict
    assert "mnli 9 heads (seed 0), 36% from the median, outside 20%" in verdict


def test_claim4_line_from_the_records(report):
    knee = both_tasks(
        {2: [36] * 3, 5: [15] * 3, 6: [14] * 3, 7: [13] * 3},
        {2: [35] * 3, 5: [15] * 3, 6: [14] * 3, 7: [13] * 3},
    )
    line = report.claim4_line(knee)
    assert "sst5 14/14/14 (median 14, at most 0% from it)" in line
    assert "within 20% of the median on mnli and sst5" in line
    assert "depends on the degree" in line and "from degree 5 on: 13–15" in line
    assert "sst5 20/30/10 (at most 50% from the median)" in line
    assert "not measured yet" in report.claim4_line(None)


def test_by_degree_leaves_refused_degrees_out(report):
    knee = records("sst5", {2: [36, 30, 33], 3: [20, 21, 22]})
    table = report.knee_by_degree(knee, "quality", "paper")
    assert table["degree"].tolist() == [2, 3]
    first = table.iloc[0]
    assert (first["median"], first["low"], first["high"], first["consensus"]) == (33, 30, 36, 36)
    assert report.refused_degrees(knee) == "quality / paper: 1"
