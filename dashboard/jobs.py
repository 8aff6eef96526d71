"""Background jobs: the CLI in a detached subprocess, progress read back from a JSON file.

A job is a ``cahp run`` (kind ``run``) or a ``cahp export`` of a run (kind ``export``). It
outlives the browser tab that started it: any tab re-attaches through :func:`job_status`.
Job files live in ``RUNS/.jobs/`` (runs) and ``RUNS/.jobs/exports/`` (one export per run
at a time); nothing of the dashboard's is written into a run folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cahp_core.atomic import write_json_atomic
from cahp_core.errors import CAHPError
from cahp_core.runs.progress import eta_seconds
from cahp_core.runs.run_format import EXPORT_INFO, SUMMARY
from cahp_core.runs.stages import EXPORT_STAGES, STAGE_NAMES

JOBS = ".jobs"
KINDS = {"run": (JOBS,), "export": (JOBS, "exports")}
STAGES_OF = {"run": STAGE_NAMES, "export": EXPORT_STAGES}
CLI_MARKER = b"cahp_core.cli"


def job_files(runs_root: Path, name: str, kind: str = "run") -> dict[str, Path]:
    """The job's record (pid, command, ...), live progress and log."""
    folder = runs_root.joinpath(*KINDS[kind])
    return {
        "job": folder / f"{name}.json",
        "progress": folder / f"{name}.progress.json",
        "log": folder / f"{name}.log",
        "config": folder / f"{name}.config.json",  # a run's settings (`cahp run --config`)
    }


def _launch(runs_root: Path, name: str, kind: str, command: list[str], record: dict) -> int:
    """Start ``command`` detached (its own session: it survives the dashboard's tab and
    process) with output in the job's log; returns its pid."""
    files = job_files(runs_root, name, kind)
    files["job"].parent.mkdir(parents=True, exist_ok=True)
    files["progress"].unlink(missing_ok=True)
    with files["log"].open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
    write_json_atomic(
        files["job"], {**record, "pid": process.pid, "command": command, "started": time.time()}
    )
    return process.pid


