"""Export: prune with the chosen degree, fine-tune once, evaluate, save — as a background
job that survives the tab; its progress, cancel button and downloads."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from cahp_core.errors import CAHPError
from cahp_core.runs.results import RunView
from cahp_core.runs.run_format import EXPORT_INFO
from cahp_studio.dashboard.exports import EXAMPLE_COPY, export_dir, export_job, start_export
from cahp_studio.dashboard.job_view import show_job
from cahp_studio.dashboard.jobs import stop_job
from cahp_studio.dashboard.report import (
    figure_html,
    figure_png,
    figures_zip,
    report_html,
    run_figures,
    zip_folder,
)
from cahp_studio.dashboard.selection_view import CURVE_NAMES, DegreeView, rule_flags, rule_text
from cahp_studio.dashboard.state import Key, current_selection, page, runs_root, show_message


def launch(view: RunView, chosen: DegreeView, onnx: bool, int8: bool) -> None:
    """Callback: start the export in the background (it survives this tab)."""
    try:
        out = start_export(runs_root(), view, chosen, onnx, int8)
        st.session_state[Key.EXPORT_MESSAGE] = ("success", f"Export started: it writes `{out}`.")
    except (CAHPError, OSError) as exc:  # already running, no disk space, no permission
        st.session_state[Key.EXPORT_MESSAGE] = ("error", str(exc))


def cancel(name: str) -> None:
    """Callback: stop the running export; its staging folder is removed, nothing is written."""
    try:
        stop_job(runs_root(), name, "export")
        st.session_state[Key.EXPORT_MESSAGE] = ("warning", "Export cancelled; nothing was written.")
    except (CAHPError, OSError) as exc:
        st.session_state[Key.EXPORT_MESSAGE] = ("error", str(exc))


def finished_text(out: Path) -> str:
    """One line about a finished export, from the folder's own ``cahp_export.json``."""
    info = json.loads((out / EXPORT_INFO).read_text())
    return (
        f"Saved `{out}`: {info['heads_kept']} heads, accuracy after one fine-tune "
        f"{info['accuracy_pruned']:.3f} (masked before: {info['accuracy_masked']:.3f}), "
        f"{info['params_pruned']:,} of {info['params_full']:,} parameters"
        + (
            f", int8 ONNX accuracy {info['accuracy_int8']:.3f}"
            if info.get("accuracy_int8") is not None
            else ""
        )
        + ". The folder holds "
        "a model card (README.md) and loads with `cahp_core.model.pruning.load_pruned` or plain "
        "`transformers` (`trust_remote_code=True`)."
    )


@st.fragment(run_every=2.0)
def export_progress(view: RunView, chosen: DegreeView) -> None:
    """The latest export of this run: live while it runs (any tab re-attaches to it)."""
    status = export_job(runs_root(), view)
    if status is None:
        return
    job = status["job"]
    title = f"Export of degree {job.get('degree')} ({job.get('knee_curve')} knee)"
    show_job(status, "export", title)
    name = Path(job.get("run", "")).name
    if status["state"] == "running":
        st.button("Cancel export", on_click=cancel, args=(name,), key=f"cancel::{name}")
    elif status["state"] == "finished":
        out = Path(job["out"])
        st.success(finished_text(out))
        if job.get("kept") is not None and job["kept"] != chosen.keep.tolist():
            if job.get("degree") == chosen.degree and job.get("knee_curve") == chosen.knee_curve:
                st.error(
                    "The export kept other heads than this page shows; please report this "
                    f"(page: {chosen.heads_kept} heads, export: {job.get('heads_kept')})."
                )
            else:
                st.caption(
                    "That export is of another selection than this page now shows; export "
                    "again to write this one."
                )
        if st.session_state.get(Key.EXPORT_SEEN) != str(out):  # the downloads below follow it
            st.session_state[Key.EXPORT_SEEN] = str(out)
            st.rerun(scope="app")


