"""Run folders: a JSON manifest, verified artefacts, resumable stages and a lock.

A stage counts as done only if the manifest says so *and* every artefact it recorded still
has the recorded sha256: a corrupt or truncated file is recomputed, never trusted.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from .atomic import sha256_file, write_json_atomic
from .errors import RunFolderError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    import numpy
    import torch
    import transformers

    from . import __version__

    return {
        "cahp_studio": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
    }


def config_compatible(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Names of the settings that differ (ignoring ``ignore``); empty if compatible."""
    keys = (set(old) | set(new)) - set(ignore)
    return sorted(k for k in keys if old.get(k) != new.get(k))


@dataclass
class StageRecorder:
    """What a running stage registers: its artefacts and free-form info."""

    artefacts: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def add_artefact(self, relative_path: str) -> None:
        self.artefacts.append(relative_path)


class RunFolder:
    """A run folder with its manifest. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest

    # -- opening
    @classmethod
    def create(
        cls, path: str | os.PathLike, config: dict, ignore: tuple[str, ...] = ()
    ) -> RunFolder:
        """A new run folder, or the existing one if it holds the same run (resume)."""
        root = Path(path)
        if (root / MANIFEST).is_file():
            run = cls.open(root)
            differing = config_compatible(run.config, config, ignore)
            if differing:
                raise RunFolderError(
                    f"{root} holds another run (different {', '.join(differing)}); "
                    "pick a new --out or pass the same options to resume it"
                )
            run.manifest["config"] = {**run.config, **{k: config[k] for k in ignore if k in config}}
            run.save()
            return run
        if root.exists() and any(root.iterdir()):
            raise RunFolderError(
                f"{root} exists, is not empty and is not a CAHP run; pick a new --out"
            )
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": _now(),
            "updated": _now(),
            "config": config,
            "versions": package_versions(),
            "stages": {},
        }
        run = cls(root, manifest)
        run.save()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunFolder:
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise RunFolderError(f"{root} is not a CAHP run folder (no {MANIFEST}); check the path")
        try:
            import json

            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFolderError(
                f"{manifest_path} is corrupt ({exc}); delete the run folder and run again"
            ) from exc
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise RunFolderError(
                f"{root} was written by an incompatible CAHP Studio (format {version}, "
                f"expected {FORMAT_VERSION}); run it again with this version into a new --out"
            )
        return cls(root, manifest)

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    def save(self) -> None:
        self.manifest["updated"] = _now()
        write_json_atomic(self.root / MANIFEST, self.manifest)

    # -- paths
    def path(self, *parts: str) -> Path:
        """A path inside the run; absolute paths and '..' are refused."""
        for part in parts:
            if Path(part).is_absolute() or ".." in Path(part).parts:
                raise RunFolderError(f"{part!r} is not a path inside the run folder")
        return self.root.joinpath(*parts)

    # -- stages
    def _stage(self, name: str) -> dict:
        return self.manifest["stages"].get(name, {})

    def is_done(self, stage: str) -> bool:
        record = self._stage(stage)
        if record.get("status") != "done":
            return False
        for relative, digest in record.get("artefacts", {}).items():
            path = self.root / relative
            if not path.exists() or sha256_file(path) != digest:
                log.warning(
                    "artefact %s of stage %s is missing or corrupt; recomputing", relative, stage
                )
                return False
        return True

    def mark_running(self, stage: str) -> None:
        self.manifest["stages"][stage] = {
            "status": "running",
            "started": _now(),
            "pid": os.getpid(),
        }
        self.save()

    def mark_done(
        self, stage: str, artefacts: list[str], seconds: float, info: dict | None = None
    ) -> None:
        self.manifest["stages"][stage] = {
            "status": "done",
            "seconds": round(float(seconds), 3),
            "finished": _now(),
            "artefacts": {a: sha256_file(self.path(a)) for a in artefacts},
            "info": info or {},
        }
        self.save()

    def mark_failed(self, stage: str, error: str) -> None:
        self.manifest["stages"][stage] = {"status": "failed", "error": error, "finished": _now()}
        self.save()

    def invalidate(self, stage: str) -> None:
        self.manifest["stages"].pop(stage, None)
        self.save()

    def stage_info(self, stage: str) -> dict:
        return self._stage(stage).get("info", {})

    def stage_seconds(self) -> dict[str, float]:
        return {
            name: record["seconds"]
            for name, record in self.manifest["stages"].items()
            if record.get("status") == "done"
        }

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecorder]:
        """Mark a stage running, time it, and record it done (or failed on an exception)."""
        recorder = StageRecorder()
        self.mark_running(name)
        start = time.perf_counter()
        try:
            yield recorder
        except BaseException as exc:
            self.mark_failed(name, f"{type(exc).__name__}: {exc}")
            raise
        self.mark_done(name, recorder.artefacts, time.perf_counter() - start, recorder.info)

    # -- exclusive use
    @contextmanager
    def lock(self, timeout: float = 0) -> Iterator[None]:
        """Hold the run's lock; another process holding it gives a clear error."""
        pid_file = self.root / ".lock.pid"
        lock = FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            holder = pid_file.read_text().strip() if pid_file.is_file() else "unknown"
            raise RunFolderError(
                f"run folder {self.root} is in use by another process (pid {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        try:
            pid_file.write_text(str(os.getpid()))
            yield
        finally:
            pid_file.unlink(missing_ok=True)
            lock.release()


def safe_run_dir(runs_root: str | os.PathLike, name: str) -> Path:
    """The folder of a user-named run; names cannot escape ``runs_root``."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise RunFolderError(
            f"run name {name!r} is not allowed; use letters, digits, '.', '_' or '-' "
            "(not starting with '.' and at most 100 characters)"
        )
    root = Path(runs_root).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise RunFolderError(f"run name {name!r} would leave the runs folder {root}")
    return path


def list_runs(runs_root: str | os.PathLike) -> list[dict]:
    """Runs under ``runs_root`` (newest first) with their status and summary if finished."""
    import json

    root = Path(runs_root)
    runs = []
    if not root.is_dir():
        return runs
    for folder in root.iterdir():
        manifest_path = folder / MANIFEST
        if not folder.is_dir() or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        summary_path = folder / "summary.json"
        summary = None
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                summary = None
        stages = manifest.get("stages", {})
        runs.append(
            {
                "name": folder.name,
                "path": str(folder),
                "created": manifest.get("created", ""),
                "updated": manifest.get("updated", ""),
                "stages_done": [n for n, s in stages.items() if s.get("status") == "done"],
                "config": manifest.get("config", {}),
                "summary": summary,
            }
        )
    return sorted(runs, key=lambda r: r["created"], reverse=True)


def delete_run(runs_root: str | os.PathLike, name: str) -> None:
    """Delete a run folder by name (only folders that are CAHP runs)."""
    path = safe_run_dir(runs_root, name)
    if not (path / MANIFEST).is_file():
        raise RunFolderError(f"{path} is not a CAHP run folder; nothing deleted")
    shutil.rmtree(path)
