"""The runs folder as the Run page manages it: the state of each run, and deleting a run
with everything the dashboard kept about it (its job files and uploaded data)."""

from __future__ import annotations

from pathlib import Path

from cahp_core.errors import CAHPError
from cahp_core.runs.folder import delete_run

from .exports import is_example_copy
from .inputs import remove_upload
from .jobs import forget_job, job_status


def run_state(root: Path, run: dict) -> str:
    """What the runs table says about a run: exporting, running, finished, ..."""
    export = job_status(root, run["name"], "export")
    if export is not None and export["state"] == "running":
        return "exporting"
    status = job_status(root, run["name"])
    if status is not None:
        return status["state"]
    if is_example_copy(root / run["name"]):
        return "copy of the example"  # made to export from the embedded example
    return "finished" if run["summary"] else "incomplete"


def delete_run_folder(root: Path, name: str) -> None:
    """Delete run ``name``, its job files and its upload; a CAHPError while it runs or exports."""
    state = run_state(root, {"name": name, "summary": None})
    if state in ("running", "exporting"):
        raise CAHPError(f"run {name} is {state}; stop it first")
    delete_run(root, name)
    forget_job(root, name)
    remove_upload(root, name)
