"""How a background job (a run or an export) looks on a page: one monotone overall bar
with elapsed time and ETA, a bar per stage, and the error or log when it failed."""

from __future__ import annotations

import streamlit as st

from cahp_core.runs.progress import format_duration

from .jobs import last_error, stage_fractions, timing

STATE_ICONS = {
    "running": "running",
    "finished": "complete",
    "failed": "error",
    "cancelled": "error",
}


def overall_text(times: dict, state: str) -> str:
    """``"overall 42 % · 3 min 05 s elapsed · about 4 min 10 s left"``."""
    text = f"overall {times['overall']:.0%}"
    if times["elapsed_s"] is not None:
        text += f" · {format_duration(times['elapsed_s'])} elapsed"
    if state == "running":
        eta = times["eta_s"]
        text += (
            " · estimating time left" if eta is None else f" · about {format_duration(eta)} left"
        )
    return text


def weights_caption(progress: dict) -> str:
    runs = progress.get("history_runs")
    if not runs:
        return "Stage weights: a default table of stage costs (no finished run here yet)."
    return f"Stage weights: the stage costs measured in {runs} finished run(s) in this folder."


def show_job(status: dict, kind: str, title: str) -> None:
    """Draw one job's state in an ``st.status`` box (expanded unless finished).

    The box is filled through its methods, not a ``with`` block: leaving a ``with
    st.status`` block marks it complete, which would show a tick while the job runs."""
    state = status["state"]
    progress = status["progress"]
    times = timing(progress, state)
    current = progress.get("stage")
    label = f"{title}: {state}" + (f" ({current})" if state == "running" and current else "")
    box = st.status(label, state=STATE_ICONS[state], expanded=state != "finished")
    if state == "failed":
        box.error(last_error(status["log_tail"]))
        box.code(status["log_tail"][-1500:])
        return
    if state == "cancelled":
        box.warning("Cancelled: nothing was written; start it again whenever you like.")
        return
    box.progress(times["overall"], text=overall_text(times, state))
    left, right = box.columns(2)
    for index, (stage, fraction, message) in enumerate(stage_fractions(progress, kind)):
        (left, right)[index % 2].progress(fraction, text=f"{stage}: {message}")
    box.caption(weights_caption(progress))
