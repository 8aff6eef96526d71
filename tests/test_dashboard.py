"""Dashboard pages through streamlit's AppTest, against a tiny run made once per session."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest
from streamlit.testing.v1 import AppTest

from cahp_core.errors import CAHPError
from cahp_core.model.pruning import read_keep
from cahp_core.testing import FakeUpload

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
APP = ROOT / "dashboard" / "app.py"
TIMEOUT = 120
REMOTE = re.compile(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", re.IGNORECASE)


@pytest.fixture
def env(tiny_runs, monkeypatch):
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tiny_runs))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tiny_runs / "tiny-run"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tiny_runs


@pytest.fixture(scope="module")
def tiny_view(tiny_runs):
    from cahp_core.runs.results import RunView

    return RunView(tiny_runs / "tiny-run")


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT)
    return at.run()


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _button(at: AppTest, text: str):
    return next(b for b in at.button if text.lower() in str(b.label).lower())


def _launch(at: AppTest) -> AppTest:
    return _button(at, "Launch").click().run()


def _text(at: AppTest, label: str):
    return next(t for t in at.text_input if t.label == label)


# ---------------------------------------------------------------- navigation and knee


def test_app_navigation_loads_the_default_page(env):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Knee" in t.value for t in at.title)
    assert at.sidebar.selectbox[0].options  # the run picker lists the tiny run


def _kept_map(at: AppTest, shape: tuple[int, int]) -> np.ndarray:
    """The Knee page's kept-head table (its last dataframe) as a bool [L, H] map."""
    table = at.dataframe[-1].value
    keep = np.zeros(shape, dtype=bool)
    keep[table["layer"].to_numpy(), table["head"].to_numpy()] = True
    return keep


def _shows_selector(at: AppTest, selector) -> None:
    assert _metric(at, "Knee (clusters)") == str(selector.knee_)
    assert _metric(at, "Heads kept") == f"{selector.n_heads_kept_} / {selector.support_.size}"
    assert (_kept_map(at, selector.support_.shape) == selector.support_).all()


