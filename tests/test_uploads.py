"""Uploads on the Run page and the CLI's custom data: clear messages, nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cahp_core.data import load_task
from cahp_core.errors import CAHPError, DataError
from cahp_core.testing import FakeUpload
from cahp_studio.dashboard.inputs import (
    accept_upload,
    find_label_column,
    guess_columns,
    read_preview,
    upload_folder,
)

RUN_PAGE = Path(__file__).resolve().parents[1] / "pages" / "run.py"
NO_LABEL = "text,source\n" + "".join(f"review {i},imdb\n" for i in range(30))
STARS = "text,source,stars\n" + "".join(f"review {i},imdb,{i % 3}\n" for i in range(30))


def _leftovers(root: Path) -> list[str]:
    """Everything under RUNS/.uploads."""
    uploads = root / ".uploads"
    return (
        sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*")) if uploads.exists() else []
    )


# ---------------------------------------------------------------- reading an upload


def test_preview_lists_columns_and_rows():
    columns, rows = read_preview(STARS.encode(), "reviews.csv")
    assert columns == ["text", "source", "stars"] and len(rows) == 30
    columns, rows = read_preview(b'\n{"a": "x", "lab": 1}\n{"a": "y", "lab": 0}\n', "r.jsonl")
    assert columns == ["a", "lab"] and len(rows) == 2


def test_preview_reads_whole_lines_of_a_big_file(monkeypatch):
    monkeypatch.setattr("cahp_studio.dashboard.inputs.PREVIEW_BYTES", 25)
    columns, rows = read_preview(b"text,label\nfirst,0\nsecond,1\nthird,0\n", "r.csv")
    assert columns == ["text", "label"] and [r["text"] for r in rows] == ["first"]
    long_first = b'{"text": "' + b"w" * 40 + b'", "label": 0}\n{"text": "b", "label": 1}\n'
    assert len(read_preview(long_first, "r.jsonl")[1]) == 2  # no newline early on: all of it


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("r.xlsx", b"a,b\n", r"r.xlsx: upload a .csv or .jsonl file"),
        ("r.csv", b"text,label\n", r"r.csv has no rows below its header"),
        ("r.jsonl", b"\n\n", r"r.jsonl has no JSON objects"),
        ("r.csv", b"text,label\na,0\nb,1,2\n", r"r.csv line 3 has more fields than the header"),
        ("r.jsonl", b'{"text": "a", "label": 0}\n\n{oops\n', r"r.jsonl line 3 is not valid JSON"),
        ("r.jsonl", b'{"text": "a"}\n[1]\n', r"r.jsonl line 2 is not a JSON object"),
        ("r.csv", b"text,label\nok,0\ncaf\xe9,1\n", r"r.csv is not UTF-8 text .*line 3"),
    ],
)
def test_preview_errors_name_the_file_and_line(name, data, message):
    with pytest.raises(CAHPError, match=message):
        read_preview(data, name)


# ---------------------------------------------------------------- which column holds the labels


@pytest.mark.parametrize(
    ("csv_text", "label"),
    [
        (NO_LABEL, None),  # the column of 'imdb' is no label: ask
        (STARS, "stars"),  # the only column of repeated class ids
        ("text,label\n" + "".join(f"t{i},{i}\n" for i in range(6)), "label"),  # named so
        ("text,label\n" + "".join(f"t{i},pos\n" for i in range(6)), None),  # not class ids
        ("id,text\n" + "".join(f"{i},t{i}\n" for i in range(30)), None),  # an id column
        ("text,a,b\n" + "".join(f"t{i},{i % 2},{i % 3}\n" for i in range(30)), None),  # two
        ("text,year\n" + "".join(f"t{i},{2020 + i % 2}\n" for i in range(30)), None),
    ],
)
def test_label_column_is_identified_or_left_to_the_user(csv_text, label):
    columns, rows = read_preview(csv_text.encode(), "r.csv")
    assert find_label_column(columns, rows) == label
    text, guessed = guess_columns(columns, rows)
    assert guessed == label and label not in text


def test_guessed_text_columns():
    assert guess_columns(["premise", "hypothesis", "label"]) == (["premise", "hypothesis"], "label")
    assert guess_columns(["id", "review", "target"]) == (["review"], "target")
    assert guess_columns(["body", "source"]) == (["body"], None)


# ---------------------------------------------------------------- accepting or rejecting


def test_an_accepted_upload_is_kept_for_its_run(tmp_path):
    upload = FakeUpload("reviews.csv", STARS.encode())
    folder, num_labels = accept_upload(upload, tmp_path, "my-run", ["text"], "stars")
    assert num_labels == 3 and folder == upload_folder(tmp_path, "my-run") / "splits"
    assert _leftovers(tmp_path) == [
        "my-run",
        "my-run/data.csv",
        "my-run/splits",
        "my-run/splits/train.jsonl",
        "my-run/splits/validation.jsonl",
    ]
    first = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"text", "label"}
    task = load_task("custom", data_dir=folder, text_columns=["text"], num_labels=3)
    assert len(task.splits["train"]) == 27 and len(task.splits["validation"]) == 3


@pytest.mark.parametrize(
    ("data", "text", "label", "message"),
    [
        (NO_LABEL, ["text"], None, r"pick the label column of reviews.csv"),
        (NO_LABEL, [], "source", r"pick one or two text columns of reviews.csv"),
        (NO_LABEL, ["text"], "text", r"cannot be both a text column and the label"),
        (
            NO_LABEL,
            ["text"],
            "source",
            r"^reviews.csv line 2: label 'imdb' is not an integer \(column 'source'\); "
            r"use class ids 0, 1, 2, \.\.\. or pick the column that holds them",
        ),
        (
            "text,label\na,0\nb,1\nc\n",
            ["text"],
            "label",
            r"^reviews.csv line 4 has no value for column\(s\) label",
        ),
        ("text,label\na,0\nb,0\nc,0\n", ["text"], "label", r"^reviews.csv has a single class"),
        ("text,label\na,0\nb,1\n", ["text"], "label", r"^reviews.csv has too few rows \(2\)"),
    ],
)
def test_a_rejected_upload_names_the_users_file_and_leaves_nothing(
    tmp_path, data, text, label, message
):
    upload = FakeUpload("reviews.csv", data.encode())
    with pytest.raises(CAHPError, match=message) as info:
        accept_upload(upload, tmp_path, "my-run", text, label)
    assert ".uploads" not in str(info.value) and str(tmp_path) not in str(info.value)
    assert _leftovers(tmp_path) == []


def test_a_rejected_upload_keeps_the_runs_earlier_upload(tmp_path):
    accept_upload(FakeUpload("good.csv", STARS.encode()), tmp_path, "my-run", ["text"], "stars")
    before = {p: p.read_bytes() for p in upload_folder(tmp_path, "my-run").rglob("*.*")}
    with pytest.raises(CAHPError, match="bad.csv line 2: label 'imdb'"):
        accept_upload(
            FakeUpload("bad.csv", NO_LABEL.encode()), tmp_path, "my-run", ["text"], "source"
        )
    assert {p: p.read_bytes() for p in upload_folder(tmp_path, "my-run").rglob("*.*")} == before
    assert len(_leftovers(tmp_path)) == 5  # nothing else: the scratch folder is gone


def test_oversized_or_misnamed_uploads_write_nothing(tmp_path):
    with pytest.raises(CAHPError, match="big.csv is 52 MB; the limit is 50 MB"):
        accept_upload(FakeUpload("big.csv", b"x" * (50 * 2**20 + 1)), tmp_path, "r", ["t"], "l")
    with pytest.raises(CAHPError, match="data.txt: upload a .csv or .jsonl file"):
        accept_upload(FakeUpload("data.txt", b"t,l\n"), tmp_path, "r", ["t"], "l")
    with pytest.raises(CAHPError, match="run name '../x' is not allowed"):
        accept_upload(FakeUpload("r.csv", STARS.encode()), tmp_path, "../x", ["text"], "stars")
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- the CLI's custom data


@pytest.fixture
def no_label_dir(tmp_path) -> Path:
    for split in ("train", "validation"):
        (tmp_path / f"{split}.csv").write_text(NO_LABEL, encoding="utf-8")
    return tmp_path


def test_cli_custom_data_without_a_label_column_names_columns_and_flag(no_label_dir):
    with pytest.raises(DataError) as info:
        load_task("custom", data_dir=no_label_dir, text_columns=["text"])
    assert str(info.value) == (
        f"{no_label_dir / 'train.csv'} has no column(s) label; columns found: text, source; "
        "pass --label-column with the one holding the class ids 0, 1, 2, ..."
    )
    with pytest.raises(DataError, match=r"train.csv line 2: label 'imdb' is not an integer"):
        load_task("custom", data_dir=no_label_dir, text_columns=["text"], label_column="source")
    with pytest.raises(DataError, match=r"columns found: text, source; pass --text-columns"):
        load_task("custom", data_dir=no_label_dir, text_columns=["body"], label_column="source")
    with pytest.raises(DataError, match=r"task sst5 reads text, label: rename them"):
        load_task("sst5", data_dir=no_label_dir)


def test_cli_reports_the_columns_found_and_the_flags(no_label_dir, capsys):
    from cahp_core.cli import main

    common = ["finetune", "--model", "minilm-l6", "--task", "custom"]
    out = ["--data-dir", str(no_label_dir), "--out", str(no_label_dir / "out")]
    assert main([*common, *out]) == 2
    error = capsys.readouterr().err
    assert "--text-columns" in error and "--label-column" in error
    assert "columns found in train.csv: text, source" in error
    assert main([*common, *out, "--text-columns", "text"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert "columns found: text, source; pass --label-column" in error


# ---------------------------------------------------------------- the Run page


@pytest.fixture
def run_page(tmp_path, monkeypatch):
    """The Run page on an empty runs folder; launching records the CLI arguments."""
    launched: list[dict] = []

    def fake_launch(root: Path, name: str, settings: dict) -> int:
        launched.append(settings)
        return 4242

    monkeypatch.setenv("CAHP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("CAHP_DEFAULT_RUN", str(tmp_path / "missing"))
    monkeypatch.setattr("cahp_studio.dashboard.jobs.launch_run", fake_launch)
    monkeypatch.setattr("cahp_studio.dashboard.inputs.check_model", lambda name: None)
    at = AppTest.from_file(str(RUN_PAGE), default_timeout=60).run()
    next(s for s in at.selectbox if s.label == "Task").set_value("Upload a CSV/JSONL file").run()
    return at, tmp_path, launched


def _upload(at: AppTest, name: str, data: str) -> AppTest:
    return at.file_uploader[0].upload(name, data.encode(), "text/csv").run()


def _launch(at: AppTest, run: str = "my-run") -> AppTest:
    next(t for t in at.text_input if t.label == "Run name").set_value(run)
    return next(b for b in at.button if "Launch" in str(b.label)).click().run()


def _label_box(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Label column")


def test_run_page_asks_for_the_label_column(run_page):
    at, root, launched = run_page
    _upload(at, "reviews.csv", NO_LABEL)
    assert not at.exception
    assert any("Which column of reviews.csv holds the labels?" in w.value for w in at.warning)
    assert _label_box(at).value is None
    _launch(at)
    assert not at.exception and not launched
    assert [e.value for e in at.error] == [
        "pick the label column of reviews.csv: the column that holds the class ids 0, 1, 2, …"
    ]
    _label_box(at).set_value("source")
    _launch(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("reviews.csv line 2: label 'imdb'"), errors
    assert not launched and _leftovers(root) == []


def test_run_page_launches_with_an_identified_label_column(run_page):
    at, root, launched = run_page
    _upload(at, "reviews.csv", STARS)
    assert not at.warning and _label_box(at).value == "stars"
    _launch(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    folder = upload_folder(root, "my-run") / "splits"
    assert len(launched) == 1 and launched[0]["data_dir"] == str(folder)
    assert (folder / "train.jsonl").is_file() and launched[0]["label_column"] == "label"
    assert launched[0]["text_columns"] == ["text"] and launched[0]["task"] == "custom"


def test_run_page_shows_a_bad_file_at_once(run_page):
    at, root, launched = run_page
    _upload(at, "reviews.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1,}\n')
    assert not at.exception
    assert [e.value for e in at.error] == [
        "reviews.jsonl line 2 is not valid JSON (Expecting property name enclosed in double "
        "quotes); write one JSON object a line"
    ]
    assert not any(s.label == "Label column" for s in at.selectbox)
    _launch(at)  # the same message again, in answer to the click
    assert len(at.error) == 2 and at.error[0].value == at.error[1].value
    assert not launched and _leftovers(root) == []
