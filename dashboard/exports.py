"""Exports as background jobs: where an export of the session's selection goes, the
``cahp export`` arguments that write it, and launching it (Export page, Knee page)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cahp_core.errors import CAHPError
from cahp_core.runs.results import RunView
from cahp_core.runs.run_format import MANIFEST

from .jobs import job_status, launch_export
from .selection_view import DegreeView

EXAMPLE_COPY = "embedded-example"
COPY_MARKER = "copied_from.txt"


def is_example_copy(run_dir: Path) -> bool:
    """A working copy of the embedded example (made to export from it), not a user's run."""
    return (run_dir / COPY_MARKER).is_file()


def writable_run(path: Path, runs_root: Path) -> Path:
    """A run folder an export may write to: runs in the runs folder as they are; the
    embedded example (read-only, in assets/) through a copy of it in the runs folder."""
    root = runs_root.resolve()
    if path.resolve().parent == root:
        return path
    copy = root / EXAMPLE_COPY
    marker = copy / COPY_MARKER
    if MANIFEST.exists(copy):
        if not marker.is_file() or marker.read_text().strip() != str(path.resolve()):
            raise CAHPError(f"{copy} exists and is not a copy of {path}; rename or delete it")
        return copy
    if copy.exists():
        raise CAHPError(f"{copy} exists and is not a run; rename or delete it")
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{EXAMPLE_COPY}.copying"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(path, staging)
    (staging / COPY_MARKER).write_text(str(path.resolve()) + "\n")
    staging.rename(copy)  # whole or not at all
    return copy


def rule_name(chosen: DegreeView) -> str:
    return str(dict(chosen.rule)["rule"])


def export_dir(runs_root: Path, view: RunView, chosen: DegreeView) -> Path:
    """``RUNS/exports/<run>-<curve>-degree<d>[-<rule>]``."""
    name = rule_name(chosen)
    suffix = "" if name == "complementary" else f"-{name}"
    run = EXAMPLE_COPY if view.path.resolve().parent != runs_root.resolve() else view.path.name
    return runs_root / "exports" / f"{run}-{chosen.knee_curve}-degree{chosen.degree}{suffix}"


def export_args(chosen: DegreeView, onnx: bool, int8: bool = False) -> list[str]:
    """The ``cahp export RUN`` flags (without --out) that write ``chosen``."""
    args = ["--degree", str(chosen.degree), "--knee-curve", chosen.knee_curve]
    settings = dict(chosen.rule)
    if rule_name(chosen) != "complementary":
        for key, value in settings.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args + (["--onnx"] if onnx else []) + (["--quantize", "int8"] if int8 else [])


def export_job(runs_root: Path, view: RunView) -> dict | None:
    """The status of the latest export of ``view``'s run (its working copy for the example)."""
    name = view.path.name if view.path.resolve().parent == runs_root.resolve() else EXAMPLE_COPY
    return job_status(runs_root, name, "export")


def start_export(
    runs_root: Path, view: RunView, chosen: DegreeView, onnx: bool, int8: bool = False
) -> Path:
    """Launch the export of ``chosen`` in the background; returns the folder it will write.

    Refused (CAHPError) while another export of the same run is running."""
    out = export_dir(runs_root, view, chosen)
    status = export_job(runs_root, view)
    if status is not None and status["state"] == "running":
        raise CAHPError(
            f"an export of this run is already running (to {status['job'].get('out')}); "
            "wait for it to finish or cancel it on the Export page"
        )
    run_dir = writable_run(view.path, runs_root)
    about = {
        "degree": chosen.degree,
        "knee_curve": chosen.knee_curve,
        "rule": dict(chosen.rule),
        "heads_kept": chosen.heads_kept,
        "kept": chosen.keep.tolist(),
    }
    launch_export(runs_root, run_dir, out, export_args(chosen, onnx, int8), about)
    return out
