"""Export: prune with the chosen degree, fine-tune once, evaluate, save; downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from cahp_core.errors import CAHPError
from cahp_core.models import num_labels_of
from cahp_core.pipeline import export_with_degree
from dashboard.report import figure_html, report_html, run_figures, zip_folder
from dashboard.selection_view import degree_view
from dashboard.state import cached_model, current_degree, current_view, default_run, runs_root

st.title("Export")
view = current_view()


def writable_run(path: Path) -> Path:
    """The embedded example is read-only: work on a copy of it in the runs folder."""
    if path.resolve() != default_run().resolve():
        return path
    copy = runs_root() / "embedded-example"
    if not (copy / "manifest.json").is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, copy)
    return copy


if view is not None:
    degree = current_degree(view)
    chosen = degree_view(view, degree)
    st.write(
        f"Degree **{degree}** (set on the Knee page): knee at **{chosen.knee.knee}** clusters, "
        f"**{chosen.heads_kept}** of {chosen.keep.size} heads kept, per layer "
        f"{list(map(int, chosen.keep.sum(axis=1)))}."
    )
    if not view.has_model:
        st.info(
            "This run has no model weights (the embedded example ships none). Export first "
            "fine-tunes the full model with the run's settings — minutes on a CPU — then prunes."
        )
    onnx = st.checkbox("Also export ONNX", value=True)
    out_dir = runs_root() / "exports" / f"{view.path.name}-degree{degree}"
    if st.button("Prune, fine-tune once and export", type="primary"):
        bar = st.progress(0.0, text="starting")
        with st.status("Exporting…", expanded=True) as status:

            def progress(stage: str, fraction: float, message: str) -> None:
                bar.progress(min(max(fraction, 0.0), 1.0), text=f"{stage}: {message}")

            try:
                model = None
                if view.has_model:
                    model = cached_model(
                        str(view.path / "model"), num_labels_of(view.path / "model")
                    )
                info = export_with_degree(
                    writable_run(view.path),
                    degree,
                    out_dir,
                    onnx=onnx,
                    progress=progress,
                    model=model,
                )
            except CAHPError as exc:
                status.update(label="Export failed", state="error")
                st.error(str(exc))
            else:
                status.update(label="Export finished", state="complete")
                st.session_state[f"export::{view.path}::{degree}"] = str(out_dir)
                st.success(
                    f"Saved {out_dir}: {info['heads_kept']} heads, accuracy after one fine-tune "
                    f"{info['accuracy_pruned']:.3f} (masked before: {info['accuracy_masked']:.3f})."
                )
    exported = st.session_state.get(f"export::{view.path}::{degree}")
    if exported is None and (out_dir / "kept_heads.json").is_file():
        exported = str(out_dir)
    st.subheader("Downloads")
    cols = st.columns(2)
    if exported:
        cols[0].download_button(
            "Model folder (.zip)",
            zip_folder(Path(exported)),
            file_name=f"{Path(exported).name}.zip",
            mime="application/zip",
        )
    if cols[1].button("Build the one-file HTML report"):
        st.session_state[f"report::{view.path}::{degree}"] = report_html(view, chosen)
    report = st.session_state.get(f"report::{view.path}::{degree}")
    if report:
        cols[1].download_button(
            "Download the report",
            report,
            file_name=f"cahp-report-{view.path.name}-d{degree}.html",
            mime="text/html",
        )
    figs = run_figures(view, chosen)
    name = st.selectbox("Figure", list(figs))
    st.download_button(
        f"Download {name}.html", figure_html(figs[name]), file_name=f"{name}.html", mime="text/html"
    )
