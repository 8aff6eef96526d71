"""Hardening: bad input gives one clear line and a non-zero exit; runs survive SIGKILL;
two writers cannot corrupt a run; nothing is unpickled."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cahp_core.cli import main
from cahp_core.errors import RunFolderError
from cahp_core.runs.pipeline import run_pipeline
from cahp_core.testing import save_tiny_model, tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- fixtures for the table


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_runs) -> dict[str, Path]:
    """Folders every bad-input case can point at."""
    base = tmp_path_factory.mktemp("world")
    tiny = save_tiny_model(base / "tiny")
    shutil.move(tiny_runs / "tiny-run", base / "run")

    def write(folder: str, name: str, text: str | bytes) -> Path:
        path = base / folder
        path.mkdir(exist_ok=True)
        (path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    def jsonl(rows) -> str:
        return "".join(json.dumps(r) + "\n" for r in rows)

    good = [{"text": f"t {i}", "label": i % 5} for i in range(10)]
    for name, train in {
        "missing_column": [{"sentence": "a", "label": 0}] * 3,
        "misnamed_label": [{"text": "a", "y": 0}] * 3,
        "label_range": [*good, {"text": "x", "label": 9}],
        "label_float": [*good, {"text": "x", "label": 1.5}],
        "label_string": [*good, {"text": "x", "label": "positive"}],
        "single_class": [{"text": f"t {i}", "label": 1} for i in range(5)],
        "long_text": [{"text": "word " * 5000, "label": i % 5} for i in range(10)],
    }.items():
        write(name, "train.jsonl", jsonl(train))
        write(name, "validation.jsonl", jsonl(good))
    write("empty_split", "train.jsonl", jsonl(good))
    write("empty_split", "validation.jsonl", "")
    write("not_utf8", "train.jsonl", b'{"text": "caf\xe9", "label": 0}\n')
    write("not_utf8", "validation.jsonl", jsonl(good))
    write("bad_json", "train.jsonl", '{"text": "a", "label": 0}\n{nope}\n')
    write("bad_json", "validation.jsonl", jsonl(good))
    write("wrong_format", "train.txt", "just text\n")
    write("no_model", "README.md", "not a model\n")
    write("gpt2", "config.json", json.dumps({"model_type": "gpt2", "n_embd": 64, "n_head": 4}))
    write(
        "bad_heads",
        "config.json",
        json.dumps({"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}),
    )
    # a 3-label classifier checkpoint (SST-5 needs 5 labels)
    from cahp_core.model.loading import tiny_bert

    three = tiny_bert(num_labels=3)
    three.model.save_pretrained(base / "three_labels")
    three.tokenizer.save_pretrained(base / "three_labels")
    # run folders: from the future, and with a corrupt artefact
    for name in ("future_run", "corrupt_run"):
        shutil.copytree(base / "run", base / name)
    manifest = json.loads((base / "future_run" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (base / "future_run" / "manifest.json").write_text(json.dumps(manifest))
    clustering = base / "corrupt_run" / "clustering.npz"
    clustering.write_bytes(clustering.read_bytes()[:100])
    return {"base": base, "tiny": tiny, "run": base / "run"}


FT = [
    "finetune",
    "--task",
    "sst5",
    "--max-train",
    "16",
    "--max-eval",
    "8",
    "--epochs",
    "1",
    "--device",
    "cpu",
]

# (case id, argv with {placeholders}, expected message pattern)
CASES = [
    # models
    (
        "unknown-model-offline",
        [
            "finetune",
            "--model",
            "no-such-org/no-such-model",
            "--task",
            "sst5",
            "--out",
            "{base}/o1",
        ],
        r"could not load model",
    ),
    (
        "folder-not-a-model",
        [*FT, "--model", "{base}/no_model", "--out", "{base}/o2"],
        r"not a model folder",
    ),
    (
        "non-encoder-gpt2",
        [*FT, "--model", "{base}/gpt2", "--out", "{base}/o3"],
        r"unsupported architecture 'gpt2'",
    ),
    (
        "heads-do-not-divide-hidden",
        [*FT, "--model", "{base}/bad_heads", "--out", "{base}/o4"],
        r"not divisible",
    ),
    (
        "mismatched-num-labels",
        [*FT, "--model", "{base}/three_labels", "--out", "{base}/o5"],
        r"3 labels but the task needs\s+5",
    ),
    (
        "cuda-without-gpu",
        [
            "finetune",
            "--model",
            "{tiny}",
            "--task",
            "sst5",
            "--device",
            "cuda",
            "--out",
            "{base}/o6",
        ],
        r"no CUDA GPU|cuda",
    ),
    # data
    (
        "missing-data-folder",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/nowhere", "--out", "{base}/o7"],
        r"not found",
    ),
    (
        "wrong-format",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/wrong_format", "--out", "{base}/o8"],
        r"no \.jsonl or \.csv",
    ),
    (
        "missing-column",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/missing_column", "--out", "{base}/o9"],
        r"no column\(s\) text",
    ),
    (
        "misnamed-label-column",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/misnamed_label", "--out", "{base}/o10"],
        r"no column\(s\) label",
    ),
    (
        "label-out-of-range",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/label_range", "--out", "{base}/o11"],
        r"outside 0\.\.4",
    ),
    (
        "label-not-integer-float",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/label_float", "--out", "{base}/o12"],
        r"not an integer",
    ),
    (
        "label-not-integer-string",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/label_string", "--out", "{base}/o13"],
        r"not an integer",
    ),
    (
        "empty-split",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/empty_split", "--out", "{base}/o14"],
        r"empty",
    ),
    (
        "single-class",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/single_class", "--out", "{base}/o15"],
        r"single class",
    ),
    (
        "non-utf8",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/not_utf8", "--out", "{base}/o16"],
        r"not UTF-8",
    ),
    (
        "invalid-json-line",
        [*FT, "--model", "{tiny}", "--data-dir", "{base}/bad_json", "--out", "{base}/o17"],
        r"line 2 is not valid JSON",
    ),
    (
        "unknown-task",
        [*FT[:1], "--model", "{tiny}", "--task", "imdb", "--out", "{base}/o18"],
        r"unknown task",
    ),
    (
        "custom-without-columns",
        [
            "finetune",
            "--model",
            "{tiny}",
            "--task",
            "custom",
            "--data-dir",
            "{base}/long_text",
            "--out",
            "{base}/o19",
        ],
        r"--text-columns",
    ),
    # options
    (
        "degree-zero",
        ["export", "{run}", "--degree", "0", "--out", "{base}/o20"],
        r"degree must be at least 2; got 0",
    ),
    (
        "degree-one",
        ["export", "{run}", "--degree", "1", "--out", "{base}/o20b"],
        r"degree 1 has no knee \(a degree-1 fit is a straight line\)",
    ),
    (
        "knee-curve-unknown",
        ["export", "{run}", "--degree", "3", "--knee-curve", "f1", "--out", "{base}/o20c"],
        r"unknown --knee-curve 'f1'; choose one of quality, performance",
    ),
    (
        "quality-unknown",
        ["run", "--model", "{tiny}", "--task", "sst5", "--quality", "dunn", "--out", "{base}/o20d"],
        r"unknown --quality 'dunn'; choose one of mss, simplified-silhouette",
    ),
    (
        "seeds-zero",
        ["run", "--model", "{tiny}", "--task", "sst5", "--seeds", "0", "--out", "{base}/o20e"],
        r"--seeds must be a whole number >= 1",
    ),
    (
        "degree-too-large",
        ["export", "{run}", "--degree", "500", "--out", "{base}/o21"],
        r"degree 500 needs more than \d+ curve points; choose a degree from 2 to \d+",
    ),
    (
        "run-degree-negative",
        ["run", "--model", "{tiny}", "--task", "sst5", "--degree", "-2", "--out", "{base}/o22"],
        r"degree",
    ),
    (
        "budget-zero",
        ["baseline", "{run}", "--method", "gradient", "--heads", "0", "--out", "{base}/o23"],
        r"between 1 and 12",
    ),
    (
        "budget-too-large",
        ["baseline", "{run}", "--method", "random", "--heads", "99", "--out", "{base}/o24"],
        r"between 1 and 12",
    ),
    (
        "salience-fraction-zero",
        [
            "run",
            "--model",
            "{tiny}",
            "--task",
            "sst5",
            "--salience-fraction",
            "0",
            "--out",
            "{base}/o25",
        ],
        r"fraction must be in \(0, 1\]",
    ),
    (
        "salience-fraction-above-one",
        [
            "run",
            "--model",
            "{tiny}",
            "--task",
            "sst5",
            "--salience-fraction",
            "1.5",
            "--out",
            "{base}/o26",
        ],
        r"fraction must be in \(0, 1\]",
    ),
    (
        "max-train-zero",
        ["run", "--model", "{tiny}", "--task", "sst5", "--max-train", "0", "--out", "{base}/o27"],
        r"--max-train must be >= 1",
    ),
    (
        "bad-mask-spec",
        ["evaluate", "{tiny}", "--task", "sst5", "--max-eval", "8", "--mask", "9:0"],
        r"layer 9 in head spec is out of range",
    ),
    (
        "bad-remove-spec",
        ["prune", "{tiny}", "--remove", "0:a", "--out", "{base}/o29"],
        r"malformed",
    ),
    # run folders
    (
        "missing-run-folder",
        ["export", "{base}/no_run", "--degree", "3", "--out", "{base}/o30"],
        r"not a CAHP run folder",
    ),
    (
        "incompatible-run-version",
        ["export", "{base}/future_run", "--degree", "3", "--out", "{base}/o31"],
        r"format 99, expected 1",
    ),
    (
        "corrupt-artefact",
        ["export", "{base}/corrupt_run", "--degree", "3", "--out", "{base}/o32"],
        r"no finished clustering stage",
    ),
    (
        "other-run-in-folder",
        ["run", "--model", "{tiny}", "--task", "sst5", "--seed", "5", "--out", "{run}"],
        r"holds another run",
    ),
]


@pytest.mark.parametrize(("case", "argv", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(world, capsys, case, argv, pattern):
    args = [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err
    outs = [a for a in args if "/o" in a and a.split("/")[-1].startswith("o")]
    for out in outs:  # nothing half-written
        assert not Path(out).exists() or not any(Path(out).iterdir())


def test_unknown_choice_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--task", "sst5", "--clustering", "spectral", "--out", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'spectral'" in capsys.readouterr().err


def test_very_long_texts_are_truncated_not_fatal(world, capsys):
    out = world["base"] / "long-ok"
    code = main(
        [
            *FT,
            "--model",
            str(world["tiny"]),
            "--data-dir",
            str(world["base"] / "long_text"),
            "--max-length",
            "32",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


def test_at_least_25_bad_input_cases():
    assert len(CASES) >= 25


# ----------------------------------------------------------------- interrupted runs

STAGE_HOOKS = {  # stage -> the function (module.name) a killed process is paused in, run order
    "finetune": "stages.finetune_pretrained",
    "salience": "stages.gradient_salience",
    "signatures": "stages.compute_signatures",
    "clustering": "stages.cluster_heads_seeds",
    "task_curve": "stages.comparison_maps",
    "export": "exporting.save_pruned",
}

SLOW_RUN = textwrap.dedent(
    """
    import importlib, sys, time
    from pathlib import Path
    import cahp_core.runs.pipeline as pipeline
    from cahp_core.testing import tiny_run_config

    model, run_dir, hook, marker = sys.argv[1:5]
    if hook != "none":
        module_name, hook = hook.split(".")
        module = importlib.import_module(f"cahp_core.runs.{module_name}")
        original = getattr(module, hook)

        def paused(*args, **kwargs):
            result = original(*args, **kwargs)  # do the real work, then hang before it is recorded
            Path(marker).write_text("in stage")
            time.sleep(120)
            return result

        setattr(module, hook, paused)
    pipeline.run_pipeline(tiny_run_config(model), run_dir)
    """
)


def _start_paused_run(model: Path, run_dir: Path, hook: str, marker: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(model), str(run_dir), hook, str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, "the paused run ended early"
        assert time.monotonic() < deadline, "the paused run never reached its stage"
        time.sleep(0.1)
    return process


def _run_to_the_end(model: Path, run_dir: Path) -> None:
    """An uninterrupted run in a fresh process (same environment as the interrupted ones)."""
    subprocess.run(
        [sys.executable, "-c", SLOW_RUN, str(model), str(run_dir), "none", "-"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def reference(world) -> dict:
    """The selection of an uninterrupted run of the same model (``save_tiny_model`` is
    seeded) and settings: the session's tiny run."""
    return json.loads((world["run"] / "selection.json").read_text())