def downloads(view: RunView, chosen: DegreeView, exported: Path | None) -> None:
    """Model zip, HTML report and figures; files are built only when a button is clicked."""
    st.subheader("Downloads")
    cols = st.columns(3)
    if exported is not None:
        cols[0].download_button(
            "Model folder (.zip)",
            lambda: zip_folder(exported),
            file_name=f"{exported.name}.zip",
            mime="application/zip",
            on_click="ignore",
            type="primary",
        )
    else:
        cols[0].caption("Export first to download the pruned model.")
    cols[1].download_button(
        "One-file HTML report",
        lambda: report_html(view, chosen),
        file_name=f"cahp-report-{view.path.name}-{chosen.knee_curve}-d{chosen.degree}.html",
        mime="text/html",
        on_click="ignore",
        help="Summary, every figure (works offline) and the kept-head table, for presentations.",
    )
    figs = run_figures(view, chosen)
    cols[2].download_button(
        "All figures (.zip, HTML + PNG)",
        lambda: figures_zip(figs),
        file_name=f"cahp-figures-{view.path.name}-{chosen.knee_curve}-d{chosen.degree}.zip",
        mime="application/zip",
        on_click="ignore",
        help="PNG files are included when kaleido can start a Chrome/Chromium; HTML always.",
    )
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = c1.selectbox("Figure", list(figs))
    c2.download_button(
        f"{name}.html",
        lambda: figure_html(figs[name]),
        file_name=f"{name}.html",
        mime="text/html",
        on_click="ignore",
    )
    key = f"png::{view.path}::{chosen.knee_curve}::{chosen.degree}::{chosen.rule}::{name}"
    if c3.button(f"Render {name}.png"):
        st.session_state[key] = figure_png(figs[name]) or b""
    png = st.session_state.get(key)
    if png:
        c3.download_button(f"{name}.png", png, file_name=f"{name}.png", mime="image/png")
    elif png == b"":
        st.info("PNG needs kaleido with a Chrome/Chromium it can start; download the HTML instead.")


view = page("Export")
degree, knee_curve, chosen = current_selection(view)
st.write(
    f"Degree **{degree}** on the **{CURVE_NAMES[knee_curve]}**, selection rule "
    f"**{rule_text(chosen.rule)}** (all set on the Knee page): "
    f"knee at **{chosen.knee.knee}** clusters, **{chosen.heads_kept}** of {chosen.keep.size} "
    f"heads kept, per layer {list(map(int, chosen.keep.sum(axis=1)))}. This is the "
    f"consensus seed's selection (seed {chosen.consensus_seed}, one of {chosen.n_seeds} "
    f"clustering seeds; knee: {chosen.seed_range('knee')}; heads kept: "
    f"{chosen.seed_range('heads')}), the one "
    f"`cahp export RUN --degree {degree} --knee-curve {knee_curve}"
    f"{(' ' + rule_flags(chosen.rule)) if rule_flags(chosen.rule) else ''}` writes."
)
if chosen.knee.fallback:
    st.caption(f"Fallback knee: {chosen.knee.reason}.")
if not view.has_model:
    st.info(
        "This run has no model weights (the embedded example ships none). Export first "
        "fine-tunes the full model with the run's settings — several minutes on a CPU — "
        f"then prunes. The example is copied to `{runs_root() / EXAMPLE_COPY}` first: "
        "the bundled files are never written."
    )
left, right = st.columns(2)
onnx = left.checkbox("Also export ONNX (fused for ONNX Runtime)", value=True)
int8 = right.checkbox(
    "…and its int8 version",
    value=True,
    disabled=not onnx,
    help="Dynamic int8 quantization of the ONNX graph: faster on CPUs; its accuracy is "
    "measured on the evaluation split and shown in the model card.",
)
out_dir = export_dir(runs_root(), view, chosen)
st.caption(
    f"Output folder: `{out_dir}`. The export runs in the background: closing or reloading "
    "this tab does not stop it, and any tab shows its progress here."
)
st.button(
    "Prune, fine-tune once and export",
    type="primary",
    on_click=launch,
    args=(view, chosen, onnx, onnx and int8),
)
show_message(Key.EXPORT_MESSAGE)
export_progress(view, chosen)
downloads(view, chosen, out_dir if (out_dir / EXPORT_INFO).is_file() else None)
