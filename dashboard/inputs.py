"""Checks of what a user types or uploads on the Run page, before anything is launched.

Every problem is raised as a one-line ``CAHPError`` that the page shows with ``st.error``;
messages about an upload name the user's file (never the server's copy) and its line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cahp_core.atomic import write_bytes_atomic, write_text_atomic
from cahp_core.errors import CAHPError
from cahp_core.runs.folder import safe_run_dir

MAX_UPLOAD_MB = 50
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
UPLOAD_SUFFIXES = (".csv", ".jsonl")
UPLOADS = ".uploads"  # RUNS/.uploads/<run>/: a run folder must be empty when `cahp run` starts
PREVIEW_BYTES = 1_000_000  # the start of an upload read to list its columns
LABEL_NAMES = ("label", "labels", "class", "target", "y")
MAX_CLASS_ID = 100  # a column of integers above this is no label column we would guess


class Upload(Protocol):
    """What this module needs of streamlit's ``UploadedFile``."""

    name: str
    size: int

    def getvalue(self) -> bytes: ...


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise CAHPError(f"{name}: upload a .csv or .jsonl file")
    return suffix


def read_preview(data: bytes, name: str) -> tuple[list[str], list[dict]]:
    """Columns and the rows in the first megabyte of an upload, read as the engine reads it.

    A bad line there (not UTF-8, not JSON, too many CSV fields) is reported at once.
    """
    from cahp_core.data import decode_text, parse_text

    suffix = _suffix(name)
    head = data
    if len(data) > PREVIEW_BYTES:  # whole lines only ("\n" is never inside a UTF-8 character)
        cut = data.rfind(b"\n", 0, PREVIEW_BYTES)
        head = data if cut < 0 else data[: cut + 1]
    records, _ = parse_text(decode_text(head, name), suffix, name)
    if not records:
        what = "no rows below its header" if suffix == ".csv" else "no JSON objects"
        raise CAHPError(f"{name} has {what}; add one example a line")
    columns = [c for c in records[0] if str(c).strip()]
    if not columns:
        raise CAHPError(f"{name} has no columns; its first line should name them")
    return columns, records


def header_columns(data: bytes, name: str) -> list[str]:
    """Column names of an uploaded CSV (header row) or JSONL file (first object's keys)."""
    return read_preview(data, name)[0]


def _ids(values: Sequence[object]) -> list[int] | None:
    """The filled-in ``values`` as integers >= 0; None if one is not, or none is filled in."""
    from cahp_core.data import as_int_label

    ids = [as_int_label(v) for v in values if v not in (None, "")]
    if not ids or any(i is None or i < 0 for i in ids):
        return None
    return ids


