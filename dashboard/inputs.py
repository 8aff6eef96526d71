"""Checks of what a user types or uploads on the Run page, before anything is launched.

Every problem is raised as a one-line ``CAHPError`` that the page shows with ``st.error``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Protocol

from cahp_core.atomic import write_bytes_atomic, write_text_atomic
from cahp_core.errors import CAHPError
from cahp_core.runs import safe_run_dir

MAX_UPLOAD_MB = 50
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
UPLOAD_SUFFIXES = (".csv", ".jsonl")
UPLOADS = ".uploads"  # RUNS/.uploads/<run>/: a run folder must be empty when `cahp run` starts


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


def header_columns(data: bytes, name: str) -> list[str]:
    """Column names of an uploaded CSV (header row) or JSONL file (first object's keys)."""
    suffix = _suffix(name)
    text = data[:1_000_000].decode("utf-8-sig", errors="replace")
    if suffix == ".csv":
        first = next(csv.reader(io.StringIO(text)), [])
        columns = [c.strip() for c in first if c.strip()]
    else:
        line = next((ln for ln in text.splitlines() if ln.strip()), "")
        try:
            record = json.loads(line) if line else {}
        except json.JSONDecodeError as exc:
            raise CAHPError(f"{name} line 1 is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise CAHPError(f"{name} line 1 is not a JSON object")
        columns = list(record)
    if not columns:
        raise CAHPError(f"{name} has no columns; its first line should name them")
    return columns


def guess_columns(columns: list[str]) -> tuple[list[str], str]:
    """Sensible defaults for the pickers: text-like columns and a label-like column."""
    lowered = {c.lower(): c for c in columns}
    label = next(
        (lowered[n] for n in ("label", "labels", "class", "target", "y") if n in lowered),
        columns[-1],
    )
    pairs = [("premise", "hypothesis"), ("sentence1", "sentence2"), ("question", "answer")]
    for a, b in pairs:
        if a in lowered and b in lowered:
            return [lowered[a], lowered[b]], label
    text = next(
        (lowered[n] for n in ("text", "sentence", "review", "content") if n in lowered),
        next((c for c in columns if c != label), columns[0]),
    )
    return [text], label


def upload_folder(runs_root: Path, name: str) -> Path:
    """Where the upload of run ``name`` is kept (validated like a run name)."""
    return safe_run_dir(runs_root / UPLOADS, name)


def save_upload(upload: Upload, runs_root: Path, name: str) -> Path:
    """Store an uploaded file as RUNS/.uploads/<name>/data.<csv|jsonl> (at most 50 MB)."""
    if upload.size > MAX_UPLOAD_BYTES:
        raise CAHPError(
            f"{upload.name} is {upload.size / 1e6:.0f} MB; the limit is {MAX_UPLOAD_MB} MB"
        )
    path = upload_folder(runs_root, name) / f"data{_suffix(upload.name)}"
    write_bytes_atomic(path, upload.getvalue())
    return path


def split_upload(path: Path, text_columns: list[str], label_column: str) -> tuple[Path, int]:
    """Validate with the engine's loader; write train/validation JSONL files next to the upload.

    Returns the folder of split files and the number of labels. The files hold the text
    columns under their own names and the label as ``label`` (what the loader writes), so
    the run reads them with ``--label-column label``.
    """
    from cahp_core.data import load_task_from_file

    if not text_columns:
        raise CAHPError("pick one or two text columns")
    if label_column in text_columns:
        raise CAHPError(f"column {label_column!r} cannot be both a text column and the label")
    task = load_task_from_file(path, text_columns, label_column)
    folder = path.parent / "splits"
    for split, records in task.splits.items():
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        write_text_atomic(folder / f"{split}.jsonl", lines)
    return folder, int(task.spec.num_labels)


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
    from cahp_core.models import resolve_model_source

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
