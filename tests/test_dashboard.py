"""Dashboard pages through streamlit's AppTest, against a tiny run made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cahp_core.pipeline import run_pipeline
from cahp_core.testing import save_tiny_model, tiny_run_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
TIMEOUT = 120


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """A runs folder holding one finished tiny run (also used as the embedded default)."""
    root = tmp_path_factory.mktemp("runs")
    model = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    run_pipeline(tiny_run_config(model), root / "tiny-run")
    return root


@pytest.fixture
def env(tiny_runs, monkeypatch):
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tiny_runs))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tiny_runs / "tiny-run"))
    return tiny_runs


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT)
    return at.run()


def test_app_navigation_loads_the_default_page(env):
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Knee" in t.value for t in at.title)
    assert at.sidebar.selectbox[0].options  # the run picker lists the tiny run


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_knee_page_degree_slider_recomputes(env):
    from cahp_core.results import RunView

    at = page("knee.py")
    assert not at.exception
    view = RunView(env / "tiny-run")
    seen = {}
    for degree in (1, 2, 3, 4):
        at.slider[0].set_value(degree).run()
        assert not at.exception
        expected = view.selector(degree)
        assert _metric(at, "Knee (clusters)") == str(expected.knee_)
        assert _metric(at, "Heads kept") == f"{expected.n_heads_kept_} / {expected.support_.size}"
        seen[degree] = expected.knee_
    assert len(at.dataframe) == 1


def test_sessions_do_not_share_the_degree(env):
    first, second = page("knee.py"), page("knee.py")
    first.slider[0].set_value(1).run()
    second.slider[0].set_value(4).run()
    first.run()
    assert first.slider[0].value == 1 and second.slider[0].value == 4


@pytest.mark.parametrize("name", ["head_graph.py", "clusters.py", "proximity.py"])
def test_view_pages_render(env, name):
    at = page(name)
    assert not at.exception, at.exception
    assert at.title and not at.error


def test_head_graph_plotly_view(env):
    at = page("head_graph.py")
    at.radio[0].set_value("Plotly").run()
    assert not at.exception


def test_proximity_compares_methods(env):
    at = page("proximity.py")
    frame = at.dataframe[0].value
    assert list(frame["method"]) == ["CAHP", "Gradient (Michel et al.)", "Random"]
    assert (frame["heads_kept"] == frame["heads_kept"].iloc[0]).all()  # same budget


def _launch(at: AppTest) -> AppTest:
    return next(b for b in at.button if "Launch" in str(b.label)).click().run()


def test_run_page_lists_runs_and_rejects_bad_input(env):
    at = page("run.py")
    assert not at.exception
    assert "tiny-run" in list(at.dataframe[0].value["name"])
    next(t for t in at.text_input if t.label == "Run name").set_value("../escape")
    _launch(at)
    assert not at.exception
    assert any("not allowed" in e.value for e in at.error)
    next(t for t in at.text_input if t.label == "Run name").set_value("ok-name")
    next(s for s in at.selectbox if s.label == "Task").set_value("Upload a CSV/JSONL file")
    _launch(at)
    assert not at.exception
    assert any("choose a CSV or JSONL file" in e.value for e in at.error)
    assert not (env / "ok-name").exists()  # nothing launched, nothing half-written


def test_export_page_exports_the_tiny_run(env):
    at = page("export.py")
    assert not at.exception
    button = next(b for b in at.button if "export" in b.label.lower())
    button.click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    exports = list((env / "exports").glob("*/kept_heads.json"))
    assert exports, "the export folder has no kept_heads.json"
    assert (exports[0].parent / "model.onnx").is_file()


def test_no_runs_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tmp_path / "missing"))
    at = page("knee.py")
    assert not at.exception
    assert any("No finished run" in i.value for i in at.info)


def test_figures_are_pure_and_consistent():
    from dashboard import figures
    from dashboard.theme import cluster_color

    labels = np.array([0, 1, 1, 2, 0, 2])
    keep = np.array([[True, False, False], [False, False, True]])
    fig = figures.layer_map_figure(labels, keep, np.linspace(0, 1, 6).reshape(2, 3))
    assert list(fig.data[0].marker.color) == [cluster_color(c) for c in labels]
    assert len(fig.data[1].x) == 2  # two kept heads as stars
    bars = figures.per_layer_figure({"cahp": keep, "gradient": ~keep})
    assert [list(b.y) for b in bars.data] == [[1, 1], [2, 2]]


def test_graph_html_is_offline(env):
    from cahp_core.results import RunView
    from dashboard.graph_view import head_graph_html
    from dashboard.selection_view import degree_view

    view = RunView(env / "tiny-run")
    chosen = degree_view(view, 3)
    html = head_graph_html(view.graph, chosen.labels, chosen.keep, view.salience.normalised)
    assert "vis-network" in html or "vis.Network" in html
    assert 'src="http' not in html and 'href="http' not in html
    assert os.linesep is not None


def _weights_hash(model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_five_sessions_no_cross_talk_and_the_cached_model_is_never_mutated(env):
    import time

    from cahp_core.models import num_labels_of
    from cahp_core.results import RunView
    from dashboard.jobs import job_status
    from dashboard.state import cached_model

    model_dir = env / "tiny-run" / "model"
    cached = cached_model(str(model_dir), num_labels_of(model_dir))
    before = _weights_hash(cached.model)

    sessions = [page("knee.py") for _ in range(5)]
    degrees = [1, 2, 3, 4, 2]
    for at, degree in zip(sessions, degrees, strict=True):
        at.slider[0].set_value(degree).run()
    exporter = page("export.py")  # a sixth view: export with the shared cached model
    next(b for b in exporter.button if "export" in b.label.lower()).click().run()
    assert not exporter.exception and not exporter.error
    launcher = page("run.py")  # and one session launches a real background run
    next(t for t in launcher.text_input if t.label == "Model").set_value(
        RunView(env / "tiny-run").config.model
    )
    next(t for t in launcher.text_input if t.label == "Run name").set_value("launched")
    next(n for n in launcher.number_input if n.label.startswith("Max training")).set_value(64)
    _launch(launcher)
    assert not launcher.exception and not launcher.error, [e.value for e in launcher.error]
    for at, degree in zip(sessions, degrees, strict=True):
        at.run()
        assert at.slider[0].value == degree  # nobody else's degree leaked in
        assert not at.exception
    deadline = time.monotonic() + 240
    while (status := job_status(env, "launched"))[
        "state"
    ] == "running" and time.monotonic() < deadline:
        time.sleep(1)
    assert status["state"] == "finished", status["log_tail"][-2000:]
    assert cached_model(str(model_dir), num_labels_of(model_dir)) is cached
    assert _weights_hash(cached.model) == before


def test_upload_with_its_own_label_column_is_split_for_the_cli(tmp_path):
    """The Run page's upload path: validated split files the CLI's custom task can read."""
    import json

    from cahp_core.data import load_task

    source = (PAGES / "run.py").read_text()
    helpers = source[: source.index('st.title("Run CAHP")')]
    namespace: dict = {}
    exec(compile(helpers, str(PAGES / "run.py"), "exec"), namespace)  # helpers only, no UI
    upload = tmp_path / "data.jsonl"
    upload.write_text(
        "".join(json.dumps({"review": f"text {i}", "stars": i % 3}) + "\n" for i in range(30))
    )
    folder = namespace["split_upload"](upload, ["review"], "stars")
    task = load_task("custom", data_dir=folder, text_columns=("review",), label_column="label")
    assert task.spec.num_labels == 3 and len(task.splits["train"]) == 27
