"""Atomic writes (temp file in the same folder + fsync + os.replace), sha256 and safe loading.

A reader never sees a half-written file: either the old content or the new one. Nothing here
unpickles: JSON, safetensors, and npz with ``allow_pickle=False`` only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

PathLike = str | os.PathLike

_CHUNK = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


# ------------------------------------------------------------------------------ JSON


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples, paths and datetimes made JSON-safe."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())  # tolist() already gives Python scalars
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # a torch tensor, without importing torch
        return obj.detach().cpu().tolist()
    return obj


# ------------------------------------------------------------------------------ writing


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def open_atomic(path: PathLike) -> Iterator[IO[bytes]]:
    """A binary handle to a temp file next to ``path``; moved into place only on success.

    On an exception the temp file is removed and an existing ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with open_atomic(path) as handle:
        handle.write(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (key order kept) atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False)
    write_text_atomic(path, text + "\n")


def _plain_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a contiguous numpy array; object arrays are refused (they would pickle)."""
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            value = value.float()
        value = value.numpy()
    array = np.ascontiguousarray(value)
    if array.dtype.hasobject:
        raise TypeError(f"array {name!r} has dtype object, which cannot be saved without pickle")
    return array


def write_npz_atomic(path: PathLike, **arrays: Any) -> None:
    """Write a compressed ``.npz`` atomically (object arrays refused: no pickle)."""
    plain = {name: _plain_array(name, value) for name, value in arrays.items()}
    with open_atomic(path) as handle:
        np.savez_compressed(handle, **plain)


def write_safetensors_atomic(
    path: PathLike, tensors: Mapping[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """Write numpy arrays / torch tensors as safetensors atomically (bfloat16 -> float32)."""
    from safetensors.numpy import save

    if metadata is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError("safetensors metadata must map str to str; convert values with str()")
    plain = {name: _plain_array(name, value) for name, value in tensors.items()}
    write_bytes_atomic(path, save(plain, metadata=metadata))


def _fsync_tree(folder: Path) -> None:
    for current, _dirs, files in os.walk(folder):
        for name in files:
            file = Path(current, name)
            if file.is_symlink():
                continue
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(current))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_dir_atomic(tmp_dir: PathLike, final_dir: PathLike) -> None:
    """Move a fully written folder into place (``tmp_dir`` must be on the same filesystem).

    An existing ``final_dir`` is moved aside, the new folder renamed in, then the old one
    deleted; if the rename fails the old folder is put back.
    """
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    if not tmp_dir.is_dir():
        raise FileNotFoundError(f"{tmp_dir} is not a folder; nothing to move into {final_dir}")
    _fsync_tree(tmp_dir)
    aside = None
    if final_dir.exists() or final_dir.is_symlink():
        aside = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(final_dir, aside)
    try:
        os.replace(tmp_dir, final_dir)
    except BaseException:
        if aside is not None:
            os.replace(aside, final_dir)
        raise
    _fsync_dir(final_dir.parent)
    if aside is not None:
        _remove(aside)


# ------------------------------------------------------------------------------ reading


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, loaded with ``allow_pickle=False``."""
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not an .npz archive")
    with data:
        return {name: data[name] for name in data.files}


def load_safetensors_numpy(path: PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays."""
    from safetensors.numpy import load_file

    return load_file(os.fspath(path))


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file (streamed); for a folder, over its sorted relative paths + file hashes."""
    path = Path(path)
    if not path.is_dir():
        return _sha256_of_file(path)
    digest = hashlib.sha256()
    files = sorted(
        (p.relative_to(path) for p in path.rglob("*") if p.is_file()), key=lambda p: p.parts
    )
    for relative in files:
        digest.update(relative.as_posix().encode("utf-8"))
        digest.update(_sha256_of_file(path / relative).encode("ascii"))
    return digest.hexdigest()
