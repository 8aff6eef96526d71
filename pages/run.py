"""Run: configure and launch CAHP runs in the background; follow, open, stop and delete them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cahp_core.choices import CLUSTERING_METHODS, DISTANCE_METHODS, QUALITY_METHODS
from cahp_core.errors import CAHPError
from cahp_core.runs.config import PRESET_HELP, PRESETS
from cahp_core.runs.folder import list_runs, safe_run_dir
from cahp_core.runs.run_format import SUMMARY
from cahp_studio.dashboard.inputs import (
    MAX_UPLOAD_MB,
    ask_label,
    check_model,
    guess_columns,
    read_preview,
    run_settings,
)
from cahp_studio.dashboard.job_view import show_job
from cahp_studio.dashboard.jobs import job_status, launch_run, stop_run
from cahp_studio.dashboard.run_folders import delete_run_folder, run_state
from cahp_studio.dashboard.state import Key, finished_runs, page, runs_root, show_message

TASKS = {"SST-5 (bundled)": "sst5", "MNLI": "mnli", "Upload a CSV/JSONL file": "custom"}


def _say(kind: str, text: str) -> None:
    """A message shown once at the top of the next run of this page (set from callbacks)."""
    st.session_state[Key.RUN_PAGE_MESSAGE] = (kind, text)


def open_run(name: str) -> None:
    """Callback: make ``name`` the run every page shows (before the sidebar picker is drawn)."""
    if name in finished_runs():
        st.session_state[Key.RUN_LABEL] = name
        _say("success", f"Opened {name}: every page now shows it.")
    else:
        _say("error", f"run {name} has not finished yet; open it once it has")


def follow(name: str) -> None:
    st.session_state[Key.WATCH_RUN] = name


def stop(name: str) -> None:
    try:
        stop_run(runs_root(), name)
        _say("warning", f"Stopped {name}; launch it again with the same settings to resume it.")
    except (CAHPError, OSError) as exc:
        _say("error", str(exc))


def remove(name: str) -> None:
    try:
        delete_run_folder(runs_root(), name)
        if st.session_state.get(Key.WATCH_RUN) == name:
            del st.session_state[Key.WATCH_RUN]
        _say("success", f"Deleted {name}")
    except (CAHPError, OSError) as exc:
        _say("error", str(exc))


def on_picked(action) -> None:
    """Callback: apply ``action`` to the run picked now (not the one when the button was drawn)."""
    name = st.session_state.get(Key.MANAGE_RUN)
    if name:
        action(name)


def task_inputs(task: str) -> dict:
    """Task-specific inputs outside the form, so they follow the task and the uploaded file."""
    chosen: dict = {"data_dir": "", "upload": None, "text_columns": [], "label_column": None}
    if task == "mnli":
        chosen["data_dir"] = st.text_input(
            "MNLI data folder (optional)",
            "",
            help="A folder with train and validation_matched files (.jsonl or .csv). "
            "Empty: the Hugging Face hub cache.",
        )
    elif task == "custom":
        upload = st.file_uploader(
            f"CSV or JSONL file (at most {MAX_UPLOAD_MB} MB)",
            type=["csv", "jsonl"],
            max_upload_size=MAX_UPLOAD_MB,
            help="Split into train (90%) and validation (10%) with a fixed seed. Labels must be "
            "class ids 0, 1, 2, …",
        )
        chosen["upload"] = upload
        if upload is not None:
            try:
                columns, rows = read_preview(upload.getvalue(), upload.name)
            except CAHPError as exc:
                st.error(str(exc))
                return chosen
            text, label = guess_columns(columns, rows)
            if label is None:
                st.warning(ask_label(upload.name, columns))
            c1, c2 = st.columns(2)
            chosen["text_columns"] = c1.multiselect(
                "Text column(s)",
                columns,
                default=text,
                max_selections=2,
                help="One column, or two for sentence pairs.",
            )
            chosen["label_column"] = c2.selectbox(
                "Label column",
                columns,
                index=None if label is None else columns.index(label),
                placeholder="Pick the column of class ids",
                help="The column that holds the class ids 0, 1, 2, …",
            )
    return chosen


def seed_span(summary: dict) -> str | None:
    """``"13–14"``: the heads kept by the run's clustering seeds (None before the seed sweep)."""
    heads = (summary.get("knee_spread") or {}).get("heads")
    return None if heads is None else f"{heads['min']}–{heads['max']}"


def launch(task: str, form: dict, inputs: dict) -> None:
    root = runs_root()
    name = form["name"].strip()
    run_dir = safe_run_dir(root, name)
    status = job_status(root, name)
    if status is not None and status["state"] == "running":
        raise CAHPError(f"run {name} is already running")
    if SUMMARY.exists(run_dir):
        raise CAHPError(f"run {name} already exists and is finished; pick another name")
    warning = check_model(form["model"])
    pid = launch_run(root, name, run_settings(task, form, inputs, root, name))
    st.session_state[Key.WATCH_RUN] = name
    if warning:
        st.warning(warning)
    resumed = " (resuming the unfinished run of that name)" if run_dir.exists() else ""
    st.success(
        f"Run {name} started in the background (pid {pid}){resumed}. Other pages keep working."
    )


