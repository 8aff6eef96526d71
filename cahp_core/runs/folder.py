"""Run folders: a JSON manifest, verified artefacts, resumable stages and a lock.

A stage counts as done only if the manifest says so *and* every artefact it recorded still
has the recorded sha256: a missing, corrupt or truncated file is recomputed, never trusted.
The manifest is always rewritten atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cahp_core.atomic import sha256_file, to_jsonable, write_json_atomic, write_text_atomic
from cahp_core.errors import RunFolderError
from cahp_core.runs.run_format import MANIFEST, SUMMARY

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOCK_FILE = ".lock"
LOCK_PID_FILE = ".lock.pid"
MAX_NAME = 100
SAFE_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}$")
_DISTRIBUTIONS = ("torch", "transformers", "numpy", "safetensors")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def package_versions() -> dict[str, str]:
    """Versions that matter for reproducing a run (read from metadata, nothing imported)."""
    from cahp_core import __version__

    versions = {"cahp_studio": __version__, "python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ------------------------------------------------------------------------------ configs


def _normalised(config: dict) -> dict:
    """``config`` as it reads back from JSON (tuples -> lists, numpy -> Python)."""
    return json.loads(json.dumps(to_jsonable(config)))


def config_differences(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    """Sorted names of the settings whose values differ, leaving out ``ignore``."""
    old, new = _normalised(old), _normalised(new)
    keys = (set(old) | set(new)) - set(ignore)
    return sorted(k for k in keys if old.get(k) != new.get(k))


def _describe_differences(old: dict, new: dict, names: list[str], shown: int = 3) -> str:
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in names[:shown]]
    if len(names) > shown:
        parts.append(f"and {len(names) - shown} more")
    return _one_line(", ".join(parts), limit=300)


# ------------------------------------------------------------------------------ manifest


def _read_manifest(root: Path) -> dict:
    """The parsed manifest of ``root``; RunFolderError if it is missing or unreadable."""
    manifest_path = MANIFEST.path(root)
    if not manifest_path.is_file():
        raise RunFolderError(
            f"{root} is not a CAHP run folder (no {MANIFEST.file}); check the path or start a new run"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(
            f"{manifest_path} cannot be read ({_one_line(exc, 120)}); "
            "delete the run folder or choose another --out"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stages", {}), dict):
        raise RunFolderError(
            f"{manifest_path} is not a CAHP manifest; delete the run folder or choose another --out"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RunFolderError(
            f"{root} was written in run-folder format {version}, expected {FORMAT_VERSION} "
            "by this CAHP Studio; start the run again into a new --out"
        )
    manifest.setdefault("config", {})
    manifest.setdefault("stages", {})
    return manifest


def _new_manifest(config: dict) -> dict:
    now = _now()
    return {
        "format_version": FORMAT_VERSION,
        "created": now,
        "updated": now,
        "config": _normalised(config),
        "versions": package_versions(),
        "stages": {},
    }


def _check_relative(part: str) -> None:
    pure = Path(part)
    if pure.is_absolute() or ".." in pure.parts:
        raise RunFolderError(
            f"{part!r} is not a relative path inside the run folder; "
            "use a name like 'signatures.safetensors' or 'pruned/model.onnx'"
        )


# ------------------------------------------------------------------------------ locking


def _read_holder(root: Path) -> str:
    try:
        pid = (root / LOCK_PID_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return "pid unknown"
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _acquire(lock: FileLock, root: Path, timeout: float) -> None:
    """Acquire ``lock`` or raise a one-line RunFolderError naming the holder."""
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RunFolderError(
            f"run folder {root} is in use by another process ({_read_holder(root)}); "
            "wait for it to finish or choose another --out"
        ) from None
    except OSError as exc:
        raise RunFolderError(
            f"cannot lock run folder {root} ({exc.strerror or exc}); "
            "check that it is writable or choose another --out"
        ) from None


def _write_holder(root: Path) -> None:
    try:
        write_text_atomic(root / LOCK_PID_FILE, f"{os.getpid()}\n")
    except OSError:
        log.debug("could not write %s in %s", LOCK_PID_FILE, root)


def _clear_holder(root: Path) -> None:
    """Remove the pid file if it still names this process."""
    pid_file = root / LOCK_PID_FILE
    try:
        if pid_file.read_text(encoding="utf-8").strip() == str(os.getpid()):
            pid_file.unlink()
    except OSError:
        pass


def _check_can_hold_run(root: Path) -> None:
    """Refuse a path that is a file, or a non-empty folder that is not a run."""
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"{root} is a file, not a folder; choose another --out")
    if (
        root.is_dir()
        and not MANIFEST.path(root).is_file()
        and any(p.name not in (LOCK_FILE, LOCK_PID_FILE) for p in root.iterdir())
    ):
        raise RunFolderError(
            f"{root} is not empty and is not a CAHP run (no {MANIFEST.file}); choose another --out"
        )


def _remove_if_only_lock_files(root: Path) -> None:
    """Remove a folder this process created for a lock when nothing else was written to it."""
    try:
        if all(p.name in (LOCK_FILE, LOCK_PID_FILE) for p in root.iterdir()):
            shutil.rmtree(root, ignore_errors=True)
    except OSError:
        pass


@contextmanager
def locked_folder(path: str | os.PathLike, timeout: float = 0) -> Iterator[FileLock]:
    """Hold the lock of the run folder ``path`` before anything in it is created or written.

    A missing folder is created to hold the lock file and removed again if nothing else
    was written to it; a refused writer (RunFolderError "in use") changes no file.
    """
    root = Path(path)
    _check_can_hold_run(root)
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(
            f"cannot create run folder {root} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    lock = FileLock(str(root / LOCK_FILE))
    _acquire(lock, root, timeout)
    try:
        _write_holder(root)
        yield lock
    finally:
        _clear_holder(root)
        if created:
            _remove_if_only_lock_files(root)
        lock.release()


# ------------------------------------------------------------------------------ stages


@dataclass
class StageRecorder:
    """What a running stage registers: its artefacts (paths relative to the run) and info."""

    name: str
    artefacts: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add_artefact(self, relative_path: str) -> None:
        """Record a file or folder (relative to the run) that this stage produced."""
        _check_relative(relative_path)
        if relative_path not in self.artefacts:
            self.artefacts.append(relative_path)


class RunFolder:
    """A run folder with its manifest. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, root: str | os.PathLike, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        self._lock: FileLock | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    # -- opening
    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, ignore: Iterable[str] = ()) -> RunFolder:
        """A new run folder, or the existing one if it holds the same run (resume).

        Settings named in ``ignore`` may differ on resume; the new values are recorded.
        """
        root = Path(path)
        ignore = tuple(ignore)
        if MANIFEST.path(root).is_file():
            run = cls.open(root)
            differing = config_differences(run.config, config, ignore)
            if differing:
                raise RunFolderError(
                    f"{root} holds another run ({_describe_differences(run.config, config, differing)}); "
                    "pick a new --out or pass the same options to resume it"
                )
            updated = {**run.config, **_normalised({k: config[k] for k in ignore if k in config})}
            if updated != run.config:
                run.manifest["config"] = updated
                run.save()
            return run
        _check_can_hold_run(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            run = cls(root, _new_manifest(config))
            run.save()
        except OSError as exc:
            raise RunFolderError(
                f"cannot create run folder {root} ({exc.strerror or exc}); choose a writable --out"
            ) from None
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunFolder:
        """An existing run folder; RunFolderError if missing, unreadable or another format."""
        root = Path(path)
        return cls(root, _read_manifest(root))

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def stages(self) -> dict[str, dict]:
        return self.manifest["stages"]

    def save(self) -> None:
        """Write the manifest atomically."""
        self.manifest["updated"] = _now()
        write_json_atomic(MANIFEST.path(self.root), self.manifest)

    def reload(self) -> None:
        """Re-read the stages from disk (another process may have run some); config kept."""
        config = self.config
        self.manifest = _read_manifest(self.root)
        self.manifest["config"] = config

    # -- paths
    def path(self, *parts: str) -> Path:
        """A path inside the run (``run.path("pruned", "config.json")``).

        Absolute paths and '..' are refused with RunFolderError.
        """
        for part in parts:
            _check_relative(part)
        return self.root.joinpath(*parts)

    # -- stages
    def _record(self, stage: str) -> dict:
        record = self.stages.get(stage)
        return record if isinstance(record, dict) else {}

    def _artefact_problem(self, relative: str, digest: str) -> str | None:
        """Why a recorded artefact cannot be trusted, or None if its sha256 matches."""
        try:
            path = self.path(relative)
        except RunFolderError:
            return "has a path outside the run folder"
        if not path.exists():
            return "is missing"
        try:
            actual = sha256_file(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        return None if actual == digest else "does not match its recorded sha256 (corrupt?)"

    def is_done(self, stage: str) -> bool:
        """True only if the stage finished and every artefact still has its recorded sha256."""
        record = self._record(stage)
        if record.get("status") != "done":
            return False
        artefacts = record.get("artefacts") or {}
        if not isinstance(artefacts, dict):
            return False
        for relative, digest in artefacts.items():
            problem = self._artefact_problem(relative, digest)
            if problem:
                log.warning(
                    "run %s: artefact %s of stage %r %s; the stage will be recomputed",
                    self.root,
                    relative,
                    stage,
                    problem,
                )
                return False
        return True

    def status(self, stage: str) -> str | None:
        """The recorded status ('done', 'running', 'failed') or None (never run)."""
        return self._record(stage).get("status")

    def mark_running(self, stage: str) -> None:
        self.stages[stage] = {"status": "running", "started": _now(), "pid": os.getpid()}
        self.save()

    def mark_done(
        self, stage: str, artefacts: Iterable[str], seconds: float, info: dict | None = None
    ) -> None:
        """Record the stage as done with the sha256 of each artefact (relative paths)."""
        hashes = {}
        for relative in artefacts:
            path = self.path(relative)
            if not path.exists():
                raise FileNotFoundError(
                    f"stage {stage!r} registered artefact {relative!r}, but {path} does not exist"
                )
            hashes[Path(relative).as_posix()] = sha256_file(path)
        self.stages[stage] = {
            "status": "done",
            "seconds": round(float(seconds), 3),
            "artefacts": hashes,
            "finished": _now(),
            "info": to_jsonable(info or {}),
        }
        self.save()

    def mark_failed(self, stage: str, error: str) -> None:
        self.stages[stage] = {"status": "failed", "error": _one_line(error), "finished": _now()}
        self.save()

    def invalidate(self, stage: str) -> None:
        """Forget a stage so it is recomputed (its files are overwritten then)."""
        if self.stages.pop(stage, None) is not None:
            self.save()

    def stage_info(self, stage: str) -> dict:
        """A copy of the ``info`` recorded by a stage ({} if none)."""
        return dict(self._record(stage).get("info") or {})

    def stage_seconds(self) -> dict[str, float]:
        """Seconds of every done stage, in the order they were recorded."""
        return {
            name: float(record.get("seconds", 0.0))
            for name, record in self.stages.items()
            if isinstance(record, dict) and record.get("status") == "done"
        }

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecorder]:
        """Mark a stage running, time it, and record it done (or failed on an exception).

        The body registers its outputs with ``st.add_artefact(...)`` and notes in ``st.info``.
        """
        recorder = StageRecorder(name)
        self.mark_running(name)
        start = time.perf_counter()
        try:
            yield recorder
            self.mark_done(name, recorder.artefacts, time.perf_counter() - start, recorder.info)
        except BaseException as exc:
            self.mark_failed(name, f"{type(exc).__name__}: {exc}")
            raise

    # -- exclusive use
    def adopt_lock(self, lock: FileLock) -> None:
        """Use a lock already held on this folder (from :func:`locked_folder`): the
        re-entrant :meth:`lock` then nests inside it instead of taking a second one."""
        self._lock = lock

    @contextmanager
    def lock(self, timeout: float = 0) -> Iterator[None]:
        """Hold the run's lock (re-entrant within this object and thread).

        Another process holding it gives RunFolderError at once (or after ``timeout`` s).
        On first acquisition the manifest's stages are re-read from disk.
        """
        if self._lock is None:
            self._lock = FileLock(str(self.root / LOCK_FILE))
        outermost = not self._lock.is_locked
        _acquire(self._lock, self.root, timeout)
        try:
            if outermost:
                _write_holder(self.root)
                self.reload()
            yield
        finally:
            if outermost:
                _clear_holder(self.root)
            self._lock.release()


# ------------------------------------------------------------------------------ runs root


def safe_run_dir(runs_root: str | os.PathLike, name: str) -> Path:
    """The folder of a user-named run under ``runs_root``; names cannot escape it."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise RunFolderError(
            f"run name {name!r} is not allowed; use letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, at most {MAX_NAME} characters"
        )
    root = Path(runs_root).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise RunFolderError(
            f"run name {name!r} points outside the runs folder {root}; choose another name"
        )
    return path


def _read_json_dict(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _run_entry(folder: Path) -> dict | None:
    manifest = _read_json_dict(MANIFEST.path(folder))
    if manifest is None:
        return None
    stages = manifest.get("stages")
    stages = stages if isinstance(stages, dict) else {}
    statuses = {n: s.get("status") for n, s in stages.items() if isinstance(s, dict)}
    config = manifest.get("config")
    return {
        "name": folder.name,
        "path": str(folder),
        "created": str(manifest.get("created", "")),
        "updated": str(manifest.get("updated", "")),
        "format_version": manifest.get("format_version"),
        "stages": statuses,
        "stages_done": [n for n, s in statuses.items() if s == "done"],
        "config": config if isinstance(config, dict) else {},
        "summary": _read_json_dict(SUMMARY.path(folder)) if SUMMARY.exists(folder) else None,
    }


def list_runs(runs_root: str | os.PathLike) -> list[dict]:
    """Runs under ``runs_root``, newest first.

    Each entry: name, path, created, updated, format_version, stages (name -> status),
    stages_done, config, summary (``summary.json`` contents or None). Folders without a
    readable manifest, and hidden or oddly named folders, are skipped.
    """
    root = Path(runs_root)
    if not root.is_dir():
        return []
    entries = []
    for folder in root.iterdir():
        if not folder.is_dir() or not SAFE_NAME.match(folder.name):
            continue
        entry = _run_entry(folder)
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda e: (e["created"], e["updated"], e["name"]), reverse=True)


def delete_run(runs_root: str | os.PathLike, name: str) -> None:
    """Delete the run ``name`` under ``runs_root`` (only CAHP run folders, never one in use)."""
    path = safe_run_dir(runs_root, name)
    if not path.is_dir() or not MANIFEST.path(path).is_file():
        raise RunFolderError(
            f"{path} is not a CAHP run folder (no {MANIFEST.file}); nothing was deleted"
        )
    lock = FileLock(str(path / LOCK_FILE))
    _acquire(lock, path, timeout=0)
    trash = path.with_name(f".{path.name}.deleting-{uuid.uuid4().hex[:12]}")
    try:
        os.replace(path, trash)  # gone from list_runs at once, even if rmtree is slow
    finally:
        lock.release()
    shutil.rmtree(trash, ignore_errors=True)
