"""Background runs: the CLI in a subprocess, progress read back from a JSON file.

Job files live in ``RUNS/.jobs/`` (a run folder must be empty or a run when ``cahp run``
starts, so nothing of the dashboard's is written into it beforehand).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cahp_core.atomic import write_json_atomic
from cahp_core.errors import CAHPError
from cahp_core.pipeline import STAGES

JOBS = ".jobs"


def job_files(runs_root: Path, name: str) -> dict[str, Path]:
    folder = runs_root / JOBS
    return {
        "job": folder / f"{name}.json",
        "progress": folder / f"{name}.progress.json",
        "log": folder / f"{name}.log",
    }


def launch_run(runs_root: Path, name: str, cli_args: list[str]) -> int:
    """Start ``cahp run ... --out RUNS/NAME`` detached from this session; returns its pid."""
    files = job_files(runs_root, name)
    files["job"].parent.mkdir(parents=True, exist_ok=True)
    files["progress"].unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "cahp_core.cli",
        "run",
        *cli_args,
        "--out",
        str(runs_root / name),
        "--progress-json",
        str(files["progress"]),
    ]
    with files["log"].open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
    write_json_atomic(files["job"], {"pid": process.pid, "command": command})
    return process.pid


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)  # reap our own finished children
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def job_status(runs_root: Path, name: str) -> dict | None:
    """``{"state": running|finished|failed, "progress": {...}, "log_tail": str}`` or None."""
    files = job_files(runs_root, name)
    job = _read_json(files["job"]) if files["job"].is_file() else None
    if not job or "pid" not in job:
        return None
    progress = _read_json(files["progress"]) if files["progress"].is_file() else {}
    log_tail = files["log"].read_text(errors="replace")[-3000:] if files["log"].is_file() else ""
    if (runs_root / name / "summary.json").is_file():
        state = "finished"
    elif _alive(int(job["pid"])):
        state = "running"
    else:
        state = "failed"
    return {"state": state, "progress": progress, "log_tail": log_tail, "pid": job["pid"]}


def stage_fractions(progress: dict, finished: bool = False) -> list[tuple[str, float, str]]:
    """(stage, fraction, message) for every pipeline stage in order.

    A stage that never reported but has a later stage reporting counts as done (the graph
    stage reports nothing).
    """
    reported = progress.get("stages", {})
    rows = []
    for index, stage in enumerate(STAGES):
        info = reported.get(stage)
        later = any(s in reported for s in STAGES[index + 1 :])
        if info is not None:
            fraction = min(max(float(info.get("fraction", 0.0)), 0.0), 1.0)
            rows.append((stage, fraction, info.get("message", "")))
        elif later or finished:
            rows.append((stage, 1.0, "done"))
        else:
            rows.append((stage, 0.0, "waiting"))
    return rows


def last_error(log_tail: str) -> str:
    """The engine's one-line ``error: ...`` message of a failed run, if it printed one."""
    lines = [ln for ln in log_tail.splitlines() if ln.startswith("error:")]
    return lines[-1] if lines else "the run stopped; see its log below"


def stop_run(runs_root: Path, name: str) -> None:
    """Stop a running background run (its own process group, started by :func:`launch_run`)."""
    status = job_status(runs_root, name)
    if status is None or status["state"] != "running":
        raise CAHPError(f"run {name} is not running")
    pid = int(status["pid"])
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.is_file() and b"cahp_core.cli" not in cmdline.read_bytes():
        raise CAHPError(f"process {pid} is no longer run {name}; nothing stopped")
    with contextlib.suppress(ProcessLookupError):  # its own session: launch_run made it
        os.killpg(pid, signal.SIGTERM)


def forget_job(runs_root: Path, name: str) -> None:
    """Remove a run's job files (after it was deleted)."""
    for path in job_files(runs_root, name).values():
        path.unlink(missing_ok=True)
