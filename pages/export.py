"""Export: prune with the chosen degree, fine-tune once, evaluate, save; downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import streamlit as st

from cahp_core.errors import CAHPError
from cahp_core.models import num_labels_of
from cahp_core.pipeline import export_with_degree
from cahp_core.results import RunView
from dashboard.report import (
    figure_html,
    figure_png,
    figures_zip,
    report_html,
    run_figures,
    zip_folder,
)
from dashboard.selection_view import CURVE_NAMES, DegreeView, rule_flags, rule_text
from dashboard.state import cached_model, current_selection, current_view, runs_root

EXAMPLE_COPY = "embedded-example"
COPY_MARKER = "copied_from.txt"


def writable_run(path: Path) -> Path:
    """A run folder export may write to: runs in the runs folder as they are; the embedded
    example (read-only, in assets/) through a copy of it in the runs folder."""
    root = runs_root().resolve()
    if path.resolve().parent == root:
        return path
    copy = root / EXAMPLE_COPY
    marker = copy / COPY_MARKER
    if (copy / "manifest.json").is_file():
        if not marker.is_file() or marker.read_text().strip() != str(path.resolve()):
            raise CAHPError(f"{copy} exists and is not a copy of {path}; rename or delete it")
        return copy
    if copy.exists():
        raise CAHPError(f"{copy} exists and is not a run; rename or delete it")
    shutil.copytree(path, copy)
    marker.write_text(str(path.resolve()) + "\n")
    return copy


def run_export(
    view: RunView, degree: int, knee_curve: str, rule: tuple, out_dir: Path, onnx: bool
) -> dict | None:
    """Export the selection of ``degree`` on ``knee_curve`` (what the Knee page shows) with
    live progress; shows errors with st.error and returns None on failure."""
    with st.status("Exporting…", expanded=True) as status:
        bar = st.progress(0.0, text="starting")

        def progress(stage: str, fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=f"{stage}: {message}")

        try:
            model = None
            if view.has_model:
                model_dir = view.path / "model"
                model = cached_model(str(model_dir), num_labels_of(model_dir))
            else:
                st.write("Fine-tuning the full model first (this run has no weights).")
            info = export_with_degree(
                writable_run(view.path),
                degree,
                out_dir,
                knee_curve=knee_curve,
                **dict(rule),
                onnx=onnx,
                progress=progress,
                model=model,
            )
        except (CAHPError, OSError) as exc:  # bad run folder, no disk space, no permission
            status.update(label="Export failed", state="error")
            st.error(str(exc))
            return None
        status.update(label="Export finished", state="complete")
    return info


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


st.title("Export")
view = current_view()
if view is not None:
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
    onnx = st.checkbox("Also export ONNX", value=True)
    rule_name = dict(chosen.rule)["rule"]
    suffix = "" if rule_name == "complementary" else f"-{rule_name}"
    out_dir = runs_root() / "exports" / f"{view.path.name}-{knee_curve}-degree{degree}{suffix}"
    st.caption(f"Output folder: `{out_dir}`")
    key = f"export::{view.path}::{knee_curve}::{degree}::{chosen.rule}"
    if st.button("Prune, fine-tune once and export", type="primary"):
        info = run_export(view, degree, knee_curve, chosen.rule, out_dir, onnx)
        if info is not None:
            st.session_state[key] = str(out_dir)
            if np.asarray(info.get("kept"), dtype=bool).tolist() != chosen.keep.tolist():
                st.error(
                    "The export kept other heads than this page shows; please report this "
                    f"(page: {chosen.heads_kept} heads, export: {info['heads_kept']})."
                )
            st.success(
                f"Saved {out_dir}: {info['heads_kept']} heads, accuracy after one fine-tune "
                f"{info['accuracy_pruned']:.3f} (masked before: {info['accuracy_masked']:.3f}), "
                f"{info['params_pruned']:,} of {info['params_full']:,} parameters."
            )
    exported = Path(st.session_state.get(key, out_dir))
    downloads(view, chosen, exported if (exported / "kept_heads.json").is_file() else None)
