"""Run folders and atomic writes: manifest, stage reuse, corruption, lock, safe names."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from cahp_core import atomic
from cahp_core.atomic import (
    load_npz,
    load_safetensors_numpy,
    replace_dir_atomic,
    sha256_file,
    to_jsonable,
    write_bytes_atomic,
    write_json_atomic,
    write_npz_atomic,
    write_safetensors_atomic,
    write_text_atomic,
)
from cahp_core.errors import CAHPError, RunFolderError
from cahp_core.runs.folder import (
    FORMAT_VERSION,
    RunFolder,
    config_differences,
    delete_run,
    list_runs,
    safe_run_dir,
)

ROOT = Path(__file__).resolve().parents[1]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------ atomic


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "one")
    write_text_atomic(tmp_path / "a.txt", "two")
    write_bytes_atomic(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert _names(tmp_path) == ["a.txt", "sub"]
    assert (tmp_path / "a.txt").stat().st_mode & 0o044  # umask respected, not mkstemp's 0600


def test_old_content_survives_a_failure_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "x.npz"
    write_npz_atomic(path, a=np.arange(3))

    def half_written(handle, **arrays):
        handle.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    monkeypatch.setattr(atomic.np, "savez_compressed", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_npz_atomic(path, a=np.arange(10))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_npz(path)["a"], np.arange(3))
    assert _names(tmp_path) == ["x.npz"]


def test_old_content_survives_a_failed_rename(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})

    def explode(*args, **kwargs):
        raise OSError("rename failed")

    monkeypatch.setattr(atomic.os, "replace", explode)
    with pytest.raises(OSError):
        write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _names(tmp_path) == ["a.json"]


def test_json_conversion_of_numpy_and_friends(tmp_path):
    obj = {
        "i": np.int64(3),
        "f": np.float32(0.5),
        "b": np.bool_(True),
        "a": np.arange(4).reshape(2, 2),
        "t": (1, 2),
        "p": Path("x/y"),
        "torch": torch.tensor([1.5, 2.5]),
        3: "int key",
    }
    write_json_atomic(tmp_path / "o.json", obj)
    text = (tmp_path / "o.json").read_text()
    assert json.loads(text) == {
        "i": 3,
        "f": 0.5,
        "b": True,
        "a": [[0, 1], [2, 3]],
        "t": [1, 2],
        "p": "x/y",
        "torch": [1.5, 2.5],
        "3": "int key",
    }
    assert list(json.loads(text)) == ["i", "f", "b", "a", "t", "p", "torch", "3"]  # order kept
    assert text.startswith('{\n  "i"')  # indent 2
    assert to_jsonable([np.float64(1.0)]) == [1.0]


def test_npz_is_loaded_without_pickle(tmp_path):
    write_npz_atomic(tmp_path / "x.npz", a=np.arange(3), b=np.eye(2), t=torch.ones(2))
    arrays = load_npz(tmp_path / "x.npz")
    assert set(arrays) == {"a", "b", "t"}
    np.testing.assert_array_equal(arrays["b"], np.eye(2))
    # an archive holding a pickled object array is refused, not unpickled
    np.savez(tmp_path / "obj.npz", o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_npz(tmp_path / "obj.npz")
    # and we never write one
    with pytest.raises(TypeError, match="pickle"):
        write_npz_atomic(tmp_path / "bad.npz", o=np.array([{"x": 1}], dtype=object))
    assert not (tmp_path / "bad.npz").exists()
    np.save(tmp_path / "single.npy", np.arange(2))
    with pytest.raises(ValueError, match="not an .npz"):
        load_npz(tmp_path / "single.npy")


def test_safetensors_round_trip(tmp_path):
    tensors = {
        "mean": np.random.default_rng(0).normal(size=(2, 3)),
        "count": torch.tensor([1.0, 2.0], dtype=torch.float64),
        "half": torch.ones(2, dtype=torch.bfloat16),
        "strided": np.arange(12).reshape(3, 4)[:, ::2],
    }
    write_safetensors_atomic(tmp_path / "s.safetensors", tensors, metadata={"k": "v"})
    loaded = load_safetensors_numpy(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(loaded["mean"], tensors["mean"])
    np.testing.assert_array_equal(loaded["count"], [1.0, 2.0])
    assert loaded["half"].dtype == np.float32
    np.testing.assert_array_equal(loaded["strided"], [[0, 2], [4, 6], [8, 10]])
    with pytest.raises(TypeError, match="metadata"):
        write_safetensors_atomic(tmp_path / "m.safetensors", {"a": np.ones(1)}, {"k": 1})


def _model_dir(folder: Path, text: str) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(text)
    (folder / "sub" / "w.bin").write_bytes(b"weights")
    return folder


def test_replace_dir_atomic(tmp_path, monkeypatch):
    final = _model_dir(tmp_path / "model", "old")
    replace_dir_atomic(_model_dir(tmp_path / ".model.tmp", "new"), final)
    assert (final / "config.json").read_text() == "new"
    assert _names(tmp_path) == ["model"]  # temp and old folders gone

    real_replace = os.replace

    def fail_second(src, dst):
        if Path(src).name == ".model.tmp2":
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_second)
    with pytest.raises(OSError):
        replace_dir_atomic(_model_dir(tmp_path / ".model.tmp2", "newer"), final)
    assert (final / "config.json").read_text() == "new"  # old folder put back


def test_sha256_of_files_and_folders(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    folder = _model_dir(tmp_path / "m", "x")
    first = sha256_file(folder)
    assert sha256_file(folder) == first
    (folder / "sub" / "w.bin").write_bytes(b"weightz")
    assert sha256_file(folder) != first
    (folder / "sub" / "w.bin").write_bytes(b"weights")
    assert sha256_file(folder) == first
    (folder / "sub" / "w.bin").rename(folder / "sub" / "v.bin")
    assert sha256_file(folder) != first


# ------------------------------------------------------------------------------ manifest


def test_manifest_round_trip(tmp_path):
    config = {"model": "m", "text_columns": ("a", "b"), "lr": np.float64(2e-5), "seed": 42}
    run = RunFolder.create(tmp_path / "run", config)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["config"] == {"model": "m", "text_columns": ["a", "b"], "lr": 2e-5, "seed": 42}
    assert {"python", "torch", "transformers", "cahp_studio"} <= set(manifest["versions"])
    assert manifest["stages"] == {} and manifest["created"] and manifest["updated"]
    again = RunFolder.open(tmp_path / "run")
    assert again.manifest == run.manifest
    # the same options (tuples and numpy included) resume the run
    assert RunFolder.create(tmp_path / "run", config).config == manifest["config"]
    assert _names(tmp_path / "run") == ["manifest.json"]


def test_stage_done_and_resume(tmp_path):
    run = RunFolder.create(tmp_path / "run", {"model": "m", "degree": 6})
    assert not run.is_done("signatures") and run.status("signatures") is None
    with run.stage("signatures") as st:
        run.path("sig.bin").write_bytes(b"x" * 100)
        st.add_artefact("sig.bin")
        st.info["examples"] = np.int64(3)
    assert run.is_done("signatures") and run.status("signatures") == "done"
    record = run.manifest["stages"]["signatures"]
    assert record["artefacts"] == {"sig.bin": sha256_file(run.path("sig.bin"))}
    assert set(record) >= {"status", "seconds", "artefacts", "finished", "info"}

    again = RunFolder.create(tmp_path / "run", {"model": "m", "degree": 3}, ignore=("degree",))
    assert again.is_done("signatures")
    assert again.stage_info("signatures") == {"examples": 3}
    assert set(again.stage_seconds()) == {"signatures"}
    assert again.config["degree"] == 3  # ignored settings take the new value
    assert RunFolder.open(tmp_path / "run").config["degree"] == 3

    again.invalidate("signatures")
    assert not RunFolder.open(tmp_path / "run").is_done("signatures")


def test_mark_api_directly(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    run.mark_running("graph")
    assert RunFolder.open(tmp_path / "run").status("graph") == "running"
    assert not run.is_done("graph")
    run.path("pruned").mkdir()
    run.path("pruned", "kept.json").write_text("{}")
    run.mark_done("graph", ["pruned", "pruned/kept.json"], seconds=1.23456, info={"k": 2})
    reopened = RunFolder.open(tmp_path / "run")
    assert reopened.is_done("graph") and reopened.stage_seconds() == {"graph": 1.235}
    run.mark_failed("graph", "RuntimeError: boom\nsecond line")
    assert RunFolder.open(tmp_path / "run").manifest["stages"]["graph"]["error"] == (
        "RuntimeError: boom second line"
    )


def test_corrupt_or_missing_artefacts_are_recomputed(tmp_path, caplog):
    run = RunFolder.create(tmp_path / "run", {})
    with run.stage("distances") as st:
        write_npz_atomic(run.path("distances.npz"), d=np.eye(30))
        st.add_artefact("distances.npz")
    with run.stage("finetune") as st:
        _model_dir(run.path("model"), "cfg")
        st.add_artefact("model")
    assert run.is_done("distances") and run.is_done("finetune")

    data = run.path("distances.npz").read_bytes()
    run.path("distances.npz").write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="cahp_core.runs.folder"):
        assert not RunFolder.open(tmp_path / "run").is_done("distances")
    assert "distances.npz" in caplog.text and "recomputed" in caplog.text

    run.path("model", "sub", "w.bin").write_bytes(b"flipped")  # same size, other bytes
    assert not run.is_done("finetune")
    run.path("model", "sub", "w.bin").unlink()
    assert not run.is_done("finetune")
    run.path("distances.npz").unlink()
    assert not run.is_done("distances")


def test_failed_stage_is_not_done(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    with pytest.raises(RuntimeError), run.stage("clustering"):
        raise RuntimeError("boom")
    assert not run.is_done("clustering")
    record = RunFolder.open(tmp_path / "run").manifest["stages"]["clustering"]
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom"
    # an artefact that was never written fails the stage too
    with pytest.raises(FileNotFoundError), run.stage("graph") as st:
        st.add_artefact("graph.json")
    assert run.status("graph") == "failed"


def test_artefact_and_run_paths_stay_inside(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    for bad in ["../outside", "/abs", "a/../../b"]:
        with pytest.raises(RunFolderError, match="not a relative path inside"):
            run.path(bad)
    with pytest.raises(RunFolderError), run.stage("x") as st:
        st.add_artefact("../escape")
    assert run.path("pruned", "kept_heads.json") == tmp_path / "run" / "pruned" / "kept_heads.json"
    # a tampered manifest pointing outside the run is never trusted
    run.manifest["stages"]["evil"] = {"status": "done", "artefacts": {"../x": "0"}}
    assert not run.is_done("evil")


# ------------------------------------------------------------------------------ compatibility


def test_incompatible_format_version(tmp_path):
    RunFolder.create(tmp_path / "run", {"model": "a"})
    manifest_path = tmp_path / "run" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RunFolderError, match=f"format 99, expected {FORMAT_VERSION}"):
        RunFolder.open(tmp_path / "run")
    with pytest.raises(RunFolderError, match="format 99"):
        RunFolder.create(tmp_path / "run", {"model": "a"})
    manifest_path.write_text("{not json")
    with pytest.raises(RunFolderError, match="cannot be read"):
        RunFolder.open(tmp_path / "run")
    with pytest.raises(RunFolderError, match="not a CAHP run"):
        RunFolder.open(tmp_path / "missing")


def test_different_config_is_another_run(tmp_path):
    RunFolder.create(tmp_path / "run", {"model": "a", "seed": 1, "degree": 6})
    with pytest.raises(RunFolderError, match="holds another run") as info:
        RunFolder.create(tmp_path / "run", {"model": "b", "seed": 1, "degree": 2})
    message = str(info.value)
    assert "model: 'a' -> 'b'" in message and "degree" in message and "\n" not in message
    assert "--out" in message and isinstance(info.value, CAHPError | ValueError)
    with pytest.raises(RunFolderError, match="seed"):  # a new setting counts too
        RunFolder.create(tmp_path / "run", {"model": "a", "degree": 6})


def test_config_differences_helper():
    assert config_differences({"a": 1, "b": (1, 2)}, {"a": 1, "b": [1, 2]}) == []
    assert config_differences({"a": 1, "d": 6}, {"a": 1, "d": 3}, ignore=("d",)) == []
    assert config_differences({"a": 1}, {"a": 2}) == ["a"]
    assert config_differences({"a": 1, "c": 0}, {"a": 2, "b": 1}) == ["a", "b", "c"]


def test_create_refuses_other_folders(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(RunFolderError, match="not empty"):
        RunFolder.create(tmp_path / "junk", {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        RunFolder.create(tmp_path / "file", {})
    (tmp_path / "empty").mkdir()
    assert RunFolder.create(tmp_path / "empty", {}).config == {}


# ------------------------------------------------------------------------------ lock


@contextmanager
def _lock_held_elsewhere(run_dir: Path):
    """A separate process holding the run's lock until the block ends."""
    code = textwrap.dedent(f"""
        import time
        from cahp_core.runs.folder import RunFolder
        with RunFolder.open({str(run_dir)!r}).lock():
            print("locked", flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_lock_held_by_another_process(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    with _lock_held_elsewhere(tmp_path / "run") as pid:
        busy = f"in use by another process \\(pid {pid}\\)"
        with pytest.raises(RunFolderError, match=busy), run.lock():
            pass
        with pytest.raises(RunFolderError, match="in use"):
            delete_run(tmp_path, "run")
    assert (tmp_path / "run" / "manifest.json").is_file()
    with run.lock():  # free again once the holder is gone (killed, not released)
        assert (tmp_path / "run" / ".lock.pid").read_text().strip() == str(os.getpid())
        with run.lock():  # re-entrant for the same run object
            pass
        assert (tmp_path / "run" / ".lock.pid").is_file()
    assert not (tmp_path / "run" / ".lock.pid").exists()


def test_lock_picks_up_stages_written_meanwhile(tmp_path):
    stale = RunFolder.create(tmp_path / "run", {})
    other = RunFolder.open(tmp_path / "run")
    other.path("a.txt").write_text("a")
    other.mark_done("a", ["a.txt"], 1.0)
    assert not stale.is_done("a")
    with stale.lock():
        assert stale.is_done("a")


# ------------------------------------------------------------------------------ runs root


@pytest.mark.parametrize(
    "name", ["../x", "/etc", "a/b", ".hidden", "", "..", ".", "a" * 101, "x\\y", "-rf", "a b"]
)
def test_run_names_cannot_escape(tmp_path, name):
    with pytest.raises(RunFolderError, match="not allowed"):
        safe_run_dir(tmp_path, name)


def test_safe_run_names_and_symlinks(tmp_path):
    assert safe_run_dir(tmp_path, "sst5_quick-1.0") == (tmp_path / "sst5_quick-1.0").resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(outside)
    with pytest.raises(RunFolderError, match="outside the runs folder"):
        safe_run_dir(tmp_path / "runs", "link")


def test_list_and_delete_runs(tmp_path):
    old = RunFolder.create(tmp_path / "old", {"model": "m"})
    new = RunFolder.create(tmp_path / "new", {"model": "n"})
    old.manifest["created"] = "2024-01-01T00:00:00+00:00"
    old.save()
    new.path("s.txt").write_text("s")
    new.mark_done("signatures", ["s.txt"], 1.0)
    write_json_atomic(new.path("summary.json"), {"heads_kept": 40})
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("[")
    RunFolder.create(tmp_path / ".hidden", {})

    runs = list_runs(tmp_path)
    assert [r["name"] for r in runs] == ["new", "old"]
    assert runs[0]["stages_done"] == ["signatures"] and runs[0]["summary"] == {"heads_kept": 40}
    assert runs[1]["summary"] is None and runs[1]["config"] == {"model": "m"}
    assert runs[0]["path"] == str(tmp_path / "new")
    assert list_runs(tmp_path / "nowhere") == []

    with pytest.raises(RunFolderError, match="nothing was deleted"):
        delete_run(tmp_path, "not-a-run")
    with pytest.raises(RunFolderError, match="not allowed"):
        delete_run(tmp_path, "../x")
    delete_run(tmp_path, "old")
    assert [r["name"] for r in list_runs(tmp_path)] == ["new"]
    assert _names(tmp_path) == [".hidden", "broken", "new", "not-a-run"]  # no trash left