def _class_ids(values: Sequence[object]) -> bool:
    """Whether ``values`` look like class ids: small integers >= 0, repeated across rows."""
    ids = _ids(values)
    return ids is not None and max(ids) <= MAX_CLASS_ID and len(set(ids)) <= max(2, len(ids) // 2)


def find_label_column(columns: Sequence[str], rows: Sequence[dict] = ()) -> str | None:
    """The column that holds the labels, or None when it cannot be told (ask the user).

    Without ``rows``: the first column named like a label. With them: the first such column
    holding integers >= 0, else the only other column holding class ids (a few small
    integers, repeated).
    """
    named = [c for n in LABEL_NAMES for c in columns if c.lower() == n]
    if not rows:
        return named[0] if named else None
    values = {c: [r.get(c) for r in rows] for c in columns}
    labels = [c for c in named if _ids(values[c]) is not None]
    ids = [c for c in columns if c not in named and _class_ids(values[c])]
    return labels[0] if labels else ids[0] if len(ids) == 1 else None


def guess_columns(columns: list[str], rows: Sequence[dict] = ()) -> tuple[list[str], str | None]:
    """Defaults for the pickers: text-like columns, and the label column if it can be told."""
    label = find_label_column(columns, rows)
    lowered = {c.lower(): c for c in columns if c != label}
    pairs = [("premise", "hypothesis"), ("sentence1", "sentence2"), ("question", "answer")]
    for a, b in pairs:
        if a in lowered and b in lowered:
            return [lowered[a], lowered[b]], label
    text = next(
        (lowered[n] for n in ("text", "sentence", "review", "content") if n in lowered),
        next((c for c in columns if c != label), columns[0]),
    )
    return [text], label


def ask_label(name: str, columns: Sequence[str]) -> str:
    """What the Run page says when no column of an upload can be told to hold the labels."""
    return (
        f"Which column of {name} holds the labels? None of its columns ({', '.join(columns)}) "
        "is named like a label and holds class ids 0, 1, 2, … in its first rows: pick the "
        "label column below (its values must be class ids)."
    )


def upload_folder(runs_root: Path, name: str) -> Path:
    """Where the upload of run ``name`` is kept (validated like a run name)."""
    return safe_run_dir(runs_root / UPLOADS, name)


def _check_size(upload: Upload) -> str:
    """The upload's suffix, once its type and size are fine."""
    suffix = _suffix(upload.name)
    if upload.size > MAX_UPLOAD_BYTES:
        raise CAHPError(
            f"{upload.name} is {upload.size / 1e6:.0f} MB; the limit is {MAX_UPLOAD_MB} MB"
        )
    return suffix


def save_upload(upload: Upload, runs_root: Path, name: str) -> Path:
    """Store an uploaded file as RUNS/.uploads/<name>/data.<csv|jsonl> (at most 50 MB)."""
    path = upload_folder(runs_root, name) / f"data{_check_size(upload)}"
    write_bytes_atomic(path, upload.getvalue())
    return path


def _check_columns(name: str, text_columns: Sequence[str], label: str | None) -> str:
    """The label column, once the picked columns make sense (before anything is written)."""
    if not text_columns:
        raise CAHPError(f"pick one or two text columns of {name}")
    if not label:
        raise CAHPError(
            f"pick the label column of {name}: the column that holds the class ids 0, 1, 2, …"
        )
    if label in text_columns:
        raise CAHPError(f"column {label!r} cannot be both a text column and the label")
    if "label" in text_columns:
        raise CAHPError(
            f"{name}: a text column called 'label' would clash with the class ids, which the "
            "run reads from a column of that name; rename that column in the file"
        )
    return label


def split_upload(
    path: Path, text_columns: list[str], label_column: str | None, name: str | None = None
) -> tuple[Path, int]:
    """Validate with the engine's loader; write train/validation JSONL files next to the upload.

    Returns the folder of split files and the number of labels. The files hold the text
    columns under their own names and the label as ``label`` (what the loader writes), so
    the run reads them with ``--label-column label``. Messages call the file ``name``
    (default: the stored file's name, never its server path).
    """
    from cahp_core.data import load_task_from_file

    name = name or path.name
    label = _check_columns(name, text_columns, label_column)
    task = load_task_from_file(path, text_columns, label, name=name)
    folder = path.parent / "splits"
    for split, records in task.splits.items():
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        write_text_atomic(folder / f"{split}.jsonl", lines)
    return folder, int(task.spec.num_labels)


def accept_upload(
    upload: Upload,
    runs_root: Path,
    name: str,
    text_columns: list[str],
    label_column: str | None,
) -> tuple[Path, int]:
    """Validate and keep an upload for run ``name``: its split folder and number of labels.

    The file is checked in a scratch folder under RUNS/.uploads that replaces the run's
    upload folder only once it is accepted: a rejected file leaves nothing behind, and an
    earlier accepted upload of that run stays as it was.
    """
    suffix = _check_size(upload)
    read_preview(upload.getvalue(), upload.name)  # a bad file first, not the picks it prevented
    _check_columns(upload.name, text_columns, label_column)
    final = upload_folder(runs_root, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        stored = scratch / f"data{suffix}"
        stored.write_bytes(upload.getvalue())
        _, num_labels = split_upload(stored, text_columns, label_column, upload.name)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(scratch, final)
    except BaseException:  # rejected (or interrupted): remove every trace of it
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return final / "splits", num_labels


def remove_upload(runs_root: Path, name: str) -> None:
    """Forget the upload of a deleted run (nothing happens if there is none)."""
    with contextlib.suppress(CAHPError):
        shutil.rmtree(upload_folder(runs_root, name), ignore_errors=True)


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that does not exist is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def check_model(name: str) -> str | None:
    """Raise CAHPError if ``name`` is no usable model; a warning if it must be downloaded.

    The alias and local folders are checked at once; a hub id is looked up in the local hub
    cache only (a network probe could hang for half a minute without internet).
    """
    from cahp_core.model.loading import resolve_model_source

    name = name.strip()
    if not name:
        raise CAHPError("enter a model: minilm-l6, a local folder or a hub id")
    source = Path(resolve_model_source(name)).expanduser()
    if source.exists():
        if not (source / "config.json").is_file():
            raise CAHPError(
                f"{name} is not a model folder (no config.json inside); pass a folder saved "
                "with save_pretrained, a hub id, or the alias minilm-l6"
            )
        return None
    if _looks_like_path(name):
        raise CAHPError(f"model folder {name} not found; check the path")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return None
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise CAHPError(
            f"model {name!r} is not a local folder, not the alias minilm-l6 and not in the "
            "local hub cache, and the hub is offline (HF_HUB_OFFLINE); pass a local folder "
            "or minilm-l6"
        )
    return (
        f"{name} is not in the local hub cache: the run will try to download it "
        "(it fails at once without internet)."
    )


def check_data_dir(folder: str) -> Path:
    """An existing folder with split files (the engine's check), as an absolute path."""
    from cahp_core.data import split_files

    path = Path(folder.strip()).expanduser().resolve()
    split_files(path)
    return path


def run_settings(task: str, form: dict, inputs: dict, root: Path, name: str) -> dict:
    """The Run page's form as run settings (``RunConfig`` fields, what `cahp run --config`
    reads); validates every input first, the upload included (CAHPError on a problem)."""
    settings = {
        "preset": form["preset"],
        "model": form["model"].strip(),
        "task": task,
        "degree": int(form["degree"]),
        "clustering": form["clustering"],
        "distance": form["distance"],
        "quality": form["quality"],
        "n_seeds": int(form["seeds"]),
    }
    for field in ("max_train", "max_eval"):
        if form[field]:  # 0: the preset's
            settings[field] = int(form[field])
    if task == "custom":
        if inputs["upload"] is None:
            raise CAHPError("choose a CSV or JSONL file to upload for a custom task")
        folder, num_labels = accept_upload(
            inputs["upload"], root, name, inputs["text_columns"], inputs["label_column"]
        )
        settings |= {  # the validated split files store the label under "label"
            "data_dir": str(folder),
            "text_columns": list(inputs["text_columns"]),
            "label_column": "label",
            "num_labels": num_labels,
        }
    elif inputs["data_dir"].strip():
        settings["data_dir"] = str(check_data_dir(inputs["data_dir"]))
    check_settings(settings)  # the CLI's own checks, before anything is launched
    return settings


def check_settings(settings: dict) -> None:
    """Raise the CLI's CAHPError for settings `cahp run --config` would refuse."""
    from cahp_core.runs.config import preset_config

    values = dict(settings)
    preset_config(values.pop("preset"), **values)