def _cli(subcommand: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cahp_core.cli", subcommand, *args]


def launch_run(runs_root: Path, name: str, settings: dict) -> int:
    """Save ``settings`` (``RunConfig`` fields) beside the job and start ``cahp run --config
    FILE --out RUNS/NAME`` in the background; returns its pid."""
    files = job_files(runs_root, name)
    files["config"].parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(files["config"], settings)
    command = _cli(
        "run",
        *("--config", str(files["config"]), "--out", str(runs_root / name)),
        *("--progress-json", str(files["progress"])),
    )
    return _launch(runs_root, name, "run", command, {})


def launch_export(
    runs_root: Path, run_dir: Path, out_dir: Path, cli_args: list[str], about: dict
) -> int:
    """Start ``cahp export RUN ... --out OUT`` in the background; returns its pid.

    One export per run at a time: a second is refused with CAHPError while one is running.
    ``about`` (degree, knee curve, rule, ...) is recorded for the pages that re-attach."""
    name = run_dir.name
    status = job_status(runs_root, name, "export")
    if status is not None and status["state"] == "running":
        raise CAHPError(
            f"an export of run {name} is already running (to {status['job'].get('out')}); "
            "wait for it to finish or cancel it on the Export page"
        )
    files = job_files(runs_root, name, "export")
    command = _cli(
        "export",
        str(run_dir),
        *cli_args,
        "--out",
        str(out_dir),
        "--progress-json",
        str(files["progress"]),
    )
    record = {**about, "run": str(run_dir), "out": str(out_dir)}
    return _launch(runs_root, name, "export", command, record)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still this job's CLI process (not a finished or reused pid)."""
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
    cmdline = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        if cmdline.is_file() and CLI_MARKER not in cmdline.read_bytes():
            return False  # the pid was reused by another program
    return True


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _finished(kind: str, runs_root: Path, name: str, job: dict, progress: dict) -> bool:
    """Whether the job's process completed its work (the CLI marks its progress complete)."""
    if kind == "export":
        out = Path(job.get("out", ""))
        return progress.get("overall") == 1.0 and (out / EXPORT_INFO).is_file()
    done = SUMMARY.exists(runs_root / name)
    return done and (progress.get("overall") == 1.0 or "overall" not in progress)


def job_status(runs_root: Path, name: str, kind: str = "run") -> dict | None:
    """The job's ``state`` (running | finished | cancelled | failed), ``progress``,
    ``log_tail``, ``pid`` and ``job`` record; None when there is no such job.

    A live process is always "running" (a resumed run already holds an old summary.json);
    a process that ended is "finished" only when it marked its progress complete."""
    files = job_files(runs_root, name, kind)
    job = _read_json(files["job"]) if files["job"].is_file() else {}
    if "pid" not in job:
        return None
    progress = _read_json(files["progress"]) if files["progress"].is_file() else {}
    log_tail = files["log"].read_text(errors="replace")[-3000:] if files["log"].is_file() else ""
    if _alive(int(job["pid"])):
        state = "running"
    elif _finished(kind, runs_root, name, job, progress):
        state = "finished"
    elif job.get("cancelled"):
        state = "cancelled"
    else:
        state = "failed"
    return {
        "state": state,
        "progress": progress,
        "log_tail": log_tail,
        "pid": job["pid"],
        "job": job,
    }


def stage_fractions(progress: dict, kind: str = "run") -> list[tuple[str, float, str]]:
    """(stage, fraction, message) for every stage of the job, in the order they run.

    Stages come from the progress file (the CLI's tracker already completes a stage once a
    later one reports); a stage that has not reported yet is "waiting"."""
    reported = progress.get("stages", {})
    rows = []
    for stage in STAGES_OF[kind]:
        info = reported.get(stage)
        if info is None:
            rows.append((stage, 0.0, "waiting"))
            continue
        fraction = min(max(float(info.get("fraction", 0.0)), 0.0), 1.0)
        message = "reused from the run folder" if info.get("reused") else info.get("message", "")
        rows.append((stage, fraction, message or ("waiting" if fraction == 0.0 else "")))
    return rows


def timing(progress: dict, state: str, now: float | None = None) -> dict:
    """Overall fraction, elapsed seconds and ETA as of ``now`` (the job keeps working
    between two writes of its progress file, so both are extrapolated to the present)."""
    overall = min(max(float(progress.get("overall", 0.0)), 0.0), 1.0)
    started = progress.get("started")
    if state != "running" or started is None:
        elapsed = progress.get("elapsed_s")
        return {"overall": overall, "elapsed_s": elapsed, "eta_s": None}
    now = time.time() if now is None else now
    elapsed = max(now - float(started), 0.0)
    at_update = float(progress.get("elapsed_s", elapsed))
    eta = eta_seconds(overall, at_update)
    if eta is not None:
        eta = max(eta - (elapsed - at_update), 0.0)
    return {"overall": overall, "elapsed_s": elapsed, "eta_s": eta}


def last_error(log_tail: str) -> str:
    """The engine's one-line ``error: ...`` message of a failed job, if it printed one."""
    lines = [ln for ln in log_tail.splitlines() if ln.startswith("error:")]
    return lines[-1] if lines else "the job stopped; see its log below"


def stop_job(runs_root: Path, name: str, kind: str = "run") -> None:
    """Stop a running background job (SIGTERM to its process group: the CLI unwinds,
    removes its temporary folders and releases the run lock)."""
    status = job_status(runs_root, name, kind)
    what = "run" if kind == "run" else "export of run"
    if status is None or status["state"] != "running":
        raise CAHPError(f"the {what} {name} is not running")
    files = job_files(runs_root, name, kind)
    write_json_atomic(files["job"], {**status["job"], "cancelled": True})
    with contextlib.suppress(ProcessLookupError):  # its own session: _launch made it
        os.killpg(int(status["pid"]), signal.SIGTERM)


def stop_run(runs_root: Path, name: str) -> None:
    """Stop a running background run."""
    stop_job(runs_root, name, "run")


def forget_job(runs_root: Path, name: str) -> None:
    """Remove a run's job files, its export's included (after the run was deleted)."""
    for kind in KINDS:
        for path in job_files(runs_root, name, kind).values():
            path.unlink(missing_ok=True)