@st.fragment(run_every=2.0)
def watch(name: str) -> None:
    """Live progress of a background run, polled every 2 s."""
    status = job_status(runs_root(), name)
    if status is None:
        return
    state = status["state"]
    show_job(status, "run", f"Run {name}")
    if state == "running":
        st.button("Stop this run", on_click=stop, args=(name,), key=f"stop::{name}")
    elif state == "finished":
        if st.button(
            "Open it", on_click=open_run, args=(name,), key=f"open::{name}", type="primary"
        ):
            st.rerun(scope="app")  # a fragment's button reruns only the fragment
        if st.session_state.get(Key.REFRESHED) != name:  # let the sidebar list the new run
            st.session_state[Key.REFRESHED] = name
            st.rerun(scope="app")


def runs_table(runs: list[dict]) -> pd.DataFrame:
    root = runs_root()
    rows = []
    for r in runs:
        summary = r["summary"] or {}
        rows.append(
            {
                "name": r["name"],
                "state": run_state(root, r),
                "model": r["config"].get("model"),
                "task": r["config"].get("task"),
                "preset": r["config"].get("preset"),
                "stages done": len(r["stages_done"]),
                "heads kept": summary.get("heads_kept"),
                "heads across seeds": seed_span(summary),
                "accuracy full": summary.get("accuracy_full"),
                "accuracy pruned": summary.get("accuracy_pruned"),
                "created": r["created"],
            }
        )
    return pd.DataFrame(rows)


page("Run CAHP", needs_run=False)
root = runs_root()
st.caption(
    f"Runs are saved in `{root}` (set `CAHP_RUNS_DIR` to change it). A run works in a background "
    "process: keep exploring the other pages meanwhile."
)
show_message(Key.RUN_PAGE_MESSAGE)

task = TASKS[st.selectbox("Task", list(TASKS))]
inputs = task_inputs(task)
with st.form("new-run"):
    c1, c2 = st.columns(2)
    form = {
        "model": c1.text_input(
            "Model", "minilm-l6", help="minilm-l6 (offline), a local model folder, or a hub id"
        ),
        "name": c2.text_input("Run name", "my-run", help="letters, digits, '.', '_' and '-'"),
        "preset": c1.selectbox(
            "Preset",
            list(PRESETS),
            help=PRESET_HELP,
        ),
        "degree": c2.number_input(
            "Polynomial degree",
            min_value=2,
            max_value=12,
            value=6,
            help="degree of the polynomial fitted to the curve before its knee is found "
            "(degree 1 is a straight line, which has no knee); change it later on the Knee page",
        ),
        "clustering": c1.selectbox("Clustering", CLUSTERING_METHODS),
        "distance": c2.selectbox(
            "Distance", DISTANCE_METHODS, help="jm: Jeffries–Matusita, js: Jensen–Shannon"
        ),
        "quality": c1.selectbox(
            "Cluster quality curve",
            QUALITY_METHODS,
            help="mss: the authors' mean simplified silhouette (paper); simplified-silhouette: "
            "nearest other medoid, every medoid scores 1 (this project's earlier curve)",
        ),
        "seeds": c2.number_input(
            "Clustering seeds",
            min_value=1,
            max_value=20,
            value=5,
            help="t-SNE / k-medoids seeds; the knee is shown with its spread over them and the "
            "export uses their consensus",
        ),
        "max_train": c1.number_input(
            "Max training examples (0 = the preset's)",
            min_value=0,
            value=0,
            step=500,
            help="a seeded subset of the training split, for a faster run",
        ),
        "max_eval": c2.number_input(
            "Max evaluation examples (0 = the preset's)",
            min_value=0,
            value=0,
            step=100,
            help="a seeded subset of the evaluation split, for a faster accuracy curve",
        ),
    }
    submitted = st.form_submit_button("Launch run", type="primary")

if submitted:
    try:
        launch(task, form, inputs)
    except (CAHPError, OSError) as exc:  # bad input, or the runs folder cannot be written
        st.error(str(exc))

if st.session_state.get(Key.WATCH_RUN):
    watch(st.session_state[Key.WATCH_RUN])

st.subheader("Runs")
runs = list_runs(root)
if not runs:
    st.caption(
        f"No runs in {root} yet. Launch one above, or from a shell: "
        "`cahp run --model minilm-l6 --task sst5 --preset quick --out runs/demo`"
    )
else:
    st.dataframe(runs_table(runs), hide_index=True, width="stretch")
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    target = c1.selectbox("Run", [r["name"] for r in runs], key=Key.MANAGE_RUN)
    c2.button("Open", on_click=on_picked, args=(open_run,), width="stretch")
    c3.button("Follow", on_click=on_picked, args=(follow,), width="stretch")
    with c4.popover("Delete", width="stretch"):
        st.write(f"Delete run **{target}** and its files for good?")
        st.button("Delete for good", on_click=on_picked, args=(remove,), type="primary")