def test_knee_page_degree_slider_recomputes(env, tiny_view):
    from cahp_studio.dashboard.selection_view import knee_by_degree

    at = page("knee.py")
    assert not at.exception
    slider = at.slider[0]
    assert slider.min == 2  # degree 1 is a straight line: no knee
    rows, _ = knee_by_degree(tiny_view, "quality")
    assert slider.max == rows[-1]["degree"] >= 3
    for degree in range(int(slider.min), int(slider.max) + 1):
        at.slider[0].set_value(degree).run()
        assert not at.exception
        _shows_selector(at, tiny_view.selector(degree, "quality"))
    heads = next(m for m in at.metric if m.label == "Heads kept")
    assert "seeds" in heads.proto.delta  # the spread across the clustering seeds
    charts = [pio.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    knee_chart = charts[0]
    assert any("each of 5 seeds" in str(d.name) for d in knee_chart.data)
    assert any(d.name == "heads kept" for d in charts[1].data)  # knee vs degree


def test_the_knee_curve_switch_changes_the_page_and_the_export_follows(env, tiny_view):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    control = at.segmented_control[0]
    assert control.value == "quality" and not control.disabled
    control.set_value("performance").run()
    assert not at.exception
    degree = int(at.slider[0].value)
    selector = tiny_view.selector(degree, "performance")
    _shows_selector(at, selector)
    assert selector.n_heads_kept_ != tiny_view.selector(degree, "quality").n_heads_kept_
    if selector.knee_result_.fallback:  # one warning with the reason, not repeated
        assert [w.value for w in at.warning] == [
            f"Fallback knee: {selector.knee_result_.reason}. The knee-vs-degree chart shows "
            "the degrees where kneed finds one (filled markers)."
        ]
    at.switch_page(str(PAGES / "export.py")).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert f"Degree **{degree}** on the **performance knee**" in text
    assert f"**{selector.n_heads_kept_}** of 12 heads kept" in text
    assert any("-performance-degree" in c.value for c in at.caption)  # the output folder
    at.switch_page(str(PAGES / "knee.py")).run()  # the choice survives a page change
    assert at.segmented_control[0].value == "performance"


def test_the_selection_rule_keeps_the_knee_count_and_the_export_follows(env, tiny_view):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    rule = at.selectbox(key=f"rule_select::{tiny_view.path}")
    assert rule.value == "complementary"  # the paper's rule by default
    degree = int(at.slider[0].value)
    paper = tiny_view.selector(degree, "quality")
    rule.set_value("mmr").run()
    assert not at.exception
    lam = at.slider(key=f"mmr_lambda::{tiny_view.path}")
    assert lam.value == 0.3  # the default chosen on validation data
    lam.set_value(0.5).run()
    chosen = tiny_view.selector(degree, "quality", {"rule": "mmr", "mmr_lambda": 0.5})
    assert chosen.n_heads_kept_ == paper.n_heads_kept_  # the knee says how many
    _shows_selector(at, chosen)
    at.switch_page(str(PAGES / "export.py")).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "selection rule **mmr (mmr lambda 0.5)**" in text
    assert f"--degree {degree} --knee-curve quality --rule mmr --mmr-lambda 0.5`" in text
    assert any(f"-quality-degree{degree}-mmr`" in c.value for c in at.caption)
    at.switch_page(str(PAGES / "knee.py")).run()  # the choice survives a page change
    assert at.selectbox(key=f"rule_select::{tiny_view.path}").value == "mmr"


def test_the_knee_degree_follows_the_session_to_other_pages(env, tiny_view):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.slider[0].set_value(2).run()
    kept = tiny_view.selector(2).n_heads_kept_
    for path, text in [
        ("pages/clusters.py", "Degree 2, quality knee"),
        ("pages/head_graph.py", "Degree 2, quality knee"),
        ("pages/proximity.py", "degree 2 (quality knee)"),
        ("pages/export.py", "Degree **2** on the **quality knee**"),
    ]:
        at.switch_page(str(ROOT / path)).run()
        assert not at.exception
        shown = [c.value for c in at.caption] + [m.value for m in at.markdown]
        assert any(text in s and str(kept) in s for s in shown), shown


def test_the_degree_survives_pages_without_its_slider(env, tiny_view):
    """The slider's key is the degree's own: pages that do not draw it keep it (page())."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    slider = at.slider[0]
    degree = int(slider.min) if int(slider.value) != int(slider.min) else int(slider.max)
    slider.set_value(degree).run()
    for path in ("pages/clusters.py", "pages/head_graph.py", "pages/compare.py"):
        at.switch_page(str(ROOT / path)).run()
        assert not at.exception
    assert at.session_state[f"degree::{tiny_view.path}"] == degree
    at.switch_page(str(PAGES / "knee.py")).run()
    assert not at.exception and not at.warning
    assert int(at.slider[0].value) == degree
    _shows_selector(at, tiny_view.selector(degree, "quality"))


def test_sessions_do_not_share_the_degree_or_the_knee_curve(env, tiny_view):
    first, second = page("knee.py"), page("knee.py")
    first.slider[0].set_value(2).run()
    second.segmented_control[0].set_value("performance").run()
    second.slider[0].set_value(3).run()
    first.run()
    assert first.slider[0].value == 2 and second.slider[0].value == 3
    assert first.segmented_control[0].value == "quality"
    for at, degree, curve in ((first, 2, "quality"), (second, 3, "performance")):
        _shows_selector(at, tiny_view.selector(degree, curve))


def test_page_cahp_export_and_cahp_run_agree(env, tiny_view):
    """Every degree and both knee curves: the dashboard's selection is the selector's, the
    one `cahp export --degree D --knee-curve C` announces, and at the run's own degree the
    one `cahp run` wrote to selection.json."""
    from cahp_core.runs.pipeline import export_with_degree
    from cahp_core.runs.run_selection import fit_selector
    from cahp_studio.dashboard.selection_view import degree_view
    from cahp_studio.dashboard.state import max_degree

    class Stop(Exception):
        pass

    def announced(degree: int, curve: str) -> dict:
        records = []

        def stop(record: dict) -> None:
            records.append(record)
            raise Stop  # the record is all we need: no fine-tune

        with pytest.raises(Stop):
            export_with_degree(tiny_view.path, degree, "unused", knee_curve=curve, announce=stop)
        return records[0]

    checked = 0
    for curve in ("quality", "performance"):
        for degree in range(2, max_degree(tiny_view, curve) + 1):
            chosen = degree_view(tiny_view, degree, curve)
            selector = tiny_view.selector(degree, curve)
            direct = fit_selector(
                tiny_view.config,
                tiny_view.clusterings,
                tiny_view.salience,
                degree,
                knee_curve=curve,
                task_curve=tiny_view.task_curve,
            )
            record = announced(degree, curve)
            for keep in (selector.support_, direct.support_, np.asarray(record["kept"], bool)):
                assert (chosen.keep == keep).all(), (curve, degree)
            assert chosen.knee.knee == selector.knee_ == direct.knee_ == record["knee"]
            assert chosen.consensus_seed == record["consensus_seed"]
            assert chosen.heads_by_seed == {int(s): n for s, n in record["heads_by_seed"].items()}
            assert record["knee_curve"] == curve and record["degree"] == degree
            checked += 1
    assert checked >= 4
    written = tiny_view.selection  # what `cahp run` wrote, at the run's configured degree
    chosen = degree_view(tiny_view, written["degree"], written["knee_curve"])
    assert (chosen.keep == np.asarray(written["kept"], dtype=bool)).all()
    assert (
        chosen.knee.knee == written["knee"] and chosen.consensus_seed == written["consensus_seed"]
    )
    assert chosen.labels.tolist() == written["labels"]


def test_a_run_without_a_task_curve_has_no_performance_knee(env, tmp_path, monkeypatch, tiny_view):
    import shutil

    from cahp_core.runs.results import RunView
    from cahp_studio.dashboard.state import max_degree

    run = tmp_path / "no-curve"
    shutil.copytree(tiny_view.path, run, ignore=shutil.ignore_patterns("model", "pruned"))
    (run / "task_curve.json").unlink()
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(run))
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[f"knee_curve::{run}"] = "performance"  # e.g. left from another run
    at.run()
    assert not at.exception and not at.error
    assert at.segmented_control[0].disabled and at.segmented_control[0].value == "quality"
    assert any("performance knee needs" in c.value for c in at.caption)
    assert _metric(at, "Expected accuracy") == "n/a"
    assert at.slider[0].min == 2 and at.slider[0].max == max_degree(RunView(run), "quality")
    at.switch_page(str(PAGES / "export.py")).run()
    assert not at.exception and any("**quality knee**" in m.value for m in at.markdown)


# ---------------------------------------------------------------- the view pages


def test_head_graph_page_draws_the_offline_network(env):
    at = page("head_graph.py")
    assert not at.exception and not at.error
    frames = [e for e in at.main if getattr(e, "type", "") == "iframe"]
    assert frames, "no iframe with the pyvis network"
    html = frames[0].proto.srcdoc
    assert "vis.Network" in html and not REMOTE.search(html)


def test_head_graph_plotly_view_and_filters(env, tiny_view):
    at = page("head_graph.py")
    at.radio[0].set_value("Plotly").run()
    assert not at.exception
    at.multiselect[0].set_value([0]).run()  # layer 0 only
    assert not at.exception
    _, n_heads = tiny_view.shape
    assert len(at.get("plotly_chart")) == 1
    heads = pio.from_json(at.get("plotly_chart")[0].proto.spec).data[1]
    assert len(heads.hovertext) == n_heads
    assert all(text.startswith("layer 0,") for text in heads.hovertext)


def test_clusters_page_embeddings_and_head_map(env):
    at = page("clusters.py")
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader][:2] == ["Cluster sizes", "Embedding of the heads"]
    at.radio[0].set_value("UMAP").run()
    assert not at.exception
    assert any("UMAP" in c.proto.spec for c in at.get("plotly_chart"))
    picker = next(s for s in at.selectbox if s.label == "Head details: layer/head")
    picker.set_value(1).run()  # head L0H1: its details and attention maps
    assert not at.exception


def test_clusters_page_shows_the_premise_check(env, tiny_view):
    at = page("clusters.py")
    assert "Does CAHP's premise hold here?" in [s.value for s in at.subheader]
    saved = tiny_view.diagnostics
    assert _metric(at, "JM vs shuffled labels") == f"{saved['shuffled_correlation']:.2f}"
    assert _metric(at, "Split-half agreement, JS") == f"{saved['mean_agreement']['js']:.2f}"
    from cahp_core.method.diagnostics import Diagnostics

    assert [w.value for w in at.warning] == Diagnostics.from_dict(saved).warnings()


def test_proximity_compares_methods(env):
    at = page("proximity.py")
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["method"]) == ["CAHP", "Gradient (Michel et al.)", "Random"]
    assert (frame["heads kept"] == frame["heads kept"].iloc[0]).all()  # same budget
    assert frame["masked accuracy"].notna().all() and frame["KL from full"].notna().all()
    control = at.segmented_control(key="retraining_free_metric")
    assert control.options == ["Accuracy", "Macro-F1", "KL from full model"]
    control.set_value("kl").run()
    assert not at.exception
    charts = [pio.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("KL from the full model" in str(c.layout.yaxis.title.text) for c in charts)
    at.number_input[0].set_value(7).run()  # another random seed
    assert not at.exception
    at.toggle(key="proximity_raw_gradient").set_value(True).run()
    frame = at.dataframe[0].value
    assert list(frame["method"])[-1] == "Gradient, not layer-normalised"
    assert (frame["heads kept"] == frame["heads kept"].iloc[0]).all()


def test_no_runs_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tmp_path / "missing"))
    for name in ("knee.py", "head_graph.py", "clusters.py", "proximity.py", "export.py"):
        at = page(name)
        assert not at.exception
        assert any("No finished run" in i.value for i in at.info)


def test_a_broken_run_folder_is_an_error_message(tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "selection.json").write_text("{}")  # listed, but not a finished run
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(broken))
    at = page("knee.py")
    assert not at.exception
    assert any("not a finished CAHP run" in e.value for e in at.error)


def test_a_run_from_an_earlier_version_says_recluster(env, tmp_path, monkeypatch, tiny_view):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(tiny_view.path, run, ignore=shutil.ignore_patterns("model", "pruned"))
    manifest = json.loads((run / "manifest.json").read_text())
    for name in ("quality", "n_seeds"):  # a manifest written before the seed sweep
        manifest["config"].pop(name)
    (run / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(run))
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path / "none"))
    for name in ("knee.py", "export.py", "clusters.py"):
        at = page(name)
        assert not at.exception
        assert any("cahp recluster" in e.value for e in at.error), [e.value for e in at.error]


# ---------------------------------------------------------------- run page


def test_run_page_lists_runs_and_rejects_bad_input(env):
    at = page("run.py")
    assert not at.exception
    assert "tiny-run" in list(at.dataframe[0].value["name"])
    _text(at, "Run name").set_value("../escape")
    _launch(at)
    assert not at.exception
    assert any("not allowed" in e.value for e in at.error)
    _text(at, "Run name").set_value("ok-name")
    next(s for s in at.selectbox if s.label == "Task").set_value("Upload a CSV/JSONL file")
    _launch(at)
    assert not at.exception
    assert any("choose a CSV or JSONL file" in e.value for e in at.error)
    assert not (env / "ok-name").exists()  # nothing launched, nothing half-written


@pytest.mark.parametrize(
    ("model", "message"),
    [("no-such-org/no-such-model", "not in the local hub cache"), ("./nowhere", "not found")],
)
def test_run_page_rejects_a_bad_model(env, model, message):
    at = page("run.py")
    _text(at, "Model").set_value(model)
    _text(at, "Run name").set_value("bad-model")
    _launch(at)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not (env / ".jobs" / "bad-model.json").exists()


def test_run_page_rejects_a_finished_name_and_a_missing_data_folder(env):
    at = page("run.py")
    _text(at, "Run name").set_value("tiny-run")
    _launch(at)
    assert any("already exists" in e.value for e in at.error)
    next(s for s in at.selectbox if s.label == "Task").set_value("MNLI").run()
    _text(at, "MNLI data folder (optional)").set_value(str(env / "no-such-folder"))
    _text(at, "Run name").set_value("mnli-run")
    _launch(at)
    assert not at.exception
    assert any("not found" in e.value for e in at.error)


def test_open_and_delete_act_on_the_picked_run(env, tmp_path, monkeypatch):
    import shutil

    for name in ("first", "second"):
        shutil.copytree(env / "tiny-run", tmp_path / name, ignore=shutil.ignore_patterns("model"))
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tmp_path / "missing"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    shown = at.sidebar.selectbox[0].value
    other = "first" if shown == "second" else "second"
    at.switch_page(str(PAGES / "run.py")).run()
    at.selectbox(key="manage_run").set_value(other)
    _button(at, "Open").click().run()  # in one step: the callback must read the new pick
    assert not at.exception, at.exception
    assert at.sidebar.selectbox[0].value == other
    assert any(f"Opened {other}" in s.value for s in at.success)
    at.selectbox(key="manage_run").set_value(shown)
    _button(at, "Delete for good").click().run()
    assert not at.exception and not (tmp_path / shown).exists() and (tmp_path / other).exists()
    assert list(at.dataframe[0].value["name"]) == [other]


# ---------------------------------------------------------------- export page


def _wait_for_export(runs: Path, name: str, timeout: float = 600) -> dict:
    """Poll the background export of run ``name`` until it is no longer running."""
    import time

    from cahp_studio.dashboard.jobs import job_status

    deadline = time.monotonic() + timeout
    while (status := job_status(runs, name, "export"))["state"] == "running":
        assert time.monotonic() < deadline, "the export did not finish in time"
        time.sleep(0.5)
    return status


def test_export_page_exports_the_tiny_run(env, tiny_view):
    """The Knee page's curve and degree (here the performance knee at degree 2) are exported
    by a background job; the page re-attaches to it and shows the result."""
    at = AppTest.from_file(str(PAGES / "export.py"), default_timeout=TIMEOUT)
    at.session_state[f"knee_curve::{tiny_view.path}"] = "performance"
    at.session_state[f"degree::{tiny_view.path}"] = 2
    at.run()
    assert not at.exception
    _button(at, "export").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Export started" in s.value for s in at.success)
    status = _wait_for_export(env, "tiny-run")
    assert status["state"] == "finished", status["log_tail"]
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Saved") for s in at.success)
    folder = env / "exports" / "tiny-run-performance-degree2"
    info = json.loads((folder / "cahp_export.json").read_text())
    expected = tiny_view.selector(2, "performance").support_
    np.testing.assert_array_equal(read_keep(folder), expected)
    assert info["knee_curve"] == "performance" and info["degree"] == 2
    assert not (env / "embedded-example").exists()  # a run of the runs folder: no copy
    assert (folder / "model.onnx").is_file()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Model folder (.zip)" in labels and "One-file HTML report" in labels


def test_the_knee_page_re_exports_at_the_chosen_degree(env, tiny_view):
    """The "Re-export at degree d" button starts the background export, opens Export."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.slider[0].set_value(3).run()
    _button(at, "Re-export at degree 3").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Export"
    assert any("Export started" in s.value for s in at.success)
    status = _wait_for_export(env, "tiny-run")
    assert status["state"] == "finished", status["log_tail"]
    assert status["job"]["degree"] == 3
    info = json.loads((Path(status["job"]["out"]) / "cahp_export.json").read_text())
    assert info["degree"] == 3 and (Path(status["job"]["out"]) / "model.int8.onnx").is_file()


def test_one_export_per_run_at_a_time_and_cancel(env, tiny_view):
    """A second export of a run is refused while one runs; cancel stops it, writes nothing,
    and the runs table says "exporting" meanwhile."""
    from cahp_studio.dashboard.exports import export_dir, start_export
    from cahp_studio.dashboard.jobs import stop_job
    from cahp_studio.dashboard.selection_view import degree_view

    chosen = degree_view(tiny_view, 2, "quality")
    out = start_export(env, tiny_view, chosen, onnx=False)
    assert out == export_dir(env, tiny_view, chosen)
    with pytest.raises(CAHPError, match="already running"):
        start_export(env, tiny_view, degree_view(tiny_view, 3, "quality"), onnx=False)
    at = page("run.py")
    table = at.dataframe[0].value
    assert list(table.loc[table["name"] == "tiny-run", "state"]) == ["exporting"]
    exporter = page("export.py")  # another session re-attaches: running, never a tick
    box = exporter.status[0]
    assert box.state == "running" and ": running" in box.label, (box.state, box.label)
    assert any(b.label == "Cancel export" for b in exporter.button)
    stop_job(env, "tiny-run", "export")
    status = _wait_for_export(env, "tiny-run")
    assert status["state"] == "cancelled"
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    exporter = page("export.py")
    assert any("Cancelled" in w.value for w in exporter.warning)


def test_export_of_a_bundle_copies_it_first(env, tmp_path, monkeypatch, tiny_view):
    """A weightless bundle (like the embedded example) is copied, never written."""
    from cahp_core.runs.results import make_bundle

    bundle = make_bundle(tiny_view.path, tmp_path / "bundle", command="test")
    before = sorted(p.name for p in bundle.iterdir())
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(bundle))
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path / "runs"))
    at = page("export.py")
    assert any("no model weights" in i.value for i in at.info)
    _button(at, "export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    status = _wait_for_export(tmp_path / "runs", "embedded-example")
    assert status["state"] == "finished", status["log_tail"]
    assert sorted(p.name for p in bundle.iterdir()) == before
    copy = tmp_path / "runs" / "embedded-example"
    assert (copy / "model" / "config.json").is_file()  # fine-tuned in the copy
    assert list((tmp_path / "runs" / "exports").glob("*/cahp_export.json"))
    _button(at, "export").click().run()  # a second export re-uses the copy and its model
    assert not at.exception and not at.error, [e.value for e in at.error]
    status = _wait_for_export(tmp_path / "runs", "embedded-example")
    assert status["state"] == "finished", status["log_tail"]
    assert "[finetune] reused from the run folder" in status["log_tail"]
    table = page("run.py").dataframe[0].value  # the working copy is not a run of the user's
    assert list(table["state"]) == ["copy of the example"]


# ---------------------------------------------------------------- pure helpers


def test_figures_are_pure_and_consistent():
    from cahp_studio.dashboard import figures
    from cahp_studio.dashboard.theme import cluster_color

    labels = np.array([0, 1, 1, 2, 0, 2])
    keep = np.array([[True, False, False], [False, False, True]])
    salience = np.linspace(0, 1, 6).reshape(2, 3)
    fig = figures.layer_map_figure(labels, keep, salience)
    assert list(fig.data[0].marker.color) == [cluster_color(c) for c in labels]
    assert len(fig.data[1].x) == 2  # two kept heads as stars
    bars = figures.per_layer_figure({"cahp": keep, "gradient": ~keep})
    assert [list(b.y) for b in bars.data] == [[1, 1], [2, 2]]
    assert [b.marker.color for b in bars.data] == ["#2563eb", "#f97316"]
    sizes = figures.cluster_sizes_figure(labels)
    assert list(sizes.data[0].y) == [2, 2, 2]
    points = np.arange(12, dtype=float).reshape(6, 2)
    emb = figures.embedding_figure(points, labels, keep, "t-SNE")
    assert list(emb.data[0].marker.size) == [15, 9, 9, 9, 9, 15]
    graph = {
        "nodes": [{"id": f"L{i // 3}H{i % 3}", "layer": i // 3, "head": i % 3} for i in range(6)],
        "edges": [{"source": "L0H0", "target": "L1H2", "weight": 0.5}],
    }
    full = figures.graph_figure(graph, labels, keep, salience)
    assert len(full.data[1].x) == 6 and list(full.data[0].x) == [0, 1, None]
    only_0 = figures.graph_figure(graph, labels, keep, salience, clusters=[0])
    assert only_0.data[1].hovertext[0].startswith("layer 0, head 0")
    assert len(only_0.data[1].x) == 2 and list(only_0.data[0].x) == []


def test_knee_and_task_curve_figures():
    from cahp_core.method.knee import find_knee
    from cahp_studio.dashboard import figures

    x = np.arange(2, 30)
    knee = find_knee(x, np.log(x), degree=3)
    fig = figures.knee_figure(knee)
    assert [d.name for d in fig.data] == [
        "cluster quality",
        "polynomial fit, degree 3",
        f"knee k={knee.knee}",
    ]
    line = fig.data[1]  # kneed's fitted values, drawn smooth between the grid points
    assert len(line.x) == 200 and (line.x[0], line.x[-1]) == (x[0], x[-1])
    span = np.ptp(knee.y_fit)
    assert np.allclose(np.interp(knee.x, line.x, line.y), knee.y_fit, atol=1e-3 * span)
    assert fig.layout.shapes[0].x0 == knee.knee
    seeds = {42: knee.knee, 43: knee.knee + 2, 44: knee.knee}
    fig = figures.knee_figure(knee, seeds, y_title="masked accuracy", points_name="measured")
    band, marks = fig.data[0], fig.data[1]
    assert band.fill == "toself" and (min(band.x), max(band.x)) == (knee.knee, knee.knee + 2)
    assert band.legendgroup == marks.legendgroup and band.showlegend is False
    assert marks.name == f"knee of each of 3 seeds (k {knee.knee}–{knee.knee + 2})"
    assert list(marks.x) == [knee.knee, knee.knee + 2] and marks.hovertext[0].endswith("42, 44")
    assert fig.layout.yaxis.title.text == "masked accuracy" and fig.data[2].name == "measured"
    agree = figures.knee_figure(knee, {42: knee.knee, 43: knee.knee})
    assert agree.data[0].name == f"knee of each of 2 seeds (all 2 agree, k={knee.knee})"
    rows = [
        {"degree": d, "knee": 5, "knee_min": 4, "knee_max": 7, "heads": 9}
        | {"heads_min": 8, "heads_max": 9, "fallback": d == 3}
        for d in (2, 3, 4)
    ]
    stability = figures.knee_degree_figure(rows, degree=3)
    knees, heads, legend = stability.data
    assert list(knees.customdata) == [2, 3, 4] and list(knees.error_y.array) == [2, 2, 2]
    assert list(knees.x) < list(heads.x)  # side by side where heads kept equals k
    assert list(heads.error_y.arrayminus) == [1, 1, 1]
    assert list(knees.marker.symbol) == ["circle", "circle-open", "circle"]
    assert legend.name.startswith("open marker")
    assert (stability.layout.shapes[0].x0, stability.layout.shapes[0].x1) == (2.6, 3.4)
    records = [
        {"heads_kept": n, "accuracy": a, "method": m}
        for m, a in (("cahp", 0.5), ("gradient", 0.4))
        for n in (4, 8)
    ]
    curve = figures.task_curve_figure(records, heads_kept=6)
    assert [d.name for d in curve.data] == ["CAHP", "Gradient (Michel et al.)"]


def test_presentation_mode_enlarges_fonts_without_touching_the_figure():
    from cahp_studio.dashboard import figures
    from cahp_studio.dashboard.theme import PRESENTATION_FONT, present

    fig = figures.cluster_sizes_figure(np.array([0, 1, 1]))
    big = present(fig)
    assert big.layout.font.size == PRESENTATION_FONT and fig.layout.font.size is None


def test_graph_html_is_offline_and_filters(tiny_view):
    from cahp_studio.dashboard.graph_view import head_graph_html
    from cahp_studio.dashboard.selection_view import degree_view

    chosen = degree_view(tiny_view, 3)
    args = (tiny_view.graph, chosen.labels, chosen.keep, tiny_view.salience.normalised)
    html = head_graph_html(*args)
    assert "vis.Network" in html and not REMOTE.search(html)
    assert html.count('"shape": "star"') == chosen.heads_kept
    only_layer_0 = head_graph_html(*args, layers=[0])
    assert '"id": "L1H0"' not in only_layer_0 and '"id": "L0H0"' in only_layer_0


def test_selection_view_matches_the_selector(tiny_view):
    from cahp_studio.dashboard.selection_view import degree_view, expected_accuracy, method_maps

    for degree in (2, 3):
        chosen = degree_view(tiny_view, degree)
        selector = tiny_view.selector(degree)
        assert chosen.knee.knee == selector.knee_ and chosen.knee_curve == "quality"
        assert (chosen.keep == selector.support_).all()
        assert chosen.knee_by_seed == selector.knee_by_seed_
        assert chosen.consensus_seed == selector.consensus_seed_
    with pytest.raises(CAHPError, match="no knee"):
        degree_view(tiny_view, 1)
    with pytest.raises(CAHPError, match="unknown knee curve"):
        degree_view(tiny_view, 2, "elbow")
    maps = method_maps(tiny_view, chosen.keep, seed=3)
    assert {int(m.sum()) for m in maps.values()} == {chosen.heads_kept}
    points = sorted(
        (r["heads_kept"], r["accuracy"]) for r in tiny_view.task_curve if r["method"] == "cahp"
    )
    assert expected_accuracy(tiny_view, points[0][0]) == pytest.approx(points[0][1])


def test_report_is_one_offline_file(tiny_view):
    from cahp_studio.dashboard.report import figures_zip, report_html, run_figures
    from cahp_studio.dashboard.selection_view import degree_view

    chosen = degree_view(tiny_view, 2, "performance")
    html = report_html(tiny_view, chosen)
    assert not REMOTE.search(html)  # plotly.js inlined, nothing fetched
    assert "kept heads" in html and f"{chosen.heads_kept} of {chosen.keep.size}" in html
    assert "<th>knee curve</th><td>performance knee</td>" in html
    figs = run_figures(tiny_view, chosen)
    archive = zipfile.ZipFile(io.BytesIO(figures_zip(figs, png=False)))
    names = set(archive.namelist())
    assert {f"figures/{n}.html" for n in figs} <= names and "figures/README.txt" in names


def test_quality_summary_groups_benchmark_records(tmp_path):
    from cahp_studio.dashboard.report import quality_summary

    records = [
        {"task": "sst5", "split": "test", "method": m, "budget_frac": b, "seed": s, "accuracy": a}
        for m, b, a in (("full", 1.0, 0.5), ("cahp", 0.25, 0.4), ("gradient", 0.25, 0.3))
        for s in (1, 2)
    ]
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(records))
    table = quality_summary(path)
    assert list(table["method"]) == ["CAHP", "Gradient (Michel et al.)"]
    assert list(table["seeds"]) == [2, 2] and list(table["accuracy"]) == [0.4, 0.3]
    assert list(table["protocol"]) == ["cpu", "cpu"]  # records from before protocols
    assert list(table["retune"]) == ["re-tuned", "re-tuned"]
    masked = [
        {**r, "protocol": "paper", "retune": False, "macro_f1": 0.2, "kl": 0.1} for r in records
    ]
    path.write_text(json.dumps(records + masked))
    table = quality_summary(path)
    paper = table[table["protocol"] == "paper"]
    assert set(paper["retune"]) == {"masked"} and list(paper["kl"]) == [0.1, 0.1]


def test_uploads_with_their_own_label_column_are_split_for_the_cli(tmp_path):
    """The Run page's upload path: validated split files the CLI's custom task can read."""
    from cahp_core.data import load_task
    from cahp_studio.dashboard.inputs import (
        guess_columns,
        header_columns,
        read_preview,
        save_upload,
        split_upload,
    )

    rows = "".join(f"review {i} is {'good' if i % 2 else 'bad'},{i % 3}\n" for i in range(30))
    upload = FakeUpload("reviews.csv", ("sentence,stars\n" + rows).encode())
    columns = header_columns(upload.getvalue(), upload.name)
    assert columns == ["sentence", "stars"]
    assert guess_columns(columns) == (["sentence"], None)  # no label-like name: ask
    rows = read_preview(upload.getvalue(), upload.name)[1]
    assert guess_columns(columns, rows) == (["sentence"], "stars")  # the column of class ids
    stored = save_upload(upload, tmp_path, "my-run")
    assert stored == tmp_path / ".uploads" / "my-run" / "data.csv"
    folder, num_labels = split_upload(stored, ["sentence"], "stars")
    assert num_labels == 3
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert set(train[0]) == {"sentence", "label"} and len(train) == 27
    task = load_task("custom", data_dir=folder, text_columns=("sentence",), label_column="label")
    assert task.spec.num_labels == 3 and len(task.splits["train"]) == 27
    with pytest.raises(CAHPError, match="no column"):
        split_upload(stored, ["text"], "stars")
    with pytest.raises(CAHPError, match="both"):
        split_upload(stored, ["sentence"], "sentence")
    with pytest.raises(CAHPError, match="limit is 50 MB"):
        save_upload(FakeUpload("big.csv", b"x" * (50 * 1024 * 1024 + 1)), tmp_path, "big")
    with pytest.raises(CAHPError, match=".csv or .jsonl"):
        header_columns(b"a,b\n", "data.xlsx")
    jsonl = b'{"premise": "a", "hypothesis": "b", "label": 0}\n'
    assert guess_columns(header_columns(jsonl, "pairs.jsonl")) == (
        ["premise", "hypothesis"],
        "label",
    )


def test_stage_rows_and_timing_of_a_job():
    from cahp_core.runs.stages import EXPORT_STAGES
    from cahp_core.runs.stages import STAGE_NAMES as STAGES
    from cahp_studio.dashboard.job_view import overall_text
    from cahp_studio.dashboard.jobs import last_error, stage_fractions, timing

    progress = {
        "stages": {
            "finetune": {"fraction": 1.0, "message": "x", "reused": True},
            "export": {"fraction": 0.5, "message": "step 2/4"},
        },
        "overall": 0.5,
        "started": 1000.0,
        "elapsed_s": 60.0,
    }
    rows = stage_fractions(progress, "export")
    assert [r[0] for r in rows] == list(EXPORT_STAGES)
    assert rows[0] == ("finetune", 1.0, "reused from the run folder")
    assert rows[1] == ("export", 0.5, "step 2/4")  # one label, not "export: export: ..."
    assert [r[0] for r in stage_fractions({})] == list(STAGES)
    assert stage_fractions({})[0] == ("finetune", 0.0, "waiting")
    # 10 s after the last write: elapsed keeps counting and the ETA counts down
    times = timing(progress, "running", now=1070.0)
    assert times["elapsed_s"] == 70.0 and times["eta_s"] == 50.0
    assert overall_text(times, "running") == "overall 50% · 1 min 10 s elapsed · about 50 s left"
    assert timing(progress, "failed")["eta_s"] is None
    assert last_error("x\nerror: bad model\n") == "error: bad model"


# ---------------------------------------------------------------- many sessions at once


def _weights_hash(model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_five_sessions_no_cross_talk_and_the_cached_model_is_never_mutated(env, tiny_view):
    import time

    from cahp_core.model.loading import num_labels_of
    from cahp_studio.dashboard.jobs import job_status
    from cahp_studio.dashboard.state import cached_model

    model_dir = env / "tiny-run" / "model"
    cached = cached_model(str(model_dir), num_labels_of(model_dir))
    before = _weights_hash(cached.model)

    sessions = [page("knee.py") for _ in range(5)]
    degrees = [2, 3, 2, 3, 2]
    for at, degree in zip(sessions, degrees, strict=True):
        at.slider[0].set_value(degree).run()
    exporter = page("export.py")  # a sixth view: an export in the background
    _button(exporter, "export").click().run()
    assert not exporter.exception and not exporter.error, [e.value for e in exporter.error]
    launcher = page("run.py")  # and one session launches a real background run
    _text(launcher, "Model").set_value(tiny_view.config.model)
    _text(launcher, "Run name").set_value("launched")
    next(n for n in launcher.number_input if n.label.startswith("Max training")).set_value(64)
    next(n for n in launcher.number_input if n.label.startswith("Max evaluation")).set_value(48)
    next(n for n in launcher.number_input if n.label == "Clustering seeds").set_value(2)
    next(s for s in launcher.selectbox if s.label == "Cluster quality curve").set_value(
        "simplified-silhouette"
    )
    _launch(launcher)
    assert not launcher.exception and not launcher.error, [e.value for e in launcher.error]
    assert any("started in the background" in s.value for s in launcher.success)
    for at, degree in zip(sessions, degrees, strict=True):
        at.run()
        assert at.slider[0].value == degree  # nobody else's degree leaked in
        assert _metric(at, "Knee (clusters)") == str(tiny_view.selector(degree).knee_)
        assert not at.exception
    deadline = (
        time.monotonic() + 420
    )  # a loaded machine: the launched run also diagnoses its premise
    while (status := job_status(env, "launched"))[
        "state"
    ] == "running" and time.monotonic() < deadline:
        time.sleep(1)
    assert status["state"] == "finished", status["log_tail"][-2000:]
    launcher.run()  # the watcher shows the finished run and the table lists it
    assert not launcher.exception
    assert "launched" in list(launcher.dataframe[0].value["name"])
    launched = json.loads((env / "launched" / "manifest.json").read_text())["config"]
    assert (launched["n_seeds"], launched["quality"]) == (2, "simplified-silhouette")
    assert cached_model(str(model_dir), num_labels_of(model_dir)) is cached
    assert _weights_hash(cached.model) == before
    assert _wait_for_export(env, "tiny-run")["state"] == "finished"
