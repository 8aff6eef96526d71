"""Background runs: the CLI in a subprocess, progress read back from a JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cahp_core.atomic import write_json_atomic

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


def job_status(runs_root: Path, name: str) -> dict | None:
    """``{"state": running|finished|failed, "progress": {...}, "log_tail": str}`` or None."""
    files = job_files(runs_root, name)
    if not files["job"].is_file():
        return None
    job = json.loads(files["job"].read_text())
    progress = json.loads(files["progress"].read_text()) if files["progress"].is_file() else {}
    log_tail = files["log"].read_text(errors="replace")[-3000:] if files["log"].is_file() else ""
    if (runs_root / name / "summary.json").is_file():
        state = "finished"
    elif _alive(int(job["pid"])):
        state = "running"
    else:
        state = "failed"
    return {"state": state, "progress": progress, "log_tail": log_tail, "pid": job["pid"]}
