"""The run-folder format, named once: every file a run (or its embedded bundle) holds, the
stage that writes it, how it is stored, and the one reader and writer the pipeline, the CLI,
the read-only views and the dashboard use. No other module spells a run file's name."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cahp_core.atomic import (
    load_npz,
    load_safetensors_numpy,
    write_json_atomic,
    write_npz_atomic,
    write_safetensors_atomic,
)
from cahp_core.errors import RunFolderError
from cahp_core.model.folder_format import EXPORT_INFO, KEPT_HEADS_KEY, LEGACY_KEPT_HEADS_FILE  # noqa: F401

Kind = Literal["json", "npz", "safetensors", "folder"]


@dataclass(frozen=True)
class Artefact:
    """One file (or folder) of a run folder."""

    file: str  # its name inside the run folder
    kind: Kind  # how it is stored
    stage: str | None  # the stage that writes it; None: the run itself or a bundle
    bundled: bool = False  # copied as it is into an embedded bundle (assets/default_run)
    required: bool = False  # a finished run cannot be viewed without it

    def path(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / self.file

    def exists(self, folder: str | os.PathLike) -> bool:
        return self.path(folder).exists()


MANIFEST = Artefact("manifest.json", "json", None, bundled=True, required=True)
SUMMARY = Artefact("summary.json", "json", None, bundled=True)
MODEL = Artefact("model", "folder", "finetune")  # the fine-tuned full model
SALIENCE = Artefact("salience.json", "json", "salience", bundled=True, required=True)
SIGNATURES = Artefact("signatures.safetensors", "safetensors", "signatures")
DISTANCES = Artefact("distances.npz", "npz", "distances")  # a bundle keeps its two arrays
DIAGNOSTICS = Artefact("diagnostics.json", "json", "diagnostics", bundled=True)
CLUSTERING = Artefact("clustering.npz", "npz", "clustering", bundled=True, required=True)
TASK_CURVE = Artefact("task_curve.json", "json", "task_curve", bundled=True)
SELECTION = Artefact("selection.json", "json", "selection", bundled=True, required=True)
GRAPH = Artefact("graph.json", "json", "graph", bundled=True)
PRUNED = Artefact("pruned", "folder", "export")  # the pruned, once fine-tuned model
HEAD_MAPS = Artefact("head_maps.npz", "npz", None)  # bundles only: each head's mean map
BUNDLE = Artefact("bundle.json", "json", None)  # bundles only: where the bundle came from

ARTEFACTS = (
    MANIFEST,
    SUMMARY,
    MODEL,
    SALIENCE,
    SIGNATURES,
    DISTANCES,
    DIAGNOSTICS,
    CLUSTERING,
    TASK_CURVE,
    SELECTION,
    GRAPH,
    PRUNED,
    HEAD_MAPS,
    BUNDLE,
)
BUNDLE_FILES = tuple(a for a in ARTEFACTS if a.bundled)
REQUIRED_FILES = tuple(a for a in ARTEFACTS if a.required)

# a pruned model folder's own files (RUN/pruned is one): named in folder_format.py


def read(folder: str | os.PathLike, artefact: Artefact, *, missing_ok: bool = False) -> Any:
    """``artefact`` of the run in ``folder``: a dict for JSON, ``{name: array}`` for npz and
    safetensors. A RunFolderError naming the stage to re-run when it is missing or
    unreadable (None instead when it is missing and ``missing_ok``)."""
    path = artefact.path(folder)
    if not path.is_file():
        if missing_ok:
            return None
        raise RunFolderError(
            f"{path} is missing; finish the run's {artefact.stage or 'last'} stage with "
            "`cahp run` (same command) or pick another run"
        )
    try:
        if artefact.kind == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        if artefact.kind == "npz":
            return load_npz(path)
        if artefact.kind == "safetensors":
            return load_safetensors_numpy(path)
    except (OSError, ValueError) as exc:
        raise RunFolderError(
            f"cannot read {path} ({exc}); re-run the stage that writes it"
        ) from exc
    raise TypeError(f"{artefact.file} is a folder; load it with its own loader")


def write(folder: str | os.PathLike, artefact: Artefact, value: Any) -> Path:
    """Write ``artefact`` atomically (JSON: any JSON-ready value; npz and safetensors: a
    ``{name: array}`` mapping) and return its path."""
    path = artefact.path(folder)
    if artefact.kind == "json":
        write_json_atomic(path, value)
    elif artefact.kind == "npz":
        write_npz_atomic(path, **value)
    elif artefact.kind == "safetensors":
        write_safetensors_atomic(path, value)
    else:
        raise TypeError(f"{artefact.file} is a folder; save it with its own writer")
    return path
