"""Downloaded figures: titled with run, degree and method; one shared plotly.js in the zip;
the one-file report keeps a single inlined copy."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "default_run"
BANNER = re.compile(r"plotly\.js v\d")  # the first line of every copy of plotly.min.js


@pytest.fixture(scope="module")
def example():
    from cahp_core.runs.results import RunView
    from cahp_studio.dashboard.selection_view import degree_view

    view = RunView(EXAMPLE)
    return view, degree_view(view, int(view.selection.get("degree", 3)), "quality")


def test_every_figure_is_titled_with_run_degree_and_method(example):
    from cahp_studio.dashboard.report import run_figures

    view, chosen = example
    figs = run_figures(view, chosen)
    assert {"knee", "layer_map", "per_layer"} <= set(figs)
    for name, fig in figs.items():
        title = fig.layout.title.text
        assert view.path.name in title and f"degree {chosen.degree}" in title, name
        assert "CAHP" in title and f"{chosen.heads_kept} of {chosen.keep.size} heads" in title
    assert "gradient" in figs["per_layer"].layout.title.text
    assert "consensus seed" in figs["tsne"].layout.title.text  # its own title kept


def test_the_figure_zip_shares_one_plotly_js(example):
    from cahp_studio.dashboard.report import figure_html, figures_zip, run_figures

    view, chosen = example
    figs = run_figures(view, chosen)
    data = figures_zip(figs, png=False)
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert names.count("figures/plotly.min.js") == 1
    assert archive.read("figures/plotly.min.js").decode() == get_plotlyjs()
    for name in figs:
        page = archive.read(f"figures/{name}.html").decode()
        assert '<script charset="utf-8" src="plotly.min.js"></script>' in page
        assert not BANNER.search(page) and len(page) < 100_000, name
    # one compressed plotly.js and small pages: was one copy per figure (~1.5 MB each)
    one_copy = archive.getinfo("figures/plotly.min.js").compress_size
    assert len(data) < one_copy + 200_000
    standalone = figure_html(figs["knee"])  # the single-figure download stays standalone
    assert len(BANNER.findall(standalone)) == 1 and 'src="plotly.min.js"' not in standalone


def test_the_report_inlines_plotly_js_once(example):
    from cahp_studio.dashboard.report import report_html

    view, chosen = example
    page = report_html(view, chosen)
    assert len(BANNER.findall(page)) == 1 and 'src="plotly.min.js"' not in page
    assert page.count("<h2>") >= 6


def test_png_export_carries_the_title(example):
    """With kaleido and a Chrome it can start: the PNG is drawn from the titled figure."""
    from cahp_studio.dashboard.report import figure_png, run_figures

    view, chosen = example
    fig = run_figures(view, chosen)["cluster_sizes"]
    png = figure_png(fig)
    if png is None:
        pytest.skip("kaleido cannot start a Chrome/Chromium here")
    assert png.startswith(b"\x89PNG") and fig.layout.title.text and fig.layout.margin.t >= 60
