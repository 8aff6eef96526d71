"""Run: configure and launch CAHP runs in the background; follow, open and delete them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from cahp_core.atomic import write_text_atomic
from cahp_core.errors import CAHPError
from cahp_core.runs import delete_run, list_runs, safe_run_dir
from dashboard.jobs import job_status, launch_run
from dashboard.state import runs_root

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
TASKS = {"SST-5 (bundled)": "sst5", "MNLI": "mnli", "Upload a CSV/JSONL file": "custom"}


def save_upload(upload, name: str) -> Path:
    """Store an uploaded file under RUNS/.uploads/<run name>/ with a safe file name."""
    if upload.size > MAX_UPLOAD_BYTES:
        raise CAHPError(f"{upload.name} is {upload.size / 1e6:.0f} MB; the limit is 50 MB")
    suffix = Path(upload.name).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise CAHPError(f"{upload.name}: upload a .csv or .jsonl file")
    folder = safe_run_dir(runs_root() / ".uploads", name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"data{suffix}"
    path.write_bytes(upload.getvalue())
    return path


def split_upload(path: Path, text_columns: list[str], label_column: str) -> Path:
    """Validate the uploaded file and write train/validation JSON Lines next to it."""
    import json

    from cahp_core.data import load_task_from_file

    task = load_task_from_file(path, text_columns, label_column)
    folder = path.parent / "splits"
    for split, records in task.splits.items():
        write_text_atomic(folder / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return folder


def upload_columns(path: Path) -> list[str]:
    from cahp_core.data import read_records

    records = read_records(path)
    if not records:
        raise CAHPError(f"{path.name} has no rows")
    return list(records[0])


st.title("Run CAHP")
root = runs_root()
with st.form("new-run"):
    c1, c2 = st.columns(2)
    model = c1.text_input(
        "Model", "minilm-l6", help="minilm-l6 (offline), a local folder, or a hub id"
    )
    task_label = c2.selectbox("Task", list(TASKS))
    data_dir = c1.text_input("Data folder (MNLI, optional)", "", help="e.g. ../shared/data/mnli")
    upload = c2.file_uploader("CSV / JSONL (for an uploaded task)", type=["csv", "jsonl"])
    text_columns = c1.text_input("Text column(s), comma-separated (uploads)", "text")
    label_column = c2.text_input("Label column (uploads)", "label")
    preset = c1.selectbox(
        "Preset", ["quick", "paper"], help="quick: subsets, about 10 minutes on 2 CPU cores"
    )
    degree = c2.number_input("Polynomial degree", min_value=1, max_value=30, value=6)
    clustering = c1.selectbox("Clustering", ["tsne-kmedoids", "graph"])
    distance = c2.selectbox("Distance", ["jm", "js"])
    max_train = c2.number_input(
        "Max training examples (0 = the preset's)",
        min_value=0,
        value=0,
        step=500,
        help="a seeded subset of the training split, for a faster run",
    )
    name = c1.text_input("Run name", "my-run", help="letters, digits, '.', '_' and '-'")
    submitted = st.form_submit_button("Launch run", type="primary")

if submitted:
    try:
        run_dir = safe_run_dir(root, name)
        if (
            run_dir.exists()
            and job_status(root, name)
            and job_status(root, name)["state"] == "running"
        ):
            raise CAHPError(f"run {name} is already running")
        task = TASKS[task_label]
        args = [
            "--model",
            model.strip(),
            "--task",
            task,
            "--preset",
            preset,
            "--degree",
            str(int(degree)),
            "--clustering",
            clustering,
            "--distance",
            distance,
        ]
        if max_train:
            args += ["--max-train", str(int(max_train))]
        if task == "custom":
            if upload is None:
                raise CAHPError("choose a CSV or JSONL file to upload for a custom task")
            stored = save_upload(upload, name)
            columns = [c.strip() for c in text_columns.split(",") if c.strip()]
            found = upload_columns(stored)
            missing = [c for c in (*columns, label_column) if c not in found]
            if missing:
                raise CAHPError(
                    f"{upload.name} has no column(s) {', '.join(missing)}; columns found: {', '.join(found)}"
                )
            args += [
                "--data-dir",
                str(split_upload(stored, columns, label_column)),
                "--text-columns",
                ",".join(columns),
                "--label-column",
                "label",  # the validated split files store the label under "label"
            ]
        elif data_dir.strip():
            if not Path(data_dir.strip()).is_dir():
                raise CAHPError(f"data folder {data_dir} not found")
            args += ["--data-dir", data_dir.strip()]
        if not re.fullmatch(r"[\w./:@-]+", model.strip()):
            raise CAHPError(f"model {model!r} is not an alias, folder or hub id")
        pid = launch_run(root, name, args)
        st.session_state["watch_run"] = name
        st.success(f"Run {name} started in the background (pid {pid}). Other pages keep working.")
    except CAHPError as exc:
        st.error(str(exc))


@st.fragment(run_every=2.0)
def watch(name: str) -> None:
    status = job_status(root, name)
    if status is None:
        return
    st.subheader(f"Run {name}: {status['state']}")
    stages = status["progress"].get("stages", {})
    for stage, info in stages.items():
        st.progress(min(max(float(info["fraction"]), 0.0), 1.0), text=f"{stage}: {info['message']}")
    if status["state"] == "failed":
        error = [line for line in status["log_tail"].splitlines() if line.startswith("error:")]
        st.error(error[-1] if error else "the run stopped; see the log below")
        st.code(status["log_tail"][-1500:])
    elif status["state"] == "finished":
        st.success("Finished: pick it in the sidebar's run list to explore it.")


if st.session_state.get("watch_run"):
    watch(st.session_state["watch_run"])

st.subheader("Runs")
runs = list_runs(root)
if not runs:
    st.caption(f"No runs in {root} yet.")
else:
    table = pd.DataFrame(
        [
            {
                "name": r["name"],
                "model": r["config"].get("model"),
                "task": r["config"].get("task"),
                "stages done": len(r["stages_done"]),
                "heads kept": (r["summary"] or {}).get("heads_kept"),
                "accuracy pruned": (r["summary"] or {}).get("accuracy_pruned"),
                "created": r["created"],
            }
            for r in runs
        ]
    )
    st.dataframe(table, hide_index=True, use_container_width=True)
    c1, c2 = st.columns(2)
    target = c1.selectbox("Run", [r["name"] for r in runs], key="manage_run")
    if c2.button("Open"):
        st.session_state["run_label"] = target
        st.rerun()
    if c2.button("Delete", type="secondary"):
        try:
            delete_run(root, target)
            st.success(f"Deleted {target}")
            st.rerun()
        except CAHPError as exc:
            st.error(str(exc))