def test_sigkill_mid_stage_then_resume_gives_the_same_selection(world, reference, tmp_path):
    """SIGKILL inside each stage in turn, each kill followed by the same command: a killed
    stage is never taken as finished, no temp file is left, the stages finished before it
    are reused as they are, and the run ends with the uninterrupted run's selection."""
    run_dir = tmp_path / "run"
    finished: dict[str, dict] = {}
    for stage, hook in STAGE_HOOKS.items():  # run order: each resume reaches the next stage
        process = _start_paused_run(world["tiny"], run_dir, hook, tmp_path / f"in-{stage}")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
        assert stages[stage]["status"] == "running", stage  # never taken as finished
        assert all(stages[name] == record for name, record in finished.items()), stage
        assert not list(run_dir.rglob("*.tmp")), stage
        finished = {name: r for name, r in stages.items() if r["status"] == "done"}
    _run_to_the_end(world["tiny"], run_dir)  # the same command again resumes
    selection = json.loads((run_dir / "selection.json").read_text())
    assert selection["kept"] == reference["kept"]
    assert selection["knee"] == reference["knee"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"].values())


def _file_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (lock files included) with its exact contents."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_refused_second_writer_changes_no_file(world, tmp_path, capsys):
    """The lock is taken before anything is created or written: a second writer, with the
    same options or other ones, is refused as "in use" and every file stays byte-identical."""
    run_dir = tmp_path / "run"
    process = _start_paused_run(
        world["tiny"], run_dir, STAGE_HOOKS["clustering"], tmp_path / "marker"
    )
    try:
        before = _file_bytes(run_dir)
        assert "manifest.json" in before and ".lock.pid" in before
        config = tiny_run_config(world["tiny"])
        # other options than the paused run: refused by the lock, not by the config check
        code = main(["run", "--model", config.model, "--task", "sst5", "--out", str(run_dir)])
        err = capsys.readouterr().err
        assert code == 2 and "in use by another process" in err, err
        assert "holds another run" not in err
        assert _file_bytes(run_dir) == before
        # the very same options: refused as well, nothing written
        with pytest.raises(RunFolderError, match="in use by another process"):
            run_pipeline(config, run_dir)
        assert _file_bytes(run_dir) == before
        code = main(["recluster", str(run_dir), "--seeds", "2"])
        assert code == 2 and "in use by another process" in capsys.readouterr().err
        assert _file_bytes(run_dir) == before
    finally:
        process.kill()
        process.wait()


def test_a_refused_writer_leaves_no_new_folder(tmp_path):
    """A folder the refused writer would have created is not left behind."""
    from cahp_core.runs.folder import locked_folder

    run_dir = tmp_path / "new-run"
    with locked_folder(run_dir):
        assert run_dir.is_dir()
    assert not run_dir.exists()  # created only to hold the lock; nothing else was written
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(RunFolderError, match="not a CAHP run"):
        run_pipeline(tiny_run_config("unused"), tmp_path / "notes")
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["mine.txt"]


PAUSED_EXPORT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import cahp_core.model.pruning as pruning
    from cahp_core.cli import main

    run_dir, out, marker = sys.argv[1:4]
    original = pruning.write_model_card

    def paused(*args, **kwargs):  # the last step inside the staging folder
        original(*args, **kwargs)
        Path(marker).write_text("in staging")
        time.sleep(120)

    pruning.write_model_card = paused
    sys.exit(main(["export", run_dir, "--degree", "2", "--out", out, "--onnx"]))
    """
)


def test_a_cancelled_export_leaves_nothing_half_written(world, tmp_path):
    """SIGTERM (the dashboard's cancel) mid-export: no output folder, no staging folder,
    the run lock released; the same export then completes."""
    out = tmp_path / "exports" / "d2"
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED_EXPORT, str(world["run"]), str(out), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the export never reached its staging folder"
        time.sleep(0.1)
    assert any(p.name.startswith(".d2.tmp-") for p in out.parent.iterdir())  # staging exists
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert "interrupted" in process.stderr.read()
    assert list(out.parent.iterdir()) == []  # neither the folder nor its staging copy
    assert main(["export", str(world["run"]), "--degree", "2", "--out", str(out)]) == 0
    assert (out / "cahp_export.json").is_file() and (out / "README.md").is_file()


# ----------------------------------------------------------------- safe loading


def test_nothing_is_unpickled():
    """No pickle, torch.load or allow_pickle=True anywhere in the engine or dashboard."""
    sources = [
        *ROOT.glob("cahp_core/**/*.py"),
        *ROOT.glob("dashboard/**/*.py"),
        *ROOT.glob("pages/*.py"),
    ]
    assert sources
    for path in sources:
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path
        assert "allow_pickle=True" not in text, path
        assert "torch.load(" not in text, path
        assert not _passes_trust_remote_code_true(text), path


def _passes_trust_remote_code_true(source: str) -> bool:
    """Whether any call in ``source`` passes ``trust_remote_code=True`` (text that tells users
    how to load a pruned folder with plain transformers, like the model card's, is fine)."""
    import ast

    return any(
        isinstance(node, ast.keyword)
        and node.arg == "trust_remote_code"
        and isinstance(node.value, ast.Constant)
        and node.value.value is True
        for node in ast.walk(ast.parse(source))
    )


def test_the_remote_code_check_finds_a_call():
    assert _passes_trust_remote_code_true("f(x, trust_remote_code=True)")
    assert not _passes_trust_remote_code_true('text = "f(trust_remote_code=True)"')
    assert not _passes_trust_remote_code_true("f(trust_remote_code=flag)")


def test_trust_remote_code_is_off_by_default():
    from cahp_core.runs.config import RunConfig

    assert RunConfig().trust_remote_code is False
