import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cahp_core.atomic import load_npz, write_json_atomic, write_npz_atomic
from cahp_core.errors import RunFolderError
from cahp_core.runs import RunFolder, delete_run, list_runs, safe_run_dir


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cahp_core.atomic.os.replace", explode)
    with pytest.raises(OSError):
        write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left


def test_npz_round_trip_without_pickle(tmp_path):
    write_npz_atomic(tmp_path / "x.npz", a=np.arange(3), b=np.eye(2))
    arrays = load_npz(tmp_path / "x.npz")
    np.testing.assert_array_equal(arrays["a"], np.arange(3))
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_npz(tmp_path / "obj.npz")


def test_stage_done_resume_and_corruption(tmp_path):
    run = RunFolder.create(tmp_path / "run", {"model": "m", "degree": 6})
    with run.stage("signatures") as st:
        (run.path("sig.bin")).write_bytes(b"x" * 100)
        st.add_artefact("sig.bin")
        st.info["examples"] = 3
    assert run.is_done("signatures")
    again = RunFolder.create(tmp_path / "run", {"model": "m", "degree": 3}, ignore=("degree",))
    assert again.is_done("signatures") and again.stage_info("signatures") == {"examples": 3}
    assert again.config["degree"] == 3
    (run.path("sig.bin")).write_bytes(b"x" * 50)  # truncated
    assert not RunFolder.open(tmp_path / "run").is_done("signatures")


def test_failed_stage_is_not_done(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    with pytest.raises(RuntimeError), run.stage("clustering"):
        raise RuntimeError("boom")
    assert not run.is_done("clustering")
    assert RunFolder.open(tmp_path / "run").manifest["stages"]["clustering"]["status"] == "failed"


def test_incompatible_runs(tmp_path):
    RunFolder.create(tmp_path / "run", {"model": "a"})
    with pytest.raises(RunFolderError, match="another run"):
        RunFolder.create(tmp_path / "run", {"model": "b"})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunFolderError, match="format 99"):
        RunFolder.open(tmp_path / "run")
    with pytest.raises(RunFolderError, match="not a CAHP run"):
        RunFolder.open(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(RunFolderError, match="not empty"):
        RunFolder.create(tmp_path / "junk", {})


def test_lock_held_by_another_process(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from cahp_core.runs import RunFolder
            with RunFolder.open({str(tmp_path / "run")!r}).lock():
                print("locked", flush=True)
                time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match="in use by another process"), run.lock():
            pass
    finally:
        holder.kill()
        holder.wait()
    with run.lock():  # free again once the holder is gone
        pass


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", ".hidden", "", "a" * 101, "..", "x\\y"])
def test_run_names_cannot_escape(tmp_path, name):
    with pytest.raises(RunFolderError):
        safe_run_dir(tmp_path, name)


def test_list_and_delete_runs(tmp_path):
    RunFolder.create(tmp_path / "one", {"model": "m"})
    (tmp_path / "not-a-run").mkdir()
    assert [r["name"] for r in list_runs(tmp_path)] == ["one"]
    with pytest.raises(RunFolderError):
        delete_run(tmp_path, "not-a-run")
    delete_run(tmp_path, "one")
    assert list_runs(tmp_path) == []


def test_paths_inside_run(tmp_path):
    run = RunFolder.create(tmp_path / "run", {})
    with pytest.raises(RunFolderError):
        run.path("../outside")
    with pytest.raises(RunFolderError):
        run.path("/abs")
